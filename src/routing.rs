//! Recipient resolution: pure, no I/O. Turns the addresses of an envelope into
//! the agencies it is queued for. (Groups, `children:` and peers arrive later.)

use crate::envelope::OrgCode;

/// Why an address could not be resolved. `field` names the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No agency has this code.
    #[error("{field}: no agency {code} is registered")]
    Unknown {
        /// Which address.
        field: String,
        /// The code.
        code: OrgCode,
    },
    /// The agency is disabled.
    #[error("{field}: agency {code} is disabled")]
    Disabled {
        /// Which address.
        field: String,
        /// The code.
        code: OrgCode,
    },
}

/// What resolution needs to know of an agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Registered and enabled.
    Enabled,
    /// Registered but disabled.
    Disabled,
}

/// Resolves `to` (already deduplicated) against `lookup`, in order.
pub fn resolve(
    to: &[OrgCode],
    lookup: impl Fn(&OrgCode) -> Option<Known>,
) -> Result<Vec<OrgCode>, RoutingError> {
    let mut out = Vec::with_capacity(to.len());
    for (index, code) in to.iter().enumerate() {
        let field = || format!("envelope.to[{index}]");
        match lookup(code) {
            Some(Known::Enabled) => {
                if !out.contains(code) {
                    out.push(code.clone());
                }
            }
            Some(Known::Disabled) => {
                return Err(RoutingError::Disabled {
                    field: field(),
                    code: code.clone(),
                });
            }
            None => {
                return Err(RoutingError::Unknown {
                    field: field(),
                    code: code.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> OrgCode {
        OrgCode::parse(text, "t").expect("valid code")
    }

    #[test]
    fn resolves_known_in_order_and_names_the_bad_one() {
        let lookup = |c: &OrgCode| match c.as_str() {
            "000.00.01.H56" | "000.00.02.H56" => Some(Known::Enabled),
            "000.00.03.H56" => Some(Known::Disabled),
            _ => None,
        };
        let ok =
            resolve(&[code("000.00.02.H56"), code("000.00.01.H56")], lookup).expect("resolves");
        assert_eq!(ok, vec![code("000.00.02.H56"), code("000.00.01.H56")]);
        let unknown =
            resolve(&[code("000.00.01.H56"), code("000.00.09.H56")], lookup).expect_err("unknown");
        assert_eq!(
            unknown,
            RoutingError::Unknown {
                field: "envelope.to[1]".into(),
                code: code("000.00.09.H56")
            }
        );
        assert!(matches!(
            resolve(&[code("000.00.03.H56")], lookup),
            Err(RoutingError::Disabled { .. })
        ));
    }
}
