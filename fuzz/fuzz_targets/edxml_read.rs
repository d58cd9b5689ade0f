//! Arbitrary bytes as an edXML package: read (attachments decoded into a
//! bounded sink), its XML signature verified against the test PKI, its
//! header mapped to an envelope or a status: every input is refused with
//! an error or handled, none a panic. Seeds: packages signed by xmlsec1
//! (both canonicalizations), by libxml2 in the edXML namespace, and a
//! status message.
#![no_main]

#[path = "../../tests/common/trust.rs"]
mod trust;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong::{
    edxml::{self, AttachmentSink, EdxmlError, Kind, Limits},
    pki::Verifier,
};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        trust::verifier(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-test"))
    })
}

/// Counts decoded bytes, as the gateway's staging files would hold them.
struct Count(u64);

impl AttachmentSink for Count {
    fn write(&mut self, _index: usize, bytes: &[u8]) -> Result<(), EdxmlError> {
        self.0 += bytes.len() as u64;
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_attachment_bytes: 1 << 20,
        max_header_bytes: 64 * 1024,
        max_elements: 2000,
        ..Limits::default()
    };
    let mut sink = Count(0);
    let Ok(package) = edxml::read(data, &limits, &mut sink) else {
        return;
    };
    assert!(sink.0 <= limits.max_attachment_bytes, "the bound on decoded bytes holds");
    let sizes: u64 = package.attachments.iter().map(|a| a.size).sum();
    assert_eq!(sizes, sink.0, "every decoded byte is an attachment's");
    if let Some(report) = edxml::verify_signature(data, &package, verifier(), &|_| None, false) {
        assert_eq!(report.attachment, edxml::SIGNATURE_LABEL);
    }
    match package.kind {
        Kind::Document => {
            let _ = edxml::map::envelope(&package, &|t| format!("edxml-{t}"));
        }
        Kind::Status => {
            let _ = edxml::map::status(&package);
        }
    }
});
