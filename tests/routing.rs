//! Addressing over gRPC: children:CODE and group:NAME, resolved by the
//! gateway and listed in the receipt with the address that reached each.

mod common;

use common::*;
use lienthong::proto;
use tonic::Code;

const BANK: &str = "000.00.91.H56";

#[tokio::test]
async fn a_district_reaches_its_communes_and_a_group_reaches_its_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;

    let mut district = server.exchange("district").await;
    let receipt = send(
        &mut district,
        envelope(
            "kh-xa",
            DISTRICT,
            &["children:000.00.31.H56"],
            b"to every commune",
        ),
    )
    .await
    .expect("send to children");
    let reached: Vec<(&str, &str)> = receipt
        .recipients
        .iter()
        .map(|r| (r.code.as_str(), r.via.as_str()))
        .collect();
    assert_eq!(
        reached,
        [
            (COMMUNE_A, "children:000.00.31.H56"),
            (COMMUNE_B, "children:000.00.31.H56")
        ]
    );
    for who in ["commune-a", "commune-b"] {
        let mut commune = server.exchange(who).await;
        let deliveries = drain(&mut commune).await;
        assert_eq!(deliveries.len(), 1, "{who}");
        assert_eq!(envelope_of(&deliveries[0]).to, ["children:000.00.31.H56"]);
        ack(&mut commune, &deliveries[0]).await;
    }

    let mut admin = server.admin("admin").await;
    let group = admin
        .put_group(proto::PutGroupRequest {
            group: Some(proto::Group {
                name: "tai-chinh".into(),
                description: "Kho bạc và ngân hàng".into(),
                members: vec![TREASURY.into(), BANK.into(), TREASURY.into()],
            }),
        })
        .await
        .expect("put group")
        .into_inner()
        .group
        .expect("group");
    assert_eq!(group.members, [TREASURY, BANK], "members are deduplicated");
    let mut department = server.exchange("department").await;
    let receipt = send(
        &mut department,
        envelope(
            "tc-1",
            DEPARTMENT,
            &["group:tai-chinh", TREASURY],
            b"to the group",
        ),
    )
    .await
    .expect("send to group");
    let reached: Vec<(&str, &str)> = receipt
        .recipients
        .iter()
        .map(|r| (r.code.as_str(), r.via.as_str()))
        .collect();
    assert_eq!(
        reached,
        [(TREASURY, "group:tai-chinh"), (BANK, "group:tai-chinh")]
    );

    // A disabled commune is left out of children:.
    admin
        .disable_agency(proto::DisableAgencyRequest {
            code: COMMUNE_B.into(),
        })
        .await
        .expect("disable");
    let receipt = send(
        &mut district,
        envelope("kh-xa-2", DISTRICT, &["children:000.00.31.H56"], b"again"),
    )
    .await
    .expect("send");
    let codes: Vec<&str> = receipt.recipients.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, [COMMUNE_A]);

    for (to, expected) in [
        ("group:none", "envelope.to[0]: no group none"),
        ("children:000.00.12.H56", "reaches no enabled agency"),
        ("everyone", "envelope.to[0]"),
    ] {
        let refused = send(&mut department, envelope("bad-to", DEPARTMENT, &[to], b"x"))
            .await
            .expect_err(to);
        assert_eq!(refused.code(), Code::InvalidArgument, "{to}");
        assert!(
            refused.message().contains(expected),
            "{}",
            refused.message()
        );
    }

    let unknown_member = admin
        .put_group(proto::PutGroupRequest {
            group: Some(proto::Group {
                name: "x".into(),
                description: String::new(),
                members: vec!["000.00.77.H56".into()],
            }),
        })
        .await
        .expect_err("unknown member");
    assert_eq!(unknown_member.code(), Code::NotFound);
    let groups = admin
        .list_groups(proto::ListGroupsRequest {})
        .await
        .expect("list")
        .into_inner()
        .groups;
    assert_eq!(groups.len(), 1);
    admin
        .delete_group(proto::DeleteGroupRequest {
            name: "tai-chinh".into(),
        })
        .await
        .expect("delete");
    let again = admin
        .delete_group(proto::DeleteGroupRequest {
            name: "tai-chinh".into(),
        })
        .await
        .expect_err("deleted already");
    assert_eq!(again.code(), Code::NotFound);
    server.stop().await;
}
