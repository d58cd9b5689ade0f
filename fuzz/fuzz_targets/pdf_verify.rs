//! Arbitrary bytes as a PDF whose embedded signatures are verified against
//! the test PKI's trust: every input is either refused with an error or
//! gets a report per signature field, none a panic. Seeds: a pyHanko head
//! and seal, three signatures over an xref-stream PDF, an unsigned letter.
#![no_main]

#[path = "../../tests/common/trust.rs"]
mod trust;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong::{
    pdf::{self, Limits},
    pki::Verifier,
};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        trust::verifier(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-test"))
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
            assert!(
                report.embedded.is_some(),
                "a PDF signature's report says where it is"
            );
        }
    }
});
