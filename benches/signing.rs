//! Signing hot paths: receipts signed in Merkle batches against one
//! signature per receipt, and the Sign / CoSign rates of held keys.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong::{
    pki::{self, SigningKey},
    receipt::{batch_head, leaf_hash, levels, path_from_levels},
};

fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs-test")
}

fn key(identity: &str) -> SigningKey {
    let base = certs().join(identity);
    let mut key = pki::signing_key_from_pem(
        &std::fs::read(base.with_extension("crt")).expect("cert"),
        &std::fs::read(base.with_extension("key")).expect("key"),
        None,
    )
    .expect("key");
    key.set_chain(
        pki::certificates_from_pem(&[std::fs::read(certs().join("ca/agency-ca.crt")).expect("ca")])
            .expect("chain"),
    );
    key
}

fn receipts(c: &mut Criterion) {
    let gateway = key("gateway/signing");
    let canonical: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("lienthong-receipt-v1\nmessage_id m{i}\nfrom 000.00.12.H56").into_bytes())
        .collect();
    let mut group = c.benchmark_group("receipts");
    for batch in [1usize, 64, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("merkle_batch_{batch}"), |b| {
            b.iter(|| {
                let leaves: Vec<_> = canonical[..batch].iter().map(|c| leaf_hash(c)).collect();
                let levels = levels(&leaves);
                let root = levels.last().map(|l| l[0]).unwrap_or_default();
                let signature =
                    pki::sign_plain(&gateway, &batch_head(batch as u64, &root)).expect("sign");
                let paths: Vec<_> = (0..batch).map(|i| path_from_levels(&levels, i)).collect();
                (signature, paths)
            });
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_signature_per_receipt", |b| {
        b.iter(|| pki::sign_plain(&gateway, &canonical[0]).expect("sign"));
    });
    group.finish();
}

fn sign_and_cosign(c: &mut Criterion) {
    let accountant = key("signers/commune-a-chief-accountant");
    let owner = key("signers/commune-a-account-owner");
    let content: Vec<u8> = (0..10 * 1024).map(|i| (i % 251) as u8).collect();
    let first = pki::sign_detached(&accountant, &content).expect("sign");
    let mut group = c.benchmark_group("signing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign_cades_10KB", |b| {
        b.iter(|| pki::sign_detached(&accountant, &content).expect("sign"));
    });
    group.bench_function("cosign", |b| {
        b.iter(|| pki::co_sign(&owner, &first).expect("co-sign"));
    });
    group.finish();
}

criterion_group!(benches, receipts, sign_and_cosign);
criterion_main!(benches);
