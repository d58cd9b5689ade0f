//! Verification against signatures made by the `openssl cms` command.

use std::{path::PathBuf, process::Command, sync::Arc};

use super::*;
use crate::clock::{Clock, SystemClock};

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../certs-test")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(certs().join(path)).expect("certs-test file")
}

/// Signs `content` with the openssl command, as an agency's own tool would.
fn openssl_sign(identity: &str, content: &[u8], extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("content");
    let output = dir.path().join("sig.der");
    std::fs::write(&input, content).expect("write");
    let status = Command::new("openssl")
        .args(["cms", "-sign", "-binary", "-outform", "DER", "-in"])
        .arg(&input)
        .arg("-signer")
        .arg(certs().join(format!("{identity}.crt")))
        .arg("-inkey")
        .arg(certs().join(format!("{identity}.key")))
        .arg("-out")
        .arg(&output)
        .args(extra)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl cms -sign failed for {identity}");
    std::fs::read(output).expect("signature")
}

fn cades(identity: &str, content: &[u8]) -> Vec<u8> {
    let chain = certs().join("ca/agency-ca.crt");
    openssl_sign(
        identity,
        content,
        &[
            "-cades",
            "-md",
            "sha256",
            "-certfile",
            chain.to_str().expect("utf-8"),
        ],
    )
}

fn trust(with_agency_crl: bool) -> TrustStore {
    let anchors = certificates_from_pem(&[read("ca/root.crt")]).expect("root");
    let intermediates = certificates_from_pem(&[read("ca/agency-ca.crt")]).expect("intermediate");
    let mut crls = vec![crl_from_bytes(&read("ca/root.crl")).expect("root crl")];
    if with_agency_crl {
        crls.push(crl_from_bytes(&read("ca/agency-ca.crl")).expect("agency crl"));
    }
    TrustStore::build(anchors, intermediates, crls).expect("trust store")
}

fn verifier(with_agency_crl: bool) -> Verifier {
    Verifier::new(
        trust(with_agency_crl),
        CryptoRules::default(),
        Arc::new(SystemClock),
    )
}

fn no_lookup(_: &Fingerprint) -> Option<(crate::envelope::OrgCode, Role)> {
    None
}

fn verify_one(verifier: &Verifier, content: &[u8], signature: &[u8]) -> Report {
    let mut reports = verifier.verify(content, signature, "van-ban.pdf", &no_lookup);
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

const CONTENT: &[u8] = b"%PDF-1.7 Lenh chi tien so 15/LCT";

#[test]
fn an_openssl_cades_signature_passes_with_its_signer_named() {
    let verifier = verifier(true);
    let signature = cades("signers/commune-a-chief-accountant", CONTENT);
    let code = crate::envelope::OrgCode::parse("000.01.31.H56", "t").expect("code");
    let lookup = |_: &Fingerprint| Some((code.clone(), Role::ChiefAccountant));
    let report = verifier
        .verify(CONTENT, &signature, "van-ban.pdf", &lookup)
        .remove(0);
    assert_eq!(report.indication, Indication::TotalPassed, "{report:#?}");
    assert_eq!(report.sub_indication, None);
    let signer = report.signer.expect("signer");
    assert!(
        signer.subject.contains("Phạm Thị Kế Toán"),
        "{}",
        signer.subject
    );
    assert!(signer.signing_time.is_some());
    assert_eq!(
        signer.registered.map(|(_, role)| role),
        Some(Role::ChiefAccountant)
    );
    for name in [
        "signed_attributes",
        "content_digest",
        "signature_value",
        "algorithms",
        "key_usage",
        "validity",
        "chain",
        "revocation",
    ] {
        assert!(
            report.checks.iter().any(|c| c.name == name && c.passed),
            "check {name} missing: {:?}",
            report.checks
        );
    }
}

#[test]
fn the_intermediate_may_come_from_the_config_instead_of_the_cms() {
    let signature = openssl_sign("signers/department-head", CONTENT, &["-cades"]);
    assert_eq!(
        verify_one(&verifier(true), CONTENT, &signature).indication,
        Indication::TotalPassed
    );
}

#[test]
fn each_bad_certificate_gives_its_own_sub_indication() {
    let verifier = verifier(true);
    let cases = [
        ("bad/expired", SubIndication::OutOfBoundsNoPoe),
        ("bad/not-yet-valid", SubIndication::NotYetValid),
        ("bad/revoked", SubIndication::RevokedNoPoe),
        (
            "bad/wrong-key-usage",
            SubIndication::ChainConstraintsFailure,
        ),
        ("bad/self-signed", SubIndication::NoCertificateChainFound),
        ("bad/weak-key", SubIndication::CryptoConstraintsFailureNoPoe),
        (
            "bad/weak-hash",
            SubIndication::CryptoConstraintsFailureNoPoe,
        ),
    ];
    for (identity, expected) in cases {
        let report = verify_one(&verifier, CONTENT, &cades(identity, CONTENT));
        assert_eq!(
            report.sub_indication,
            Some(expected),
            "{identity}: {report:#?}"
        );
        assert_ne!(report.indication, Indication::TotalPassed, "{identity}");
        assert!(!report.message.is_empty());
    }
}

#[test]
fn one_changed_byte_is_a_hash_failure() {
    let signature = cades("signers/district-head", CONTENT);
    let mut changed = CONTENT.to_vec();
    changed[5] ^= 1;
    let report = verify_one(&verifier(true), &changed, &signature);
    assert_eq!(report.indication, Indication::TotalFailed);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::HashFailure),
        "{report:#?}"
    );
    assert!(
        report.message.contains("changed after signing"),
        "{}",
        report.message
    );
}

#[test]
fn a_broken_signature_value_is_a_crypto_failure() {
    let mut signature = cades("signers/district-head", CONTENT);
    // The signature value is the last field of the last SignerInfo.
    let last = signature.len() - 1;
    signature[last] ^= 0x55;
    let report = verify_one(&verifier(true), CONTENT, &signature);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::SigCryptoFailure),
        "{report:#?}"
    );
}

#[test]
fn a_missing_crl_means_try_later_not_valid() {
    let signature = cades("signers/district-head", CONTENT);
    let report = verify_one(&verifier(false), CONTENT, &signature);
    assert_eq!(report.indication, Indication::Indeterminate);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::TryLater),
        "{report:#?}"
    );
}

#[test]
fn a_sha1_digest_is_refused() {
    let signature = openssl_sign("signers/district-head", CONTENT, &["-md", "sha1"]);
    let report = verify_one(&verifier(true), CONTENT, &signature);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::CryptoConstraintsFailureNoPoe),
        "{report:#?}"
    );
}

#[test]
fn signed_attributes_are_required() {
    let signature = openssl_sign("signers/district-head", CONTENT, &["-noattr"]);
    let report = verify_one(&verifier(true), CONTENT, &signature);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::SigConstraintsFailure),
        "{report:#?}"
    );
}

#[test]
fn garbage_is_a_format_failure_and_never_panics() {
    let verifier = verifier(true);
    for garbage in [
        &b""[..],
        b"\x30\x03\x02\x01\x01",
        b"not a signature at all",
        &[0xffu8; 300],
    ] {
        let report = verify_one(&verifier, CONTENT, garbage);
        assert_eq!(
            report.sub_indication,
            Some(SubIndication::FormatFailure),
            "{garbage:?}"
        );
    }
    let truncated = &cades("signers/district-head", CONTENT)[..200];
    assert_eq!(
        verify_one(&verifier, CONTENT, truncated).sub_indication,
        Some(SubIndication::FormatFailure)
    );
}

#[test]
fn roles_parse_from_names() {
    assert_eq!(Role::parse("chief-accountant"), Some(Role::ChiefAccountant));
    assert_eq!(Role::parse("ACCOUNT_OWNER"), Some(Role::AccountOwner));
    assert_eq!(Role::parse("boss"), None);
}

#[test]
fn fingerprint_matches_openssl() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../certs-test/agencies/department.crt"
    );
    let pem = std::fs::read(path).expect("certs-test present");
    let fingerprint = pem_fingerprint(&pem).expect("parses");
    let output = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in", path])
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout)
        .to_lowercase()
        .replace(':', "");
    assert!(
        text.contains(&fingerprint.to_hex()),
        "{text} vs {fingerprint}"
    );
}

#[test]
fn garbage_is_refused() {
    assert_eq!(pem_fingerprint(b"hello"), Err(PkiError::NoCertificate));
    let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        pem_fingerprint(bad),
        Err(PkiError::BadCertificate(_))
    ));
}

#[test]
fn co_sign_adds_a_second_signer_that_openssl_and_we_verify() {
    let key = |identity: &str| {
        let base = certs().join(identity);
        SigningKey {
            certificate: openssl::x509::X509::from_pem(
                &std::fs::read(base.with_extension("crt")).expect("crt"),
            )
            .expect("x509"),
            chain: certificates_from_pem(&[read("ca/agency-ca.crt")])
                .expect("chain")
                .into_iter()
                .map(|c| c.0)
                .collect(),
            key: openssl::pkey::PKey::private_key_from_pem(
                &std::fs::read(base.with_extension("key")).expect("key"),
            )
            .expect("key"),
        }
    };
    let first = sign_detached(&key("signers/commune-a-chief-accountant"), CONTENT).expect("sign");
    let both = co_sign(&key("signers/commune-a-account-owner"), &first);
    let both = match both {
        Ok(both) => both,
        Err(error) => panic!("co-sign failed: {error}"),
    };
    let reports = verifier(true).verify(CONTENT, &both, "lenh-chi.xml", &no_lookup);
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(Report::passed), "{reports:#?}");
}

#[test]
fn an_expired_crl_means_try_later_not_valid() {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, x509::X509CrlBuilder};
    let ca = openssl::x509::X509::from_pem(&read("ca/agency-ca.crt")).expect("ca");
    let ca_key = PKey::private_key_from_pem(&read("ca/agency-ca.key")).expect("ca key");
    let mut builder = X509CrlBuilder::new().expect("builder");
    builder.set_issuer_name(ca.subject_name()).expect("issuer");
    builder
        .set_last_update(&Asn1Time::from_unix(1_600_000_000).expect("time"))
        .expect("last update");
    builder
        .set_next_update(&Asn1Time::from_unix(1_600_086_400).expect("time"))
        .expect("next update");
    // Authority Key Identifier: SEQUENCE { [0] the CA's subject key id }.
    let key_id = ca.subject_key_id().expect("ski").as_slice().to_vec();
    let mut aki = vec![0x30, (key_id.len() + 2) as u8, 0x80, key_id.len() as u8];
    aki.extend_from_slice(&key_id);
    let extension = openssl::x509::X509Extension::new_from_der(
        &openssl::asn1::Asn1Object::from_str("2.5.29.35").expect("oid"),
        false,
        &openssl::asn1::Asn1OctetString::new_from_bytes(&aki).expect("octets"),
    )
    .expect("aki");
    builder.append_extension(extension).expect("append");
    // CRL Number: INTEGER 1.
    let number = openssl::x509::X509Extension::new_from_der(
        &openssl::asn1::Asn1Object::from_str("2.5.29.20").expect("oid"),
        false,
        &openssl::asn1::Asn1OctetString::new_from_bytes(&[0x02, 0x01, 0x01]).expect("octets"),
    )
    .expect("crl number");
    builder.append_extension(number).expect("append");
    builder
        .sign(&ca_key, MessageDigest::sha256())
        .expect("sign");
    let expired = builder.build().expect("crl");
    let trust = TrustStore::build(
        certificates_from_pem(&[read("ca/root.crt")]).expect("root"),
        certificates_from_pem(&[read("ca/agency-ca.crt")]).expect("intermediate"),
        vec![
            crl_from_bytes(&read("ca/root.crl")).expect("root crl"),
            Crl(expired),
        ],
    )
    .expect("trust");
    let verifier = Verifier::new(trust, CryptoRules::default(), Arc::new(SystemClock));
    let report = verify_one(&verifier, CONTENT, &cades("signers/district-head", CONTENT));
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::TryLater),
        "{report:#?}"
    );
    assert!(report.message.contains("expired"), "{}", report.message);
}

#[test]
fn a_signing_time_in_the_future_is_refused() {
    use crate::clock::ManualClock;
    // Seen from a clock an hour behind the signer's, beyond the 5-minute skew.
    let signature = cades("signers/district-head", CONTENT);
    let now = SystemClock.now_millis();
    let behind = Verifier::new(
        trust(true),
        CryptoRules::default(),
        Arc::new(ManualClock::new(now - 3_600_000)),
    );
    let report = verify_one(&behind, CONTENT, &signature);
    assert_eq!(
        report.sub_indication,
        Some(SubIndication::SigConstraintsFailure),
        "{report:#?}"
    );
    assert!(
        report.message.contains("in the future"),
        "{}",
        report.message
    );
    // Within the skew it passes.
    let close = Verifier::new(
        trust(true),
        CryptoRules::default(),
        Arc::new(ManualClock::new(now - 60_000)),
    );
    assert_eq!(
        verify_one(&close, CONTENT, &signature).indication,
        Indication::TotalPassed
    );
}
