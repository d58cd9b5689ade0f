//! Recipient resolution: pure, no I/O. Turns the addresses of an envelope
//! (org codes, `children:CODE`, `group:NAME`) into the agencies it is queued
//! for, each with the address that reached it.

use serde::{Deserialize, Serialize};

use crate::{
    envelope::{Address, GroupName, OrgCode},
    federation::GatewayId,
};

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
    /// No group has this name.
    #[error("{field}: no group {} exists", name.as_str())]
    UnknownGroup {
        /// Which address.
        field: String,
        /// The name.
        name: GroupName,
    },
    /// A children: or group: address reaches no enabled agency.
    #[error("{field}: {address} reaches no enabled agency")]
    Empty {
        /// Which address.
        field: String,
        /// The address.
        address: String,
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

/// An agency a document is queued for, and the address that reached it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    /// The agency.
    pub code: OrgCode,
    /// The address as written: the code itself, `children:X` or `group:X`.
    pub via: String,
}

/// How [`Recipient::via`] names a recipient of another gateway.
const FORWARDED: &str = "forwarded to ";

impl Recipient {
    /// A recipient registered at another gateway, reached through the peer
    /// `gateway`; its `via` reads "forwarded to VN:GOV:HUB".
    pub fn forwarded(code: OrgCode, gateway: &GatewayId) -> Self {
        Self {
            code,
            via: format!("{FORWARDED}{gateway}"),
        }
    }

    /// The peer it is forwarded to, for a recipient of another gateway.
    pub fn gateway(&self) -> Option<GatewayId> {
        self.via
            .strip_prefix(FORWARDED)
            .and_then(|id| GatewayId::parse(id, "via").ok())
    }

    /// The queue it waits in: the agency's own, or the outbound queue of
    /// the peer it is forwarded to.
    pub fn mailbox(&self) -> OrgCode {
        match self.gateway() {
            Some(gateway) => gateway.mailbox(),
            None => self.code.clone(),
        }
    }
}

/// The queues `recipients` wait in, each once, in order: one entry per
/// agency, one per peer however many of its recipients a document has.
pub fn mailboxes(recipients: &[Recipient]) -> Vec<OrgCode> {
    let mut out: Vec<OrgCode> = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let mailbox = recipient.mailbox();
        if !out.contains(&mailbox) {
            out.push(mailbox);
        }
    }
    out
}

/// The agencies and groups resolution looks into.
pub trait Directory {
    /// Whether an agency is registered, and enabled.
    fn agency(&self, code: &OrgCode) -> Option<Known>;
    /// The agencies whose parent is `parent`, by code.
    fn children(&self, parent: &OrgCode) -> Vec<(OrgCode, Known)>;
    /// A group's members, in its order.
    fn group(&self, name: &GroupName) -> Option<Vec<OrgCode>>;
    /// The peer gateway an org code not registered here is forwarded to
    /// (federation); none by default. Only explicit codes are forwarded:
    /// `children:` and `group:` stay local.
    fn remote(&self, _code: &OrgCode) -> Option<GatewayId> {
        None
    }
}

/// Resolves `to` against `directory`, in address order; an agency reached
/// twice is queued once, under the first address that reached it. Disabled
/// or unknown members of children: and group: are left out; an explicit
/// disabled or unknown code is an error.
pub fn resolve(to: &[Address], directory: &impl Directory) -> Result<Vec<Recipient>, RoutingError> {
    let mut out: Vec<Recipient> = Vec::new();
    for (index, address) in to.iter().enumerate() {
        let field = || format!("envelope.to[{index}]");
        match address {
            Address::Agency(code) => match directory.agency(code) {
                Some(Known::Enabled) => add(code, address, &mut out),
                Some(Known::Disabled) => {
                    return Err(RoutingError::Disabled {
                        field: field(),
                        code: code.clone(),
                    });
                }
                None => match directory.remote(code) {
                    Some(gateway) => {
                        if !out.iter().any(|r| &r.code == code) {
                            out.push(Recipient::forwarded(code.clone(), &gateway));
                        }
                    }
                    None => {
                        return Err(RoutingError::Unknown {
                            field: field(),
                            code: code.clone(),
                        });
                    }
                },
            },
            Address::Children(parent) => {
                if directory.agency(parent).is_none() {
                    return Err(RoutingError::Unknown {
                        field: field(),
                        code: parent.clone(),
                    });
                }
                let enabled: Vec<OrgCode> = directory
                    .children(parent)
                    .into_iter()
                    .filter(|(_, known)| *known == Known::Enabled)
                    .map(|(code, _)| code)
                    .collect();
                add_all(&enabled, address, field, &mut out)?;
            }
            Address::Group(name) => {
                let members = directory
                    .group(name)
                    .ok_or_else(|| RoutingError::UnknownGroup {
                        field: field(),
                        name: name.clone(),
                    })?;
                let enabled: Vec<OrgCode> = members
                    .into_iter()
                    .filter(|code| directory.agency(code) == Some(Known::Enabled))
                    .collect();
                add_all(&enabled, address, field, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Queues `code` under `via` unless an earlier address reached it.
fn add(code: &OrgCode, via: &Address, out: &mut Vec<Recipient>) {
    if !out.iter().any(|r| &r.code == code) {
        out.push(Recipient {
            code: code.clone(),
            via: via.to_string(),
        });
    }
}

/// Adds the enabled agencies a children: or group: address reached; reaching
/// none is an error.
fn add_all(
    enabled: &[OrgCode],
    address: &Address,
    field: impl Fn() -> String,
    out: &mut Vec<Recipient>,
) -> Result<(), RoutingError> {
    if enabled.is_empty() {
        return Err(RoutingError::Empty {
            field: field(),
            address: address.to_string(),
        });
    }
    for code in enabled {
        add(code, address, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
