//! Arbitrary bytes as a PDF whose embedded signatures are verified against
//! the test PKI's trust: every input is either refused with an error or
//! gets a report per signature field, none a panic. Seeds: a pyHanko head
//! and seal, three signatures over an xref-stream PDF, an unsigned letter.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use lienthong::{
    clock::SystemClock,
    pdf::{self, Limits},
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
    let limits = Limits {
        max_revisions: 16,
        max_fields: 256,
        ..Limits::default()
    };
    if let Ok(reports) = pdf::verify(data, verifier(), "fuzz.pdf", &|_| None, &limits) {
        for report in reports {
            assert!(report.embedded.is_some(), "a PDF signature's report says where it is");
        }
    }
});
