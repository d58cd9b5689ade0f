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

/// A detached CAdES-BES signature over content that arrives in pieces.
pub struct StreamSigner(ffi::StreamingSignature);

impl StreamSigner {
    /// Feeds the next piece of content.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), PkiError> {
        self.0.update(chunk).map_err(signing_error)
    }

    /// The finished SignedData, DER.
    pub fn finish(self) -> Result<Vec<u8>, PkiError> {
        self.0.finish().map_err(signing_error)
    }
}

/// Begins a detached CAdES-BES signature over content that arrives in pieces.
pub fn begin_streaming(key: &SigningKey) -> Result<StreamSigner, PkiError> {
    let mut chain = Stack::new().map_err(signing_error)?;
    for certificate in &key.chain {
        chain.push(certificate.clone()).map_err(signing_error)?;
    }
    let flags = CMSOptions::BINARY
        | CMSOptions::DETACHED
        | CMSOptions::from_bits_retain(ffi::CMS_CADES | ffi::CMS_PARTIAL);
    let cms = CmsContentInfo::sign(
        Some(&key.certificate),
        Some(&key.key),
        Some(&chain),
        None,
        flags,
    )
    .map_err(signing_error)?;
    ffi::StreamingSignature::begin(cms)
        .map(StreamSigner)
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

/// A plain SHA-256 signature (RSASSA-PKCS1-v1_5 or ECDSA) over `data`.
pub fn sign_plain(key: &SigningKey, data: &[u8]) -> Result<Vec<u8>, PkiError> {
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key.key)
        .map_err(signing_error)?;
    signer.update(data).map_err(signing_error)?;
    signer.sign_to_vec().map_err(signing_error)
}

/// Checks a [`sign_plain`] signature with the public key of a certificate.
pub fn verify_plain(data: &[u8], signature: &[u8], certificate_pem: &[u8]) -> Result<(), PkiError> {
    let certificate = openssl::x509::X509::from_pem(certificate_pem)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let key = certificate
        .public_key()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key)
        .map_err(signing_error)?;
    verifier.update(data).map_err(signing_error)?;
    match verifier.verify(signature) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(PkiError::Signing(
            "the signature does not verify with that certificate".to_owned(),
        )),
    }
}
