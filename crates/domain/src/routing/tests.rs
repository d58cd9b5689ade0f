//! Resolution: examples, then properties over random directories.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::*;

#[derive(Default, Debug, Clone)]
struct Fake {
    agencies: BTreeMap<OrgCode, (Option<OrgCode>, Known)>,
    groups: BTreeMap<GroupName, Vec<OrgCode>>,
    peers: Vec<(GatewayId, Vec<crate::federation::Route>)>,
}

impl Directory for Fake {
    fn agency(&self, code: &OrgCode) -> Option<Known> {
        self.agencies.get(code).map(|(_, known)| *known)
    }

    fn children(&self, parent: &OrgCode) -> Vec<(OrgCode, Known)> {
        self.agencies
            .iter()
            .filter(|(_, (p, _))| p.as_ref() == Some(parent))
            .map(|(code, (_, known))| (code.clone(), *known))
            .collect()
    }

    fn group(&self, name: &GroupName) -> Option<Vec<OrgCode>> {
        self.groups.get(name).cloned()
    }

    fn remote(&self, code: &OrgCode) -> Option<GatewayId> {
        crate::federation::route(code, &self.peers).cloned()
    }
}

fn code(n: u8) -> OrgCode {
    OrgCode::parse(&format!("000.{:02}.31.H56", n), "t").expect("code")
}

const DISTRICT: u8 = 0;

fn province() -> Fake {
    let mut fake = Fake::default();
    fake.agencies.insert(code(DISTRICT), (None, Known::Enabled));
    fake.agencies
        .insert(code(1), (Some(code(DISTRICT)), Known::Enabled));
    fake.agencies
        .insert(code(2), (Some(code(DISTRICT)), Known::Enabled));
    fake.agencies
        .insert(code(3), (Some(code(DISTRICT)), Known::Disabled));
    fake.agencies.insert(code(9), (None, Known::Enabled));
    fake.groups.insert(
        GroupName::parse("so-nganh", "t").expect("name"),
        vec![code(9), code(1), code(42)],
    );
    fake
}

fn address(text: &str) -> Address {
    Address::parse(text, "t").expect("address")
}

#[test]
fn children_and_groups_expand_and_duplicates_keep_the_first_address() {
    let to = [
        address("000.01.31.H56"),
        address("children:000.00.31.H56"),
        address("group:so-nganh"),
    ];
    let resolved = resolve(&to, &province()).expect("resolves");
    let pairs: Vec<(String, String)> = resolved
        .iter()
        .map(|r| (r.code.to_string(), r.via.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("000.01.31.H56".to_owned(), "000.01.31.H56".to_owned()),
            (
                "000.02.31.H56".to_owned(),
                "children:000.00.31.H56".to_owned()
            ),
            ("000.09.31.H56".to_owned(), "group:so-nganh".to_owned()),
        ]
    );
}

#[test]
fn bad_addresses_name_their_field() {
    let fake = province();
    let cases = [
        (vec![address("000.07.31.H56")], "envelope.to[0]: no agency"),
        (
            vec![address("000.01.31.H56"), address("000.03.31.H56")],
            "envelope.to[1]: agency 000.03.31.H56 is disabled",
        ),
        (vec![address("group:none")], "no group none"),
        (
            vec![address("children:000.09.31.H56")],
            "reaches no enabled agency",
        ),
        (
            vec![address("children:000.07.31.H56")],
            "no agency 000.07.31.H56",
        ),
    ];
    for (to, expected) in cases {
        let error = resolve(&to, &fake).expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "{error} should contain {expected}"
        );
    }
    assert!(Address::parse("children:nope", "f").is_err());
    assert!(Address::parse("group:Bad Name", "f").is_err());
    assert!(Address::parse("everyone", "f").is_err());
}

fn directory() -> impl Strategy<Value = Fake> {
    (
        prop::collection::vec((prop::option::of(0u8..8), any::<bool>()), 1..24),
        prop::collection::vec(prop::collection::vec(0u8..30, 0..6), 0..4),
    )
        .prop_map(|(agencies, groups)| {
            let mut fake = Fake::default();
            for (index, (parent, enabled)) in agencies.into_iter().enumerate() {
                let known = if enabled {
                    Known::Enabled
                } else {
                    Known::Disabled
                };
                fake.agencies
                    .insert(code(index as u8), (parent.map(code), known));
            }
            for (index, members) in groups.into_iter().enumerate() {
                let name = GroupName::parse(&format!("g{index}"), "t").expect("name");
                fake.groups
                    .insert(name, members.into_iter().map(code).collect());
            }
            fake
        })
}

fn addresses() -> impl Strategy<Value = Vec<Address>> {
    prop::collection::vec(
        prop_oneof![
            (0u8..30).prop_map(|n| Address::Agency(code(n))),
            (0u8..30).prop_map(|n| Address::Children(code(n))),
            (0u8..5).prop_map(|n| Address::Group(
                GroupName::parse(&format!("g{n}"), "t").expect("name")
            )),
        ],
        1..8,
    )
}

proptest! {
    #[test]
    fn resolution_never_duplicates_and_yields_only_enabled_agencies(fake in directory(), to in addresses()) {
        if let Ok(resolved) = resolve(&to, &fake) {
            let mut seen = HashSet::new();
            for recipient in &resolved {
                prop_assert!(seen.insert(recipient.code.clone()), "duplicate {}", recipient.code);
                prop_assert_eq!(fake.agency(&recipient.code), Some(Known::Enabled));
                prop_assert!(to.iter().any(|a| a.to_string() == recipient.via));
            }
            // Every address is honoured: explicit codes, and every enabled child or member.
            for address in &to {
                let expected: Vec<OrgCode> = match address {
                    Address::Agency(code) => vec![code.clone()],
                    Address::Children(parent) => fake.children(parent).into_iter()
                        .filter(|(_, k)| *k == Known::Enabled).map(|(c, _)| c).collect(),
                    Address::Group(name) => fake.group(name).unwrap_or_default().into_iter()
                        .filter(|c| fake.agency(c) == Some(Known::Enabled)).collect(),
                };
                for code in expected {
                    prop_assert!(seen.contains(&code), "{} missing for {}", code, address);
                }
            }
        }
    }

    #[test]
    fn resolution_is_deterministic_and_ignores_repeated_addresses(fake in directory(), to in addresses()) {
        let once = resolve(&to, &fake);
        let mut doubled = to.clone();
        doubled.extend(to.iter().cloned());
        prop_assert_eq!(once.clone(), resolve(&to, &fake));
        prop_assert_eq!(once, resolve(&doubled, &fake));
    }
}

#[test]
fn codes_of_other_provinces_are_forwarded_by_level1_and_local_agencies_win() {
    use crate::federation::Route;
    let hub = GatewayId::parse("VN:GOV:HUB", "t").expect("id");
    let h17 = GatewayId::parse("VN:GOV:H17", "t").expect("id");
    let mut directory = province();
    directory.peers = vec![
        (hub.clone(), vec![Route::Default]),
        (h17.clone(), vec![Route::Level1("H17".into())]),
    ];
    let to = [
        address("000.00.12.H17"),
        address("000.00.31.H56"),
        address("000.00.40.G22"),
        address("000.00.13.H17"),
    ];
    let resolved = resolve(&to, &directory).expect("resolves");
    let vias: Vec<&str> = resolved.iter().map(|r| r.via.as_str()).collect();
    assert_eq!(
        vias,
        [
            "forwarded to VN:GOV:H17",
            "000.00.31.H56",
            "forwarded to VN:GOV:HUB",
            "forwarded to VN:GOV:H17"
        ]
    );
    assert_eq!(resolved[0].gateway(), Some(h17.clone()));
    assert_eq!(resolved[1].gateway(), None);
    // Two recipients behind one peer wait in one queue entry.
    let queues: Vec<String> = mailboxes(&resolved).iter().map(|m| m.to_string()).collect();
    assert_eq!(
        queues,
        ["peer:VN:GOV:H17", "000.00.31.H56", "peer:VN:GOV:HUB"]
    );
    // children: of an unknown agency is not forwarded.
    assert!(resolve(&[address("children:000.00.12.H17")], &directory).is_err());
    // Without peers an unknown code is an error, as before.
    assert!(resolve(&[address("000.00.12.H17")], &province()).is_err());
}
