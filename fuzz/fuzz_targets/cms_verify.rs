//! Arbitrary DER as a detached CMS signature over arbitrary content, against
//! the test PKI's trust: every input gets a report, none a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use lienthong::{
    clock::SystemClock,
    pki::{CryptoRules, TrustStore, Verifier, certificates_from_pem, crl_from_bytes},
};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let certs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-test");
        let read = |name: &str| std::fs::read(certs.join(name)).expect("certs-test file");
        let trust = TrustStore::build(
            certificates_from_pem(&[read("ca/root.crt")]).expect("root"),
            certificates_from_pem(&[read("ca/agency-ca.crt")]).expect("intermediate"),
            vec![
                crl_from_bytes(&read("ca/root.crl")).expect("root crl"),
                crl_from_bytes(&read("ca/agency-ca.crl")).expect("agency crl"),
            ],
        )
        .expect("trust");
        Verifier::new(trust, CryptoRules::default(), Arc::new(SystemClock))
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into content and signature.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (content, cms_der) = rest.split_at(at);
    let reports = verifier().verify(content, cms_der, "fuzz", &|_| None);
    assert!(!reports.is_empty(), "every signature gets a report");
});
