//! Revocation published at run time takes effect on the next call, for
//! signers and for TLS clients; CRLs are ordered by number, not by expiry;
//! an agency's client certificate can be renewed without disabling it; and
//! certificates that could never be used are refused at registration.
//!
//! The CRLs and the renewed certificate are made here by the `openssl`
//! command with the test agency CA's key, as the CA itself would.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::*;
use lienthong::proto::{self, admin_client::AdminClient, exchange_client::ExchangeClient};
use tonic::{Code, transport::Channel};

fn openssl(args: &[&str], dir: &Path) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CRL of the agency CA with `number`, valid for `hours`, listing `revoked`
/// (certificate files) besides `bad/revoked.crt`.
fn agency_crl(number: u32, hours: u32, revoked: &[PathBuf]) -> Vec<u8> {
    let ca = certs().join("ca");
    crl_by(
        &ca.join("agency-ca.crt"),
        &ca.join("agency-ca.key"),
        number,
        hours,
        revoked,
    )
}

/// A CRL issued with `ca_cert` and `ca_key`.
fn crl_by(ca_cert: &Path, ca_key: &Path, number: u32, hours: u32, revoked: &[PathBuf]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[ ca ]\ndefault_ca = ca_test\n[ ca_test ]\ndir = {dir}\ndatabase = {dir}/index.txt\n\
         crlnumber = {dir}/crlnumber\ncertificate = {cert}\nprivate_key = {key}\n\
         default_md = sha256\nnew_certs_dir = {dir}\nserial = {dir}/serial\npolicy = p\n\
         [ p ]\ncommonName = optional\n",
        dir = dir.path().display(),
        cert = ca_cert.display(),
        key = ca_key.display(),
    );
    std::fs::write(dir.path().join("ca.cnf"), config).expect("cnf");
    std::fs::write(dir.path().join("index.txt"), "").expect("index");
    std::fs::write(dir.path().join("crlnumber"), format!("{number:X}\n")).expect("number");
    std::fs::write(dir.path().join("serial"), "2000\n").expect("serial");
    let mut all = vec![certs().join("bad/revoked.crt")];
    all.extend_from_slice(revoked);
    for certificate in &all {
        let path = certificate.display().to_string();
        openssl(
            &["ca", "-batch", "-config", "ca.cnf", "-revoke", &path],
            dir.path(),
        );
    }
    let hours = hours.to_string();
    openssl(
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-gencrl",
            "-crlhours",
            &hours,
            "-out",
            "new.crl",
        ],
        dir.path(),
    );
    std::fs::read(dir.path().join("new.crl")).expect("crl")
}

/// A fresh client certificate for commune B from the agency CA.
fn renewed_commune_b(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = certs().join("ca");
    let ext = dir.join("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints = critical, CA:false\nkeyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = clientAuth\n",
    )
    .expect("ext");
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "new.key",
            "-subj",
            "/C=VN/OU=000.02.31.H56/CN=UBND xa Dien Binh 2027",
            "-out",
            "new.csr",
        ],
        dir,
    );
    let ca_cert = ca.join("agency-ca.crt").display().to_string();
    let ca_key = ca.join("agency-ca.key").display().to_string();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "new.csr",
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            "77001",
            "-days",
            "400",
            "-extfile",
            "ext.cnf",
            "-out",
            "new.crt",
        ],
        dir,
    );
    (dir.join("new.crt"), dir.join("new.key"))
}

/// A refusal whose verification report says REVOKED_NO_POE.
fn assert_revoked(status: &tonic::Status) {
    use prost::Message;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let details =
        tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status details");
    let revoked = details.details.iter().any(|any| {
        any.type_url == "type.googleapis.com/lienthong.v1.VerifyResponse"
            && proto::VerifyResponse::decode(any.value.as_slice())
                .expect("decode")
                .reports
                .iter()
                .any(|r| r.sub_indication == proto::SubIndication::RevokedNoPoe as i32)
    });
    assert!(revoked, "no REVOKED_NO_POE report in {status:?}");
}

async fn receive_code(client: &mut ExchangeClient<Channel>) -> Code {
    match client
        .receive(proto::ReceiveRequest {
            max_in_flight: 1,
            drain: true,
        })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn publish(admin: &mut AdminClient<Channel>, crl: Vec<u8>) -> Result<(), tonic::Status> {
    admin
        .publish_crl(proto::PublishCrlRequest { crl })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn revocation_published_at_run_time_takes_effect_for_signers_and_tls_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin = server.admin("admin").await;
    let mut department = server.exchange("department").await;
    let mut commune_b = server.exchange("commune-b").await;
    send(
        &mut department,
        envelope("before", DEPARTMENT, &[DISTRICT], b"1"),
    )
    .await
    .expect("accepted before the revocation");
    assert_eq!(receive_code(&mut commune_b).await, Code::Ok);

    // The CA revokes the department's organization signer and commune B's
    // TLS certificate. Its new CRL is newer (number, thisUpdate) but expires
    // sooner than the one in the config: it must still win.
    let signer = certs().join("signers/department-organization.crt");
    let tls = certs().join("agencies/commune-b.crt");
    let newest = agency_crl(0x2000, 24 * 30, &[signer.clone(), tls.clone()]);
    publish(&mut admin, newest).await.expect("publish");

    let refused = send(
        &mut department,
        envelope("after", DEPARTMENT, &[DISTRICT], b"2"),
    )
    .await
    .expect_err("a revoked signer's document is refused");
    assert_revoked(&refused);
    let mut commune_b = server.exchange("commune-b").await;
    let receive = commune_b
        .receive(proto::ReceiveRequest {
            max_in_flight: 1,
            drain: true,
        })
        .await
        .expect_err("a revoked client certificate is refused");
    assert_eq!(receive.code(), Code::Unauthenticated);
    assert!(
        receive.message().contains("revoked"),
        "{}",
        receive.message()
    );
    // Other agencies are untouched.
    let mut commune_a = server.exchange("commune-a").await;
    assert_eq!(receive_code(&mut commune_a).await, Code::Ok);

    // An older CRL (lower number, longer validity, no revocations) never
    // replaces the newer one.
    let older = agency_crl(0x1001, 24 * 365 * 40, &[]);
    let stale = publish(&mut admin, older).await.expect_err("older CRL");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(stale.message().contains("older"), "{}", stale.message());
    assert_eq!(receive_code(&mut commune_b).await, Code::Unauthenticated);

    // A CRL signed by a key that is not the named CA's is refused.
    let garbage_dir = tempfile::tempdir().expect("tempdir");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/C=VN/O=Lienthong Test/CN=Lienthong Test Agency CA",
            "-days",
            "2",
            "-out",
            "c.pem",
        ],
        garbage_dir.path(),
    );
    let forged = crl_by(
        &garbage_dir.path().join("c.pem"),
        &garbage_dir.path().join("k.pem"),
        0x9000,
        24,
        &[],
    );
    let untrusted = publish(&mut admin, forged).await.expect_err("forged CRL");
    assert_eq!(untrusted.code(), Code::InvalidArgument);
    assert!(
        untrusted.message().contains("not signed by"),
        "{}",
        untrusted.message()
    );

    // Renewal: the admin binds a fresh certificate to commune B; it works at
    // once, and the revoked one can then be removed.
    let renewal = tempfile::tempdir().expect("tempdir");
    let (new_cert, new_key) = renewed_commune_b(renewal.path());
    let pem = std::fs::read_to_string(&new_cert).expect("pem");
    let agency = admin
        .add_agency_certificate(proto::AddAgencyCertificateRequest {
            code: COMMUNE_B.into(),
            certificate_pem: pem,
        })
        .await
        .expect("add certificate")
        .into_inner()
        .agency
        .expect("agency");
    assert_eq!(agency.certificate_fingerprints.len(), 2);
    assert!(!agency.disabled);
    let mut renewed = ExchangeClient::new(
        connect_with_files(server.addr, Some((&new_cert, &new_key)))
            .await
            .expect("connect"),
    );
    assert_eq!(receive_code(&mut renewed).await, Code::Ok);
    let old_fingerprint = agency.certificate_fingerprints[0].clone();
    let agency = admin
        .remove_agency_certificate(proto::RemoveAgencyCertificateRequest {
            code: COMMUNE_B.into(),
            fingerprint: old_fingerprint.clone(),
        })
        .await
        .expect("remove")
        .into_inner()
        .agency
        .expect("agency");
    assert_eq!(agency.certificate_fingerprints.len(), 1);
    assert!(!agency.certificate_fingerprints.contains(&old_fingerprint));
    let last = admin
        .remove_agency_certificate(proto::RemoveAgencyCertificateRequest {
            code: COMMUNE_B.into(),
            fingerprint: agency.certificate_fingerprints[0].clone(),
        })
        .await
        .expect_err("the last certificate stays");
    assert_eq!(last.code(), Code::FailedPrecondition);
    assert_eq!(receive_code(&mut renewed).await, Code::Ok);
    server.stop().await;

    // Across a restart the published CRL is still the one in force.
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    let refused = send(
        &mut department,
        envelope("later", DEPARTMENT, &[DISTRICT], b"3"),
    )
    .await
    .expect_err("still revoked after a restart");
    assert_revoked(&refused);
    server.stop().await;
}

#[tokio::test]
async fn unusable_certificates_are_refused_at_registration_naming_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin = server.admin("admin").await;
    for (file, why) in [
        ("bad/expired.crt", "expired on 2001-01-01"),
        ("bad/not-yet-valid.crt", "not valid before 2090-01-01"),
        (
            "bad/self-signed.crt",
            "not issued by a trusted CA (issuer: C=VN, CN=Self Signed Signer)",
        ),
    ] {
        let pem = std::fs::read_to_string(certs().join(file)).expect("pem");
        let agency = admin
            .register_agency(proto::RegisterAgencyRequest {
                code: "000.00.98.H56".into(),
                name: "Cơ quan thử".into(),
                parent: String::new(),
                certificate_pem: vec![pem.clone()],
            })
            .await
            .expect_err("refused agency certificate");
        assert_eq!(agency.code(), Code::InvalidArgument, "{file}");
        assert!(
            agency.message().contains(why),
            "{file}: {}",
            agency.message()
        );
        let signer = admin
            .add_signer(proto::AddSignerRequest {
                agency: DEPARTMENT.into(),
                role: proto::SignerRole::Officer as i32,
                certificate_pem: pem,
            })
            .await
            .expect_err("refused signer certificate");
        assert_eq!(signer.code(), Code::InvalidArgument, "{file}");
        assert!(
            signer.message().contains(why),
            "{file}: {}",
            signer.message()
        );
    }
    server.stop().await;
}
