//! Bytes as a receipt file: decoded, its canonical text rebuilt from its
//! fields, its inclusion proof walked to the root and the root's signature
//! checked against the test gateway's certificate. Arbitrary leaf indexes,
//! tree sizes and paths must give an error, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong::{
    proto,
    receipt::{self, CanonicalParts, ReceiptProof},
};
use prost::Message;

fn gateway_certificate() -> &'static [u8] {
    static PEM: OnceLock<Vec<u8>> = OnceLock::new();
    PEM.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../certs-test/gateway/signing.crt");
        std::fs::read(path).expect("certs-test gateway certificate")
    })
}

fn hash(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = proto::Receipt::decode(data) else {
        return;
    };
    let accepted_at = receipt
        .accepted_at
        .map(|t| t.seconds.saturating_mul(1000))
        .unwrap_or_default();
    let _ = receipt::canonical_text(&CanonicalParts {
        message_id: &receipt.message_id,
        from: &receipt.from,
        accepted_at,
        recipients: receipt
            .recipients
            .iter()
            .map(|r| (r.code.clone(), r.via.clone()))
            .collect(),
        attachments: receipt
            .attachments
            .iter()
            .map(|a| (a.name.clone(), a.sha256.clone(), a.size))
            .collect(),
        verification: "TOTAL_PASSED",
        audit_head: &receipt.audit_head,
    });
    let Some(signature) = &receipt.signature else {
        return;
    };
    let Some(path) = signature
        .inclusion_proof
        .iter()
        .map(|h| hash(h))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let Some(root) = hash(&signature.merkle_root) else {
        return;
    };
    let proof = ReceiptProof {
        leaf_index: signature.leaf_index,
        tree_size: signature.tree_size,
        path,
        root,
        signature: signature.signature.clone(),
    };
    let _ = receipt::verify(&receipt.canonical, &proof, gateway_certificate());
});
