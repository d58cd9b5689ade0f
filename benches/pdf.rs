//! Signatures inside PDFs: a full verification of a 1 MB PDF carrying two
//! signatures (head, then seal: byte ranges, two CMS checks with chain and
//! CRLs, the change analysis of three revisions), signing one (an
//! incremental update and one CAdES signature), and the detached CMS
//! verification of the same 1 MB, measured in the same run as the figure
//! they are compared with.

#[path = "../tests/common/pdfs.rs"]
mod pdfs;
#[path = "../tests/common/trust.rs"]
mod trust;

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong::{
    pdf::{self, Limits, SignOptions},
    pki::{Indication, SigningKey, certificates_from_pem, sign_detached, signing_key_from_pem},
};

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs-test")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(certs().join(path)).expect("certs-test file")
}

fn key(signer: &str) -> SigningKey {
    let mut key = signing_key_from_pem(
        &read(&format!("signers/{signer}.crt")),
        &read(&format!("signers/{signer}.key")),
        None,
    )
    .expect("key");
    key.set_chain(certificates_from_pem(&[read("ca/agency-ca.crt")]).expect("chain"));
    key
}

fn signed(input: &[u8], signer: &str) -> Vec<u8> {
    let options = SignOptions {
        signing_time: 1_796_200_000,
        ..SignOptions::default()
    };
    let (update, _) = pdf::sign(input, &key(signer), &options, &Limits::default()).expect("sign");
    [input, update.as_slice()].concat()
}

fn bench(c: &mut Criterion) {
    let verifier = trust::verifier(&certs());
    let base = pdfs::hand_written(1024 * 1024);
    let both = signed(&signed(&base, "department-head"), "department-organization");
    let reports =
        pdf::verify(&both, &verifier, "1MB.pdf", &|_| None, &Limits::default()).expect("verify");
    assert_eq!(reports.len(), 2);
    assert!(
        reports
            .iter()
            .all(|r| r.indication == Indication::TotalPassed),
        "{reports:#?}"
    );
    let head = key("department-head");
    let detached = sign_detached(&head, &base).expect("detached");

    let mut group = c.benchmark_group("pdf");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_1MB_two_signatures", |b| {
        b.iter(|| pdf::verify(&both, &verifier, "1MB.pdf", &|_| None, &Limits::default()));
    });
    group.bench_function("detached_cms_verify_1MB", |b| {
        b.iter(|| verifier.verify(&base, &detached, "1MB.pdf", &|_| None));
    });
    let organization = key("department-organization");
    let options = SignOptions {
        signing_time: 1_796_200_000,
        ..SignOptions::default()
    };
    group.bench_function("sign_1MB", |b| {
        b.iter(|| pdf::sign(&base, &organization, &options, &Limits::default()));
    });
    group.bench_function("detached_cms_sign_1MB", |b| {
        b.iter(|| sign_detached(&organization, &base));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
