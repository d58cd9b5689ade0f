//! Signatures over gRPC: the Treasury's two-signature policy, the reports a
//! refusal carries (rich error details), Signing.Verify, and the Admin calls
//! for signers, policies and trust. Signatures are made by the `openssl cms`
//! command, as an agency's own signing tool would make them.

mod common;

use common::*;
use lienthong::proto;
use prost::Message;
use tonic::Code;

/// A detached CAdES signature by a certs-test identity, made by `openssl cms`.
fn openssl_sign(identity: &str, content: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("content");
    let output = dir.path().join("sig.der");
    std::fs::write(&input, content).expect("write");
    openssl_sign_file(identity, &input, &output);
    std::fs::read(output).expect("signature")
}

const ORDER: &[u8] =
    b"<LenhChi><SoTien>15000000</SoTien><NguoiNhan>Cong ty A</NguoiNhan></LenhChi>";

fn payment_order(id: &str, to: &str, signers: &[&str]) -> proto::Envelope {
    let mut envelope = unsigned_envelope(id, COMMUNE_A, &[to], ORDER);
    let document = envelope.document.as_mut().expect("document");
    document.r#type = "treasury.payment-order".into();
    document.subject = "Lệnh chi tiền số 15/LCT".into();
    envelope.attachments[0].name = "lenh-chi.xml".into();
    envelope.attachments[0].media_type = "application/xml".into();
    for signer in signers {
        envelope.signatures.push(proto::Signature {
            attachment: "lenh-chi.xml".into(),
            cms_der: openssl_sign(signer, ORDER),
        });
    }
    envelope
}

/// The reports carried in a FAILED_PRECONDITION's rich error details.
fn refusal_details(status: &tonic::Status) -> (Vec<String>, Vec<proto::VerificationReport>) {
    let details =
        tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status details");
    let mut violations = Vec::new();
    let mut reports = Vec::new();
    for any in details.details {
        match any.type_url.as_str() {
            "type.googleapis.com/google.rpc.PreconditionFailure" => {
                let failure = tonic_types::pb::PreconditionFailure::decode(any.value.as_slice())
                    .expect("decode");
                violations.extend(failure.violations.into_iter().map(|v| v.description));
            }
            "type.googleapis.com/lienthong.v1.VerifyResponse" => {
                reports = proto::VerifyResponse::decode(any.value.as_slice())
                    .expect("decode")
                    .reports;
            }
            other => panic!("unexpected detail {other}"),
        }
    }
    (violations, reports)
}

#[tokio::test]
async fn the_treasury_takes_a_payment_order_only_with_both_signatures_of_the_sender() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut commune = server.exchange("commune-a").await;

    let both = payment_order(
        "lct-15",
        TREASURY,
        &[
            "signers/commune-a-account-owner",
            "signers/commune-a-chief-accountant",
        ],
    );
    let receipt = send(&mut commune, both).await.expect("both signatures");
    assert_eq!(receipt.verification, proto::Indication::TotalPassed as i32);
    let mut treasury = server.exchange("treasury").await;
    let deliveries = drain(&mut treasury).await;
    assert_eq!(deliveries.len(), 1);
    let roles: Vec<i32> = deliveries[0]
        .reports
        .iter()
        .map(|r| {
            assert_eq!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
            let signer = r.signer.as_ref().expect("signer");
            assert_eq!(signer.agency, COMMUNE_A);
            signer.role
        })
        .collect();
    assert_eq!(
        roles,
        [
            proto::SignerRole::AccountOwner as i32,
            proto::SignerRole::ChiefAccountant as i32
        ]
    );
    ack(&mut treasury, &deliveries[0]).await;

    let one = payment_order("lct-16", TREASURY, &["signers/commune-a-account-owner"]);
    let refused = send(&mut commune, one).await.expect_err("one signature");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (violations, reports) = refusal_details(&refused);
    assert!(
        violations.iter().any(|v| v.contains("chief-accountant")),
        "{violations:?}"
    );
    assert_eq!(
        reports.len(),
        1,
        "the refusal carries the report of the one signature"
    );
    assert_eq!(reports[0].indication, proto::Indication::TotalPassed as i32);

    let foreign = payment_order(
        "lct-17",
        TREASURY,
        &[
            "signers/commune-a-account-owner",
            "signers/commune-b-chief-accountant",
        ],
    );
    let refused = send(&mut commune, foreign)
        .await
        .expect_err("another commune's accountant");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let (violations, reports) = refusal_details(&refused);
    assert!(
        violations.iter().any(|v| v.contains("chief-accountant")),
        "{violations:?}"
    );
    assert_eq!(
        reports[1].signer.as_ref().expect("signer").agency,
        COMMUNE_B
    );

    let to_bank = payment_order(
        "lct-18",
        "000.00.91.H56",
        &[
            "signers/commune-a-account-owner",
            "signers/commune-a-chief-accountant",
        ],
    );
    let refused = send(&mut commune, to_bank)
        .await
        .expect_err("not a Treasury recipient");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("000.00.91.H56"),
        "{}",
        refused.message()
    );

    let revoked = payment_order(
        "lct-19",
        TREASURY,
        &["signers/commune-a-account-owner", "bad/revoked"],
    );
    let refused = send(&mut commune, revoked)
        .await
        .expect_err("revoked signer");
    let (_, reports) = refusal_details(&refused);
    assert_eq!(
        reports[1].sub_indication,
        proto::SubIndication::RevokedNoPoe as i32
    );

    // Nothing refused reached the Treasury.
    assert!(drain(&mut treasury).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn an_unsigned_or_badly_signed_letter_is_refused_by_the_default_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    let unsigned = send(
        &mut department,
        unsigned_envelope("u1", DEPARTMENT, &[DISTRICT], b"x"),
    )
    .await
    .expect_err("unsigned");
    assert_eq!(unsigned.code(), Code::FailedPrecondition);
    assert!(
        unsigned.message().contains("organization or head"),
        "{}",
        unsigned.message()
    );

    let mut tampered = envelope("u2", DEPARTMENT, &[DISTRICT], b"original");
    tampered.attachments[0].content = b"altered".to_vec();
    let refused = send(&mut department, tampered).await.expect_err("tampered");
    let (_, reports) = refusal_details(&refused);
    assert_eq!(
        reports[0].sub_indication,
        proto::SubIndication::HashFailure as i32
    );

    // Signed by another agency's organization: valid, but not the sender's.
    let mut borrowed = unsigned_envelope("u3", DEPARTMENT, &[DISTRICT], b"x");
    borrowed.signatures.push(proto::Signature {
        attachment: "ke-hoach.pdf".into(),
        cms_der: openssl_sign("signers/district-organization", b"x"),
    });
    assert_eq!(
        send(&mut department, borrowed)
            .await
            .expect_err("not the sender's")
            .code(),
        Code::FailedPrecondition
    );
    let mut district = server.exchange("district").await;
    assert!(drain(&mut district).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn signing_verify_reports_each_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut signing = proto::signing_client::SigningClient::new(server.channel("district").await);
    let good = signing
        .verify(proto::VerifyRequest {
            content: ORDER.to_vec(),
            cms_der: openssl_sign("signers/commune-b-chief-accountant", ORDER),
            attachment: "lenh-chi.xml".into(),
        })
        .await
        .expect("verify")
        .into_inner()
        .reports;
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].indication, proto::Indication::TotalPassed as i32);
    let signer = good[0].signer.as_ref().expect("signer");
    assert_eq!(
        (signer.agency.as_str(), signer.role),
        (COMMUNE_B, proto::SignerRole::ChiefAccountant as i32)
    );
    assert!(
        good[0].checks.iter().all(|c| c.passed),
        "{:?}",
        good[0].checks
    );

    for (identity, expected) in [
        ("bad/expired", proto::SubIndication::OutOfBoundsNoPoe),
        (
            "bad/self-signed",
            proto::SubIndication::NoCertificateChainFound,
        ),
        (
            "bad/weak-key",
            proto::SubIndication::CryptoConstraintsFailureNoPoe,
        ),
    ] {
        let reports = signing
            .verify(proto::VerifyRequest {
                content: ORDER.to_vec(),
                cms_der: openssl_sign(identity, ORDER),
                attachment: String::new(),
            })
            .await
            .expect("verify")
            .into_inner()
            .reports;
        assert_eq!(reports[0].sub_indication, expected as i32, "{identity}");
    }
    let mut anonymous =
        proto::signing_client::SigningClient::new(connect(server.addr, None).await.expect("tls"));
    let denied = anonymous
        .verify(proto::VerifyRequest::default())
        .await
        .expect_err("no certificate");
    assert_eq!(denied.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn admin_manages_signers_policies_and_trust() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin = server.admin("admin").await;

    let signers = admin
        .list_signers(proto::ListSignersRequest {
            agency: COMMUNE_A.into(),
        })
        .await
        .expect("list")
        .into_inner()
        .signers;
    assert_eq!(
        signers.len(),
        3,
        "organization, account owner, chief accountant"
    );
    let fingerprint = signers[0]
        .certificate
        .as_ref()
        .expect("facts")
        .sha256_fingerprint
        .clone();
    admin
        .remove_signer(proto::RemoveSignerRequest {
            sha256_fingerprint: fingerprint.clone(),
        })
        .await
        .expect("remove");
    let gone = admin
        .remove_signer(proto::RemoveSignerRequest {
            sha256_fingerprint: fingerprint,
        })
        .await
        .expect_err("removed already");
    assert_eq!(gone.code(), Code::NotFound);
    let unknown_agency = admin
        .add_signer(proto::AddSignerRequest {
            agency: "000.00.77.H56".into(),
            role: proto::SignerRole::Head as i32,
            certificate_pem: std::fs::read_to_string(certs().join("signers/district-head.crt"))
                .expect("pem"),
        })
        .await
        .expect_err("no such agency");
    assert_eq!(unknown_agency.code(), Code::NotFound);
    let no_role = admin
        .add_signer(proto::AddSignerRequest {
            agency: COMMUNE_A.into(),
            role: 0,
            certificate_pem: String::new(),
        })
        .await
        .expect_err("role unspecified");
    assert_eq!(no_role.code(), Code::InvalidArgument);

    // A stricter policy for plans: the head must sign.
    admin
        .put_policy(proto::PutPolicyRequest {
            policy: Some(proto::Policy {
                document_type: "plan".into(),
                required_roles: vec![proto::SignerRole::Head as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("put policy");
    let mut department = server.exchange("department").await;
    let mut plan = envelope("plan-1", DEPARTMENT, &[DISTRICT], b"plan");
    plan.document.as_mut().expect("document").r#type = "plan".into();
    let refused = send(&mut department, plan)
        .await
        .expect_err("organization is not head");
    assert!(refused.message().contains("head"), "{}", refused.message());
    let policies = admin
        .list_policies(proto::ListPoliciesRequest {})
        .await
        .expect("list")
        .into_inner()
        .policies;
    let types: Vec<&str> = policies.iter().map(|p| p.document_type.as_str()).collect();
    assert_eq!(types, ["*", "cong-van", "plan", "treasury.payment-order"]);

    let trust = admin
        .list_trust(proto::ListTrustRequest {})
        .await
        .expect("trust")
        .into_inner();
    assert_eq!(trust.anchors.len(), 1);
    assert_eq!(trust.crls.len(), 2);
    let crl = std::fs::read(certs().join("ca/agency-ca.crl")).expect("crl");
    let published = admin
        .publish_crl(proto::PublishCrlRequest { crl })
        .await
        .expect("publish")
        .into_inner()
        .crl
        .expect("item");
    assert!(published.name.contains("Agency CA"), "{}", published.name);
    let bad_crl = admin
        .publish_crl(proto::PublishCrlRequest {
            crl: b"not a crl".to_vec(),
        })
        .await
        .expect_err("garbage");
    assert_eq!(bad_crl.code(), Code::InvalidArgument);
    let bad_anchor = admin
        .add_trust_anchor(proto::AddTrustAnchorRequest {
            certificate_pem: "nope".into(),
        })
        .await
        .expect_err("garbage");
    assert_eq!(bad_anchor.code(), Code::InvalidArgument);
    // Signatures still verify after the store was rebuilt.
    send(
        &mut department,
        envelope("after-crl", DEPARTMENT, &[DISTRICT], b"ok"),
    )
    .await
    .expect("still verifies");
    server.stop().await;
}
