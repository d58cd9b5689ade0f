//! Signature verification: a full check (CMS, digest, signature, algorithms,
//! key usage, chain to the root through the agency CA, CRLs of both CAs) of a
//! detached RSA-2048 signature over 10 KB and 1 MB. Also prints the OpenSSL
//! version it runs on, so system and vendored builds can be compared.

#[path = "../tests/common/trust.rs"]
mod trust;

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong::pki::Indication;
use openssl::{
    cms::{CMSOptions, CmsContentInfo},
    pkey::PKey,
    stack::Stack,
    x509::X509,
};

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs-test")
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(certs().join(path)).expect("certs-test file")
}

fn sign(content: &[u8]) -> Vec<u8> {
    let cert = X509::from_pem(&read("signers/district-head.crt")).expect("cert");
    let key = PKey::private_key_from_pem(&read("signers/district-head.key")).expect("key");
    let mut chain = Stack::new().expect("stack");
    chain
        .push(X509::from_pem(&read("ca/agency-ca.crt")).expect("ca"))
        .expect("push");
    CmsContentInfo::sign(
        Some(&cert),
        Some(&key),
        Some(&chain),
        Some(content),
        CMSOptions::BINARY | CMSOptions::DETACHED,
    )
    .expect("sign")
    .to_der()
    .expect("der")
}

fn verify(c: &mut Criterion) {
    eprintln!("OpenSSL: {}", openssl::version::version());
    let verifier = trust::verifier(&certs());
    let mut group = c.benchmark_group("verify");
    for (name, size) in [("10KB", 10 * 1024), ("1MB", 1024 * 1024)] {
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let signature = sign(&content);
        let check = verifier.verify(&content, &signature, "bench", &|_| None);
        assert_eq!(check[0].indication, Indication::TotalPassed, "{check:?}");
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| verifier.verify(&content, &signature, "bench", &|_| None));
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
