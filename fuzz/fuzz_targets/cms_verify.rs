//! Arbitrary DER as a detached CMS signature over arbitrary content, against
//! the test PKI's trust: every input gets a report, none a panic.
#![no_main]

#[path = "../../tests/common/trust.rs"]
mod trust;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong::pki::Verifier;

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        trust::verifier(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-test"))
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
