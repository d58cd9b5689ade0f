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

/// An XML signature value over canonical `SignedInfo` bytes with SHA-256:
/// the method's URI and the value as XML-DSig writes it (RSA: the PKCS#1
/// block; ECDSA: r || s, each as wide as the curve's order).
pub fn sign_xml(
    key: &SigningKey,
    signed_info: &[u8],
) -> Result<(super::XmlSignatureMethod, Vec<u8>), PkiError> {
    let signature = sign_plain(key, signed_info)?;
    match key.key.id() {
        openssl::pkey::Id::RSA => Ok((super::XmlSignatureMethod::RsaSha256, signature)),
        openssl::pkey::Id::EC => {
            let ec = key.key.ec_key().map_err(signing_error)?;
            let width = usize::try_from(ec.group().order_bits().div_ceil(8)).unwrap_or(32);
            let parsed = openssl::ecdsa::EcdsaSig::from_der(&signature).map_err(signing_error)?;
            let mut value = Vec::with_capacity(2 * width);
            for number in [parsed.r(), parsed.s()] {
                value.extend(number.to_vec_padded(width as i32).map_err(signing_error)?);
            }
            Ok((super::XmlSignatureMethod::EcdsaSha256, value))
        }
        other => Err(PkiError::Signing(format!(
            "a {other:?} key cannot make an XML signature (RSA or EC only)"
        ))),
    }
}

/// The DER of the key's certificate and of its chain, signer first.
pub fn certificate_chain_der(key: &SigningKey) -> Result<Vec<Vec<u8>>, PkiError> {
    std::iter::once(&key.certificate)
        .chain(&key.chain)
        .map(|c| c.to_der().map_err(signing_error))
        .collect()
}

/// The XML signature method a key signs with ([`sign_xml`]).
pub fn xml_signature_method(key: &SigningKey) -> Result<super::XmlSignatureMethod, PkiError> {
    match key.key.id() {
        openssl::pkey::Id::RSA => Ok(super::XmlSignatureMethod::RsaSha256),
        openssl::pkey::Id::EC => Ok(super::XmlSignatureMethod::EcdsaSha256),
        other => Err(PkiError::Signing(format!(
            "a {other:?} key cannot make an XML signature (RSA or EC only)"
        ))),
    }
}
