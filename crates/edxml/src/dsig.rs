//! The enveloped XML signature of an edXML header: taking it apart and
//! checking its reference (`URI=""`: the whole package, attachments
//! included, minus the signature), and making one.

use base64::Engine as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use lienthong_pki::{XmlSignature, XmlSignatureMethod};

use crate::{
    EdxmlError,
    c14n::{self, Method, Selection},
    parse::{FoundSignature, SignatureForm},
    tree::Element,
};

const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// A signature taken apart and its reference checked; hand it to
/// [`lienthong_pki::Verifier::verify_xml`] through [`Checked::as_pki`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// The canonical `SignedInfo`.
    pub signed_info: Vec<u8>,
    /// The decoded `SignatureValue`.
    pub value: Vec<u8>,
    /// `SignatureMethod`.
    pub method: XmlSignatureMethod,
    /// The reference's digest check.
    pub reference: Result<String, String>,
    /// Whether the reference digest is SHA-1.
    pub reference_sha1: bool,
    /// `KeyInfo`'s certificates, DER.
    pub certificates: Vec<Vec<u8>>,
    /// The signature's namespace.
    pub form: SignatureForm,
    /// A sentence on the form and algorithms, for the report.
    pub description: String,
}

impl Checked {
    /// The view the verifier takes.
    pub fn as_pki(&self, allow_sha1: bool, claimed_time: Option<i64>) -> XmlSignature<'_> {
        XmlSignature {
            signed_info: &self.signed_info,
            value: &self.value,
            method: self.method,
            reference: self.reference.clone(),
            reference_sha1: self.reference_sha1,
            certificates: self.certificates.clone(),
            allow_sha1,
            form: self.description.clone(),
            claimed_time,
        }
    }
}

fn algorithm<'a>(element: Option<&'a Element>, what: &str) -> Result<&'a str, EdxmlError> {
    element
        .and_then(|e| e.attribute("Algorithm"))
        .ok_or_else(|| EdxmlError::invalid(format!("Signature/{what}"), "has no Algorithm"))
}

fn base64_text(element: &Element, what: &str) -> Result<Vec<u8>, EdxmlError> {
    let text: String = element.text.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            EdxmlError::invalid(format!("Signature/{what}"), format!("is not base64: {e}"))
        })
}

fn c14n_method(element: &Element, what: &str) -> Result<Method, EdxmlError> {
    let uri = algorithm(Some(element), what)?;
    let mut method = Method::from_uri(uri).ok_or_else(|| {
        EdxmlError::invalid(
            format!("Signature/{what}"),
            format!("the canonicalization {uri:?} is not supported (C14N 1.0 or exclusive C14N)"),
        )
    })?;
    if let Method::Exclusive {
        inclusive_prefixes, ..
    } = &mut method
        && let Some(list) = element
            .child("InclusiveNamespaces")
            .and_then(|n| n.attribute("PrefixList"))
    {
        inclusive_prefixes.extend(list.split_ascii_whitespace().map(str::to_owned));
    }
    Ok(method)
}

/// Takes the signature apart and digests what its reference covers in
/// `doc` (the document from its first `<`, as parsed).
pub fn check(doc: &[u8], found: &FoundSignature) -> Result<Checked, EdxmlError> {
    let signature = &found.element;
    let signed_info = signature
        .child("SignedInfo")
        .ok_or_else(|| EdxmlError::invalid("Signature/SignedInfo", "is required"))?;
    let signed_info_at = found
        .signed_info
        .ok_or_else(|| EdxmlError::invalid("Signature/SignedInfo", "is required"))?;
    let canonicalization = c14n_method(
        signed_info.child("CanonicalizationMethod").ok_or_else(|| {
            EdxmlError::invalid("Signature/SignedInfo/CanonicalizationMethod", "is required")
        })?,
        "SignedInfo/CanonicalizationMethod",
    )?;
    let method_uri = algorithm(
        signed_info.child("SignatureMethod"),
        "SignedInfo/SignatureMethod",
    )?;
    let method = XmlSignatureMethod::from_uri(method_uri).ok_or_else(|| {
        EdxmlError::invalid(
            "Signature/SignedInfo/SignatureMethod",
            format!("{method_uri:?} is not supported (RSA or ECDSA with SHA-256, or SHA-1)"),
        )
    })?;
    let references: Vec<&Element> = signed_info.all("Reference").collect();
    let [reference] = references.as_slice() else {
        return Err(EdxmlError::invalid(
            "Signature/SignedInfo/Reference",
            format!(
                "{} references; an edXML header signature has exactly one, URI=\"\"",
                references.len()
            ),
        ));
    };
    if reference.attribute("URI") != Some("") {
        return Err(EdxmlError::invalid(
            "Signature/SignedInfo/Reference",
            format!(
                "URI={:?}: only URI=\"\" (the whole package) is accepted",
                reference.attribute("URI").unwrap_or("(none)")
            ),
        ));
    }
    let mut enveloped = false;
    let mut transform_method = Method::Inclusive { comments: false };
    for transform in reference
        .child("Transforms")
        .into_iter()
        .flat_map(|t| t.all("Transform"))
    {
        let uri = algorithm(Some(transform), "SignedInfo/Reference/Transforms/Transform")?;
        if uri == ENVELOPED {
            enveloped = true;
        } else {
            transform_method = c14n_method(transform, "SignedInfo/Reference/Transforms/Transform")?;
        }
    }
    if !enveloped {
        return Err(EdxmlError::invalid(
            "Signature/SignedInfo/Reference/Transforms",
            "lacks the enveloped-signature transform: the signature would cover itself",
        ));
    }
    let digest_uri = algorithm(
        reference.child("DigestMethod"),
        "SignedInfo/Reference/DigestMethod",
    )?;
    let expected = base64_text(
        reference.child("DigestValue").ok_or_else(|| {
            EdxmlError::invalid("Signature/SignedInfo/Reference/DigestValue", "is required")
        })?,
        "SignedInfo/Reference/DigestValue",
    )?;
    let selection = Selection::Document {
        without: Some(found.offset),
    };
    let (actual, reference_sha1) = match digest_uri {
        SHA256 => (digest::<Sha256>(doc, selection, &transform_method)?, false),
        SHA1 => (digest::<Sha1>(doc, selection, &transform_method)?, true),
        other => {
            return Err(EdxmlError::invalid(
                "Signature/SignedInfo/Reference/DigestMethod",
                format!("{other:?} is not supported (SHA-256, or SHA-1)"),
            ));
        }
    };
    let reference_check = if actual == expected {
        Ok("the reference URI=\"\" (header and every attachment, the signature left out) matches its digest".to_owned())
    } else {
        Err("the reference URI=\"\" does not match its digest: the header or an attachment was changed after signing".to_owned())
    };
    let mut canonical = Vec::new();
    c14n::canonicalize(
        doc,
        Selection::Subtree(signed_info_at),
        &canonicalization,
        &mut canonical,
    )?;
    let value = base64_text(
        signature
            .child("SignatureValue")
            .ok_or_else(|| EdxmlError::invalid("Signature/SignatureValue", "is required"))?,
        "SignatureValue",
    )?;
    let mut certificates = Vec::new();
    for data in signature
        .child("KeyInfo")
        .into_iter()
        .flat_map(|k| k.all("X509Data"))
    {
        for certificate in data.all("X509Certificate") {
            certificates.push(base64_text(
                certificate,
                "KeyInfo/X509Data/X509Certificate",
            )?);
        }
    }
    let description = format!(
        "XML signature {} (enveloped, Reference URI=\"\"), {}",
        match found.form {
            SignatureForm::Dsig => "in the XML-DSig namespace",
            SignatureForm::EdxmlNamespace => "in the edXML default namespace",
        },
        describe(&canonicalization, &transform_method),
    );
    Ok(Checked {
        signed_info: canonical,
        value,
        method,
        reference: reference_check,
        reference_sha1,
        certificates,
        form: found.form,
        description,
    })
}

fn describe(signed_info: &Method, reference: &Method) -> String {
    let name = |m: &Method| match m {
        Method::Inclusive { .. } => "C14N 1.0",
        Method::Exclusive { .. } => "exclusive C14N",
    };
    format!(
        "SignedInfo by {}, the reference by {}",
        name(signed_info),
        name(reference)
    )
}

/// A hasher as an `io::Write`.
struct HashWriter<D: Digest>(D);

impl<D: Digest> std::io::Write for HashWriter<D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Buffers small writes before they reach the hasher.
fn digest<D: Digest>(
    doc: &[u8],
    selection: Selection,
    method: &Method,
) -> Result<Vec<u8>, EdxmlError> {
    let mut hasher = std::io::BufWriter::with_capacity(64 * 1024, HashWriter(D::new()));
    c14n::canonicalize(doc, selection, method, &mut hasher)?;
    let hasher = hasher
        .into_inner()
        .map_err(|e| EdxmlError::Internal(e.to_string()))?;
    Ok(hasher.0.finalize().to_vec())
}

/// Turns canonical SignedInfo bytes into a signature value.
pub type SignFn<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, EdxmlError> + 'a;

/// Where and what to insert to sign a package: the `ds:Signature` element,
/// to go at byte `at` (just before `</edXMLHeader>`).
pub struct Insertion {
    /// Byte offset in the document (after any junk).
    pub at: usize,
    /// The element's text.
    pub element: String,
}

impl Insertion {
    /// The signed package: `doc` with the element at its place.
    pub fn apply(&self, doc: &[u8]) -> Vec<u8> {
        let at = self.at.min(doc.len());
        let mut signed = Vec::with_capacity(doc.len() + self.element.len());
        signed.extend_from_slice(&doc[..at]);
        signed.extend_from_slice(self.element.as_bytes());
        signed.extend_from_slice(&doc[at..]);
        signed
    }
}

/// Signs `doc` (an unsigned edXML package, from its first `<`; `header_end`
/// is the offset of its `</…edXMLHeader>`): exclusive C14N, SHA-256, an
/// enveloped `ds:Signature` with `Reference URI=""` and the certificates.
/// `sign` turns the canonical SignedInfo into the value of `method`.
pub fn sign(
    doc: &[u8],
    header_end: usize,
    certificates: &[Vec<u8>],
    method: XmlSignatureMethod,
    sign: &mut SignFn<'_>,
) -> Result<Insertion, EdxmlError> {
    let exclusive = Method::Exclusive {
        comments: false,
        inclusive_prefixes: Vec::new(),
    };
    let digest = digest::<Sha256>(doc, Selection::Document { without: None }, &exclusive)?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // Written in canonical form (exclusive C14N of SignedInfo as the apex:
    // the ds prefix declared on it, elements opened and closed), so these
    // bytes are what a verifier canonicalizes them to.
    let signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"{}\"></ds:SignatureMethod><ds:Reference URI=\"\"><ds:Transforms><ds:Transform Algorithm=\"{ENVELOPED}\"></ds:Transform><ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"{SHA256}\"></ds:DigestMethod><ds:DigestValue>{}</ds:DigestValue></ds:Reference></ds:SignedInfo>",
        method.uri(),
        b64(&digest)
    );
    let value = sign(signed_info.as_bytes())?;
    let mut element =
        String::from("<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">");
    element.push_str(&signed_info);
    element.push_str("<ds:SignatureValue>");
    element.push_str(&b64(&value));
    element.push_str("</ds:SignatureValue><ds:KeyInfo><ds:X509Data>");
    for certificate in certificates {
        element.push_str("<ds:X509Certificate>");
        element.push_str(&b64(certificate));
        element.push_str("</ds:X509Certificate>");
    }
    element.push_str("</ds:X509Data></ds:KeyInfo></ds:Signature>");
    Ok(Insertion {
        at: header_end,
        element,
    })
}
