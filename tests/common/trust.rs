//! The test PKI's trust (certs-test): the root as anchor, the agency CA as
//! intermediate, the CRLs of both. Shared by the benches and the fuzz
//! targets (through `#[path]`), which verify in process.

use std::{path::Path, sync::Arc};

use lienthong::{
    clock::SystemClock,
    pki::{CryptoRules, TrustStore, Verifier, certificates_from_pem, crl_from_bytes},
};

/// A verifier trusting the test PKI found in `certs` (a certs-test folder).
pub fn verifier(certs: &Path) -> Verifier {
    let read = |name: &str| std::fs::read(certs.join(name)).expect("certs-test file");
    let trust = TrustStore::build(
        certificates_from_pem(&[read("ca/root.crt")]).expect("root"),
        certificates_from_pem(&[read("ca/agency-ca.crt")]).expect("intermediate"),
        vec![
            crl_from_bytes(&read("ca/agency-ca.crl")).expect("agency crl"),
            crl_from_bytes(&read("ca/root.crl")).expect("root crl"),
        ],
    )
    .expect("trust");
    Verifier::new(trust, CryptoRules::default(), Arc::new(SystemClock))
}
