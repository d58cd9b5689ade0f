//! The OpenSSL functions the `openssl` crate does not bind, and safe
//! wrappers over them. The only `unsafe` code in Lienthong.
//!
//! Every pointer handed to OpenSSL here comes from a live owned `openssl`
//! crate value borrowed for the duration of the call; every pointer returned
//! is either borrowed from such a value (and not kept past it) or owned and
//! wrapped at once so that it is freed exactly once.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_ulong, c_void};

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::{
    asn1::Asn1TimeRef,
    cms::CmsContentInfoRef,
    hash::MessageDigest,
    nid::Nid,
    stack::Stack,
    x509::{X509, X509Crl, X509StoreContextRef, store::X509StoreBuilderRef},
};
use openssl_sys as sys;

/// OpenSSL's opaque `CMS_SignerInfo`.
#[repr(C)]
pub struct CmsSignerInfo {
    _private: [u8; 0],
}

const V_ASN1_OCTET_STRING: c_int = 4;
const V_ASN1_UTCTIME: c_int = 23;
const V_ASN1_GENERALIZEDTIME: c_int = 24;
/// `lastpos` asking for exactly one attribute with exactly one value.
const SINGLE_VALUED: c_int = -3;

unsafe extern "C" {
    fn CMS_get0_SignerInfos(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn CMS_set1_signers_certs(
        cms: *mut sys::CMS_ContentInfo,
        certs: *mut sys::stack_st_X509,
        flags: c_uint,
    ) -> c_int;
    fn CMS_get1_certs(cms: *mut sys::CMS_ContentInfo) -> *mut sys::stack_st_X509;
    fn CMS_SignerInfo_get0_algs(
        si: *mut CmsSignerInfo,
        pk: *mut *mut sys::EVP_PKEY,
        signer: *mut *mut sys::X509,
        pdig: *mut *mut sys::X509_ALGOR,
        psig: *mut *mut sys::X509_ALGOR,
    );
    fn CMS_SignerInfo_verify(si: *mut CmsSignerInfo) -> c_int;
    fn CMS_signed_get_attr_by_NID(si: *const CmsSignerInfo, nid: c_int, lastpos: c_int) -> c_int;
    fn CMS_signed_get0_data_by_OBJ(
        si: *const CmsSignerInfo,
        oid: *const sys::ASN1_OBJECT,
        lastpos: c_int,
        kind: c_int,
    ) -> *mut c_void;
    fn X509_STORE_add_crl(store: *mut sys::X509_STORE, crl: *mut sys::X509_CRL) -> c_int;
    fn X509_STORE_CTX_set_time(ctx: *mut sys::X509_STORE_CTX, flags: c_ulong, t: i64);
    fn X509_STORE_CTX_set_flags(ctx: *mut sys::X509_STORE_CTX, flags: c_ulong);
    fn CMS_add1_signer(
        cms: *mut sys::CMS_ContentInfo,
        signer: *mut sys::X509,
        pkey: *mut sys::EVP_PKEY,
        md: *const sys::EVP_MD,
        flags: c_uint,
    ) -> *mut CmsSignerInfo;
    fn CMS_add1_cert(cms: *mut sys::CMS_ContentInfo, cert: *mut sys::X509) -> c_int;
    fn CMS_dataInit(cms: *mut sys::CMS_ContentInfo, icont: *mut sys::BIO) -> *mut sys::BIO;
    fn CMS_dataFinal(cms: *mut sys::CMS_ContentInfo, bio: *mut sys::BIO) -> c_int;
}

/// CMS_PARTIAL: CMS_sign returns a structure still open for content.
pub const CMS_PARTIAL: c_uint = 0x4000;

/// A detached signature being computed over streamed content: the content
/// goes through OpenSSL's digest BIO chain and is not kept.
pub struct StreamingSignature {
    cms: openssl::cms::CmsContentInfo,
    bio: *mut sys::BIO,
}

// SAFETY: the CMS and its BIO chain are owned exclusively by this value and
// used by one thread at a time (&mut self); OpenSSL keeps no thread affinity.
unsafe impl Send for StreamingSignature {}

impl StreamingSignature {
    /// Opens the digest chain of a partial (unfinished) detached SignedData.
    pub fn begin(cms: openssl::cms::CmsContentInfo) -> Result<Self, openssl::error::ErrorStack> {
        // SAFETY: cms is a live partial SignedData; with no content BIO,
        // CMS_dataInit builds digest BIOs over a null sink, returned owned.
        let bio = unsafe { CMS_dataInit(cms.as_ptr(), std::ptr::null_mut()) };
        if bio.is_null() {
            return Err(openssl::error::ErrorStack::get());
        }
        Ok(Self { cms, bio })
    }

    /// Feeds content.
    pub fn update(&mut self, mut chunk: &[u8]) -> Result<(), openssl::error::ErrorStack> {
        while !chunk.is_empty() {
            let length = c_int::try_from(chunk.len().min(1 << 30)).unwrap_or(c_int::MAX);
            // SAFETY: bio is the live chain from CMS_dataInit; the buffer
            // is valid for `length` bytes.
            let written = unsafe { sys::BIO_write(self.bio, chunk.as_ptr().cast(), length) };
            if written <= 0 {
                return Err(openssl::error::ErrorStack::get());
            }
            chunk = &chunk[usize::try_from(written).unwrap_or(chunk.len())..];
        }
        Ok(())
    }

    /// Computes the signatures and returns the SignedData, DER.
    pub fn finish(self) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        // SAFETY: the chain belongs to this CMS; CMS_dataFinal reads the
        // digests from it. Drop frees the chain afterwards.
        let ok = unsafe { CMS_dataFinal(self.cms.as_ptr(), self.bio) };
        if ok != 1 {
            return Err(openssl::error::ErrorStack::get());
        }
        self.cms.to_der()
    }
}

impl Drop for StreamingSignature {
    fn drop(&mut self) {
        // SAFETY: the chain came from CMS_dataInit and is freed once, here.
        unsafe { sys::BIO_free_all(self.bio) };
    }
}

/// CMS_CADES: add the ESS signing-certificate-v2 attribute (OpenSSL 3.0+).
pub const CMS_CADES: c_uint = 0x10_0000;

/// Adds a signer to an existing SignedData, reusing the content digest of a
/// signer already there (detached co-signature), and embeds `chain`.
pub fn add_signer_reusing_digest(
    cms: &mut openssl::cms::CmsContentInfo,
    certificate: &X509,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    chain: &[X509],
) -> Result<(), openssl::error::ErrorStack> {
    let flags = sys::CMS_REUSE_DIGEST | sys::CMS_BINARY | CMS_CADES;
    // SAFETY: cms, the certificate and the key are live for the call;
    // CMS_add1_signer takes its own references and returns a signer info
    // owned by cms (we only test it for null). EVP_sha256 is static.
    let signer = unsafe {
        CMS_add1_signer(
            cms.as_ptr(),
            certificate.as_ptr(),
            key.as_ptr(),
            sys::EVP_sha256(),
            flags,
        )
    };
    if signer.is_null() {
        return Err(openssl::error::ErrorStack::get());
    }
    // OpenSSL refuses to add a certificate the CMS already carries, so add
    // only the missing ones.
    // SAFETY: CMS_get1_certs returns a new stack (or null when there are no
    // certificates) that Stack::from_ptr owns and frees.
    let present: Vec<Vec<u8>> = unsafe {
        let embedded = CMS_get1_certs(cms.as_ptr());
        if embedded.is_null() {
            Vec::new()
        } else {
            Stack::<X509>::from_ptr(embedded)
                .iter()
                .filter_map(|c| c.to_der().ok())
                .collect()
        }
    };
    for certificate in chain {
        if certificate.to_der().is_ok_and(|der| present.contains(&der)) {
            continue;
        }
        // SAFETY: CMS_add1_cert takes its own reference to the certificate.
        let ok = unsafe { CMS_add1_cert(cms.as_ptr(), certificate.as_ptr()) };
        if ok != 1 {
            return Err(openssl::error::ErrorStack::get());
        }
    }
    Ok(())
}

/// Adds a CRL to a store being built.
pub fn store_add_crl(
    builder: &mut X509StoreBuilderRef,
    crl: &X509Crl,
) -> Result<(), openssl::error::ErrorStack> {
    // SAFETY: both pointers come from live values borrowed for the call;
    // X509_STORE_add_crl takes its own reference to the CRL.
    let ok = unsafe { X509_STORE_add_crl(builder.as_ptr(), crl.as_ptr()) };
    if ok == 1 {
        Ok(())
    } else {
        Err(openssl::error::ErrorStack::get())
    }
}

/// Sets the verification time and flags of a store context before `verify_cert`.
pub fn context_set_time_and_flags(
    context: &mut X509StoreContextRef,
    unix_seconds: i64,
    flags: c_ulong,
) {
    // SAFETY: the context is live and initialized (called inside
    // X509StoreContext::init's closure). time_t is a 64-bit signed integer
    // on every target we build for (64-bit Linux).
    unsafe {
        X509_STORE_CTX_set_time(context.as_ptr(), 0, unix_seconds);
        X509_STORE_CTX_set_flags(context.as_ptr(), flags);
    }
}

/// Matches signer infos to certificates from the CMS and `extra`; returns
/// the certificates embedded in the CMS.
pub fn attach_signer_certs(
    cms: &CmsContentInfoRef,
    extra: &Stack<X509>,
) -> Result<Stack<X509>, openssl::error::ErrorStack> {
    // SAFETY: CMS_set1_signers_certs takes references to the certificates it
    // matches (the stack itself stays ours). CMS_get1_certs returns a new
    // stack with new references, which Stack::from_ptr owns and frees; a null
    // return means the CMS embeds no certificates.
    let embedded = unsafe {
        CMS_set1_signers_certs(cms.as_ptr(), extra.as_ptr(), 0);
        CMS_get1_certs(cms.as_ptr())
    };
    // A signer without a matching certificate is reported per signer.
    let _ = openssl::error::ErrorStack::get();
    if embedded.is_null() {
        Stack::new()
    } else {
        // SAFETY: non-null, owned by us from here on.
        Ok(unsafe { Stack::from_ptr(embedded) })
    }
}

/// The signer infos of a SignedData, borrowed from `cms`.
pub fn signer_infos(cms: &CmsContentInfoRef) -> Vec<SignerInfo<'_>> {
    // SAFETY: the stack and its elements belong to `cms`; the returned
    // SignerInfo values borrow `cms` so they cannot outlive it.
    unsafe {
        let stack = CMS_get0_SignerInfos(cms.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        let count = sys::OPENSSL_sk_num(stack).max(0);
        (0..count)
            .map(|index| SignerInfo {
                raw: sys::OPENSSL_sk_value(stack, index).cast::<CmsSignerInfo>(),
                _cms: std::marker::PhantomData,
            })
            .filter(|info| !info.raw.is_null())
            .collect()
    }
}

/// One SignerInfo, borrowed from its CMS.
pub struct SignerInfo<'a> {
    raw: *mut CmsSignerInfo,
    _cms: std::marker::PhantomData<&'a CmsContentInfoRef>,
}

impl SignerInfo<'_> {
    /// The signer's certificate, once matched by [`attach_signer_certs`].
    pub fn certificate(&self) -> Option<X509> {
        let mut signer: *mut sys::X509 = std::ptr::null_mut();
        // SAFETY: raw is a live signer info; null out-pointers are allowed for
        // the values we do not want. The certificate is borrowed, so we take
        // our own reference before wrapping it.
        unsafe {
            CMS_SignerInfo_get0_algs(
                self.raw,
                std::ptr::null_mut(),
                &mut signer,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            if signer.is_null() || sys::X509_up_ref(signer) != 1 {
                return None;
            }
            Some(X509::from_ptr(signer))
        }
    }

    /// The digest algorithm's NID.
    pub fn digest_nid(&self) -> Nid {
        let mut digest: *mut sys::X509_ALGOR = std::ptr::null_mut();
        // SAFETY: as above; the algorithm and its object are borrowed from
        // the signer info and read before this call returns.
        unsafe {
            CMS_SignerInfo_get0_algs(
                self.raw,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut digest,
                std::ptr::null_mut(),
            );
            if digest.is_null() {
                return Nid::UNDEF;
            }
            let mut object: *const sys::ASN1_OBJECT = std::ptr::null();
            sys::X509_ALGOR_get0(
                &mut object,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                digest,
            );
            if object.is_null() {
                return Nid::UNDEF;
            }
            Nid::from_raw(sys::OBJ_obj2nid(object))
        }
    }

    /// The digest algorithm, if OpenSSL knows it.
    pub fn digest(&self) -> Option<MessageDigest> {
        MessageDigest::from_nid(self.digest_nid())
    }

    /// True if a signed attribute with this NID is present.
    pub fn has_signed_attribute(&self, nid: Nid) -> bool {
        // SAFETY: raw is a live signer info.
        unsafe { CMS_signed_get_attr_by_NID(self.raw, nid.as_raw(), -1) >= 0 }
    }

    fn signed_value(&self, nid: Nid, kind: c_int) -> *mut c_void {
        // SAFETY: OBJ_nid2obj returns a static object for built-in NIDs; the
        // returned value is borrowed from the signer info.
        unsafe {
            let object = sys::OBJ_nid2obj(nid.as_raw());
            if object.is_null() {
                return std::ptr::null_mut();
            }
            CMS_signed_get0_data_by_OBJ(self.raw, object, SINGLE_VALUED, kind)
        }
    }

    /// The single messageDigest signed attribute.
    pub fn message_digest(&self) -> Option<Vec<u8>> {
        let value = self.signed_value(Nid::PKCS9_MESSAGEDIGEST, V_ASN1_OCTET_STRING);
        if value.is_null() {
            return None;
        }
        // SAFETY: value is a live ASN1_OCTET_STRING of the signer info; its
        // bytes are copied out before we return.
        unsafe {
            let string = value.cast::<sys::ASN1_STRING>();
            let length = usize::try_from(sys::ASN1_STRING_length(string)).ok()?;
            let data = sys::ASN1_STRING_get0_data(string);
            if data.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(data, length).to_vec())
        }
    }

    /// The single signingTime signed attribute, as Unix seconds.
    pub fn signing_time(&self) -> Option<i64> {
        let value = [V_ASN1_UTCTIME, V_ASN1_GENERALIZEDTIME]
            .into_iter()
            .map(|kind| self.signed_value(Nid::PKCS9_SIGNINGTIME, kind))
            .find(|value| !value.is_null())?;
        // SAFETY: UTCTime and GeneralizedTime are ASN1_TIME; the value is
        // borrowed from the signer info and only read here.
        let time = unsafe { Asn1TimeRef::from_ptr(value.cast::<sys::ASN1_TIME>()) };
        super::unix_seconds(time)
    }

    /// Verifies the signature value over the signed attributes.
    pub fn verify_signature(&self) -> bool {
        // SAFETY: raw is a live signer info whose certificate was attached.
        let ok = unsafe { CMS_SignerInfo_verify(self.raw) };
        // Leave no stale error on the thread's queue for the next caller.
        let _ = openssl::error::ErrorStack::get();
        ok == 1
    }
}
