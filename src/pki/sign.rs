//! Making signatures with held keys: CAdES-BES detached signatures and
//! co-signatures that add a second SignerInfo to an existing one.

use openssl::{
    cms::{CMSOptions, CmsContentInfo},
    stack::Stack,
};

use super::{PkiError, ffi, keystore::SigningKey};

fn signing_error(error: impl std::fmt::Display) -> PkiError {
    PkiError::Signing(error.to_string())
}

/// A detached CAdES-BES signature over `content`: SHA-256, signing time,
/// signing-certificate-v2, the certificate and its chain embedded.
pub fn sign_detached(key: &SigningKey, content: &[u8]) -> Result<Vec<u8>, PkiError> {
    let mut chain = Stack::new().map_err(signing_error)?;
    for certificate in &key.chain {
        chain.push(certificate.clone()).map_err(signing_error)?;
    }
    let flags =
        CMSOptions::BINARY | CMSOptions::DETACHED | CMSOptions::from_bits_retain(ffi::CMS_CADES);
    CmsContentInfo::sign(
        Some(&key.certificate),
        Some(&key.key),
        Some(&chain),
        Some(content),
        flags,
    )
    .and_then(|cms| cms.to_der())
    .map_err(signing_error)
}

/// Adds `key`'s signature to the detached SignedData `cms_der`, reusing its
/// content digest; the existing signers are kept as they are.
pub fn co_sign(key: &SigningKey, cms_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let mut cms = CmsContentInfo::from_der(cms_der)
        .map_err(|e| PkiError::Signing(format!("reading the signature: {e}")))?;
    ffi::add_signer_reusing_digest(&mut cms, &key.certificate, &key.key, &key.chain)
        .map_err(signing_error)?;
    cms.to_der().map_err(signing_error)
}
