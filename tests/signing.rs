//! Remote signing: keys held by the gateway, Sign and CoSign for a commune's
//! signing station, checked by the `openssl cms` command and by the
//! gateway's own verifier, then the Treasury payment order end to end.

mod common;

use std::process::Command;

use common::*;
use lienthong::{pki::Passphrase, proto};
use tonic::Code;

const ORDER: &[u8] = b"<LenhChi><So>21/LCT</So><SoTien>8500000</SoTien></LenhChi>";

fn config_with_passphrase(
    dir: &std::path::Path,
    passphrase: Option<&str>,
) -> lienthong::config::Config {
    let mut config = config(dir);
    config.keystore.passphrase = passphrase.and_then(|p| Passphrase::new(p.as_bytes().to_vec()));
    config
}

async fn import(
    admin: &mut proto::admin_client::AdminClient<tonic::transport::Channel>,
    agency: &str,
    role: proto::SignerRole,
    file: &str,
) {
    let base = certs().join(file);
    admin
        .import_key(proto::ImportKeyRequest {
            key: Some(proto::KeyRef {
                agency: agency.into(),
                role: role as i32,
            }),
            certificate_pem: std::fs::read_to_string(base.with_extension("crt")).expect("cert"),
            private_key_pem: std::fs::read_to_string(base.with_extension("key")).expect("key"),
        })
        .await
        .expect("import key");
}

fn key(agency: &str, role: proto::SignerRole) -> Option<proto::KeyRef> {
    Some(proto::KeyRef {
        agency: agency.into(),
        role: role as i32,
    })
}

/// `openssl cms -verify` over the content; returns how many signer certificates it vouched for.
fn openssl_verify(content: &[u8], cms_der: &[u8]) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, signature, signers) = (
        dir.path().join("c"),
        dir.path().join("s"),
        dir.path().join("signers.pem"),
    );
    std::fs::write(&input, content).expect("write");
    std::fs::write(&signature, cms_der).expect("write");
    let output = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&signature)
        .arg("-content")
        .arg(&input)
        .arg("-CAfile")
        .arg(certs().join("ca/root.crt"))
        .arg("-signer")
        .arg(&signers)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl cms -verify refused: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(signers)
        .expect("signers")
        .matches("BEGIN CERTIFICATE")
        .count()
}

#[tokio::test]
async fn a_commune_signs_and_cosigns_through_the_gateway_and_the_treasury_accepts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config_with_passphrase(
        dir.path(),
        Some("mật khẩu kho khóa"),
    ))
    .await;
    let mut admin = server.admin("admin").await;
    import(
        &mut admin,
        COMMUNE_A,
        proto::SignerRole::ChiefAccountant,
        "signers/commune-a-chief-accountant",
    )
    .await;
    import(
        &mut admin,
        COMMUNE_A,
        proto::SignerRole::AccountOwner,
        "signers/commune-a-account-owner",
    )
    .await;
    import(
        &mut admin,
        COMMUNE_B,
        proto::SignerRole::ChiefAccountant,
        "signers/commune-b-chief-accountant",
    )
    .await;
    let held = admin
        .list_keys(proto::ListKeysRequest {})
        .await
        .expect("list")
        .into_inner()
        .keys;
    assert_eq!(held.len(), 3);

    let mut station = proto::signing_client::SigningClient::new(server.channel("commune-a").await);
    let signed = station
        .sign(proto::SignRequest {
            key: key(COMMUNE_A, proto::SignerRole::ChiefAccountant),
            content: ORDER.to_vec(),
        })
        .await
        .expect("sign")
        .into_inner();
    assert!(
        signed
            .signer
            .expect("signer")
            .subject
            .contains("Phạm Thị Kế Toán")
    );
    assert_eq!(openssl_verify(ORDER, &signed.cms_der), 1);

    let cosigned = station
        .co_sign(proto::CoSignRequest {
            key: key(COMMUNE_A, proto::SignerRole::AccountOwner),
            content: ORDER.to_vec(),
            cms_der: signed.cms_der.clone(),
        })
        .await
        .expect("co-sign")
        .into_inner();
    assert_eq!(cosigned.existing.len(), 1);
    assert_eq!(
        openssl_verify(ORDER, &cosigned.cms_der),
        2,
        "openssl must see both signers"
    );

    let reports = station
        .verify(proto::VerifyRequest {
            content: ORDER.to_vec(),
            cms_der: cosigned.cms_der.clone(),
            attachment: "lenh-chi.xml".into(),
        })
        .await
        .expect("verify")
        .into_inner()
        .reports;
    let roles: Vec<i32> = reports
        .iter()
        .map(|r| {
            assert_eq!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
            r.signer.as_ref().expect("signer").role
        })
        .collect();
    // SignerInfos is a DER SET OF: its order is the encoding's, not the signing order.
    let mut roles = roles;
    roles.sort_unstable();
    assert_eq!(
        roles,
        [
            proto::SignerRole::AccountOwner as i32,
            proto::SignerRole::ChiefAccountant as i32
        ]
    );

    let order = |id: &str, cms_der: Vec<u8>| {
        let mut envelope = unsigned_envelope(id, COMMUNE_A, &[TREASURY], ORDER);
        envelope.document.as_mut().expect("document").r#type = "treasury.payment-order".into();
        envelope.signatures.push(proto::Signature {
            attachment: "ke-hoach.pdf".into(),
            cms_der,
        });
        envelope
    };
    let mut commune = server.exchange("commune-a").await;
    send(&mut commune, order("lct-21", cosigned.cms_der.clone()))
        .await
        .expect("both signatures: accepted");
    let refused = send(&mut commune, order("lct-22", signed.cms_der.clone()))
        .await
        .expect_err("one signature");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Commune B's accountant signs; commune A's owner co-signs: not commune A's accountant.
    let mut station_b =
        proto::signing_client::SigningClient::new(server.channel("commune-b").await);
    let foreign = station_b
        .sign(proto::SignRequest {
            key: key(COMMUNE_B, proto::SignerRole::ChiefAccountant),
            content: ORDER.to_vec(),
        })
        .await
        .expect("commune B signs with its own key")
        .into_inner();
    let mixed = station
        .co_sign(proto::CoSignRequest {
            key: key(COMMUNE_A, proto::SignerRole::AccountOwner),
            content: ORDER.to_vec(),
            cms_der: foreign.cms_der,
        })
        .await
        .expect("co-sign")
        .into_inner();
    let refused = send(&mut commune, order("lct-23", mixed.cms_der))
        .await
        .expect_err("another commune's accountant");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let mut treasury = server.exchange("treasury").await;
    let deliveries = drain(&mut treasury).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(envelope_of(&deliveries[0]).message_id, "lct-21");
    assert_eq!(deliveries[0].reports.len(), 2);
    assert!(
        deliveries[0]
            .reports
            .iter()
            .all(|r| r.indication == proto::Indication::TotalPassed as i32)
    );

    // Another agency's key may not be used; a missing key is NOT_FOUND.
    let stolen = station
        .sign(proto::SignRequest {
            key: key(COMMUNE_B, proto::SignerRole::ChiefAccountant),
            content: ORDER.to_vec(),
        })
        .await
        .expect_err("commune B's key");
    assert_eq!(stolen.code(), Code::PermissionDenied);
    let missing = station
        .sign(proto::SignRequest {
            key: key(COMMUNE_A, proto::SignerRole::Head),
            content: ORDER.to_vec(),
        })
        .await
        .expect_err("no such key");
    assert_eq!(missing.code(), Code::NotFound);
    let tampered = station
        .co_sign(proto::CoSignRequest {
            key: key(COMMUNE_A, proto::SignerRole::AccountOwner),
            content: b"another order".to_vec(),
            cms_der: signed.cms_der,
        })
        .await
        .expect_err("what is there does not verify");
    assert_eq!(tampered.code(), Code::FailedPrecondition);
    drop((station, station_b, commune, treasury, admin));
    server.stop().await;

    // At rest the keys are encrypted; none is in clear.
    let (pairs, _) = snapshot(dir.path());
    let stored: Vec<String> = pairs
        .iter()
        .filter(|(key, _)| key.starts_with(b"signing-key\0"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .collect();
    assert_eq!(stored.len(), 3);
    for value in &stored {
        assert!(
            value.contains("BEGIN ENCRYPTED PRIVATE KEY"),
            "key not sealed"
        );
        assert!(!value.contains("BEGIN PRIVATE KEY") && !value.contains("BEGIN RSA PRIVATE KEY"));
    }

    // Restarting without the passphrase, or with a wrong one, refuses to run and says why.
    for (passphrase, expected) in [
        (None, "LIENTHONG_KEYSTORE_PASSPHRASE"),
        (Some("wrong"), "does not unlock"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let outcome = lienthong::server::serve(
            config_with_passphrase(dir.path(), passphrase),
            listener,
            std::future::pending(),
        )
        .await;
        let error = outcome.expect_err("must refuse to start").to_string();
        assert!(error.contains(expected), "{error}");
    }
    // With the right passphrase it starts and still holds the keys.
    let server = TestServer::start_with(config_with_passphrase(
        dir.path(),
        Some("mật khẩu kho khóa"),
    ))
    .await;
    let mut admin = server.admin("admin").await;
    assert_eq!(
        admin
            .list_keys(proto::ListKeysRequest {})
            .await
            .expect("list")
            .into_inner()
            .keys
            .len(),
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn importing_needs_a_passphrase_and_a_matching_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config_with_passphrase(dir.path(), None)).await;
    let mut admin = server.admin("admin").await;
    let request = |cert: &str, key_file: &str| proto::ImportKeyRequest {
        key: Some(proto::KeyRef {
            agency: COMMUNE_A.into(),
            role: proto::SignerRole::Head as i32,
        }),
        certificate_pem: std::fs::read_to_string(certs().join(cert)).expect("cert"),
        private_key_pem: std::fs::read_to_string(certs().join(key_file)).expect("key"),
    };
    let locked = admin
        .import_key(request(
            "signers/district-head.crt",
            "signers/district-head.key",
        ))
        .await
        .expect_err("no passphrase");
    assert_eq!(locked.code(), Code::FailedPrecondition);
    assert!(
        locked.message().contains("passphrase"),
        "{}",
        locked.message()
    );
    server.stop().await;

    let server = TestServer::start_with(config_with_passphrase(dir.path(), Some("p"))).await;
    let mut admin = server.admin("admin").await;
    let mismatch = admin
        .import_key(request(
            "signers/district-head.crt",
            "signers/district-organization.key",
        ))
        .await
        .expect_err("key of another certificate");
    assert_eq!(mismatch.code(), Code::InvalidArgument);
    assert!(
        mismatch.message().contains("does not belong"),
        "{}",
        mismatch.message()
    );
    let mut agency_as_admin = server.admin("commune-a").await;
    let denied = agency_as_admin
        .import_key(request(
            "signers/district-head.crt",
            "signers/district-head.key",
        ))
        .await
        .expect_err("not an admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn a_large_file_is_signed_as_a_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(config_with_passphrase(dir.path(), Some("p"))).await;
    let mut admin = server.admin("admin").await;
    import(
        &mut admin,
        COMMUNE_A,
        proto::SignerRole::Organization,
        "signers/commune-a-organization",
    )
    .await;
    // Larger than the unary limit (16 MiB): only a stream can carry it.
    let content: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut messages = vec![proto::SignStreamRequest {
        part: Some(proto::sign_stream_request::Part::Key(proto::KeyRef {
            agency: COMMUNE_A.into(),
            role: proto::SignerRole::Organization as i32,
        })),
    }];
    for chunk in content.chunks(64 * 1024) {
        messages.push(proto::SignStreamRequest {
            part: Some(proto::sign_stream_request::Part::Chunk(chunk.to_vec())),
        });
    }
    let mut station = proto::signing_client::SigningClient::new(server.channel("commune-a").await);
    let signed = station
        .sign_stream(tokio_stream::iter(messages))
        .await
        .expect("sign stream")
        .into_inner();
    assert_eq!(openssl_verify(&content, &signed.cms_der), 1);

    let no_key = station
        .sign_stream(tokio_stream::iter(vec![proto::SignStreamRequest {
            part: Some(proto::sign_stream_request::Part::Chunk(b"x".to_vec())),
        }]))
        .await
        .expect_err("key first");
    assert_eq!(no_key.code(), Code::InvalidArgument);
    server.stop().await;
}
