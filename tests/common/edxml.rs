//! edXML packages made in the tests (QCVN 102:2016 as document systems
//! write it), the oracles that sign and verify them (`xmlsec1`, signxml,
//! libxml2's C14N through lxml), and a reader of what the gateway wrote.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use super::certs;

pub const NS: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";

/// Where the signature template goes, and in which form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// None: an unsigned package.
    None,
    /// `Signature` in the XML-DSig namespace, for `xmlsec1 --sign`.
    Dsig { exclusive: bool, sha1: bool },
    /// `<ds:Signature Id="placeholder"/>`, for signxml.
    Placeholder,
    /// `Signature` in the edXML default namespace (the VPCP sample's form),
    /// for the lxml signer.
    EdxmlNamespace { sha1: bool },
}

/// An attachment: name, media type, bytes.
pub type File = (String, String, Vec<u8>);

/// A document package.
#[derive(Debug, Clone)]
pub struct Doc {
    pub from: String,
    pub to: Vec<String>,
    pub document_id: String,
    pub subject: String,
    pub priority: u8,
    /// BussinessDocType 0-3.
    pub business: u8,
    /// For 1-3: the earlier document's DocumentId.
    pub earlier: Option<String>,
    /// Every element with the `edXML:` prefix, or in the default namespace.
    pub prefixed: bool,
    pub attachments: Vec<File>,
    pub template: Template,
    /// Written before the XML declaration.
    pub junk: String,
}

impl Doc {
    /// A công văn from `from` to `to`, fully described, one text attachment.
    pub fn new(from: &str, to: &[&str], number: u32) -> Self {
        Self {
            from: from.to_owned(),
            to: to.iter().map(|t| (*t).to_owned()).collect(),
            document_id: format!("{from},2026/11/30,{number}/KH-STC"),
            subject: format!("Kế hoạch triển khai số {number} & \"chuyển đổi số\" <2027>"),
            priority: 1,
            business: 0,
            earlier: None,
            prefixed: true,
            attachments: vec![(
                "ke-hoach.txt".to_owned(),
                "text/plain".to_owned(),
                format!("Nội dung kế hoạch {number}\r\n").into_bytes(),
            )],
            template: Template::Dsig {
                exclusive: false,
                sha1: false,
            },
            junk: String::new(),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes elements with or without the prefix.
struct W {
    out: String,
    prefix: &'static str,
}

impl W {
    fn leaf(&mut self, name: &str, text: &str) {
        let p = self.prefix;
        self.out
            .push_str(&format!("<{p}{name}>{}</{p}{name}>", escape(text)));
    }
    fn open(&mut self, name: &str) {
        let p = self.prefix;
        self.out.push_str(&format!("<{p}{name}>"));
    }
    fn close(&mut self, name: &str) {
        let p = self.prefix;
        self.out.push_str(&format!("</{p}{name}>\n"));
    }
    fn organization(&mut self, name: &str, code: &str) {
        self.open(name);
        self.leaf("OrganId", code);
        self.leaf("OrganizationInCharge", "UBND tỉnh Khánh Hòa");
        self.leaf("OrganName", &format!("Cơ quan {code}"));
        self.leaf("OrganAdd", "01 Trần Phú, Nha Trang");
        self.leaf("Email", "vanthu@example.gov.vn");
        self.leaf("Telephone", "0258 3822 000");
        self.leaf("Fax", "0258 3822 001");
        self.leaf("Website", "https://example.gov.vn");
        self.close(name);
    }
}

fn template(form: Template) -> String {
    let c14n = |exclusive: bool| {
        if exclusive {
            "http://www.w3.org/2001/10/xml-exc-c14n#"
        } else {
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
        }
    };
    let sha1 = matches!(
        form,
        Template::Dsig { sha1: true, .. } | Template::EdxmlNamespace { sha1: true }
    );
    let (method, digest) = if sha1 {
        (
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            "http://www.w3.org/2000/09/xmldsig#sha1",
        )
    } else {
        (
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmlenc#sha256",
        )
    };
    let body = |ns: &str, exclusive: bool| {
        format!(
            "<Signature xmlns=\"{ns}\"><SignedInfo><CanonicalizationMethod Algorithm=\"{c}\"/><SignatureMethod Algorithm=\"{method}\"/><Reference URI=\"\"><Transforms><Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><Transform Algorithm=\"{c}\"/></Transforms><DigestMethod Algorithm=\"{digest}\"/><DigestValue></DigestValue></Reference></SignedInfo><SignatureValue></SignatureValue><KeyInfo><X509Data><X509Certificate></X509Certificate></X509Data></KeyInfo></Signature>",
            c = c14n(exclusive)
        )
    };
    match form {
        Template::None => String::new(),
        Template::Dsig { exclusive, .. } => body("http://www.w3.org/2000/09/xmldsig#", exclusive)
            .replace("<X509Certificate></X509Certificate>", ""),
        Template::Placeholder => {
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" Id=\"placeholder\"></ds:Signature>".to_owned()
        }
        Template::EdxmlNamespace { .. } => body(NS, false),
    }
}

/// The package's text (its attachments base64 inside).
pub fn package(doc: &Doc) -> Vec<u8> {
    let mut w = W {
        out: String::new(),
        prefix: if doc.prefixed { "edXML:" } else { "" },
    };
    let root = if doc.prefixed {
        format!("<edXML:edXMLEnvelope xmlns:edXML=\"{NS}\">\n")
    } else {
        format!("<edXMLEnvelope xmlns=\"{NS}\">\n")
    };
    w.out.push_str(&doc.junk);
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.out.push_str(&root);
    w.open("edXMLHeader");
    w.open("MessageHeader");
    w.organization("From", &doc.from);
    for to in &doc.to {
        w.organization("To", to);
    }
    w.leaf("DocumentId", &doc.document_id);
    w.open("Code");
    let (number, notation) = doc
        .document_id
        .rsplit(',')
        .next()
        .and_then(|c| c.split_once('/'))
        .unwrap_or(("1", "KH"));
    w.leaf("CodeNumber", number);
    w.leaf("CodeNotation", notation);
    w.close("Code");
    w.open("PromulgationInfo");
    w.leaf("Place", "Khánh Hòa");
    w.leaf("PromulgationDate", "2026/11/30");
    w.close("PromulgationInfo");
    w.open("DocumentType");
    w.leaf("Type", "1");
    w.leaf("TypeDetail", "0");
    w.leaf("TypeName", "Kế hoạch");
    w.close("DocumentType");
    w.leaf("Subject", &doc.subject);
    w.leaf("Content", "Triển khai trong quý I.");
    w.open("SignerInfo");
    w.leaf("Competence", "KT. GIÁM ĐỐC");
    w.leaf("Position", "Phó Giám đốc");
    w.leaf("FullName", "Nguyễn Văn An");
    w.close("SignerInfo");
    w.leaf("DueDate", "2026/12/31");
    w.open("ToPlaces");
    w.leaf("Place", "Như trên");
    w.leaf("Place", "Lưu: VT");
    w.close("ToPlaces");
    w.open("OtherInfo");
    w.leaf("Priority", &doc.priority.to_string());
    w.leaf("SphereOfPromulgation", "Toàn tỉnh");
    w.leaf("TyperNotation", "NVA");
    w.leaf("PromulgationAmount", "10");
    w.leaf("PageAmount", "3");
    w.leaf("Direction", "0");
    w.open("Appendixes");
    w.leaf("Appendix", "Phụ lục I");
    w.leaf("Appendix", "Phụ lục II");
    w.close("Appendixes");
    w.close("OtherInfo");
    w.open("ResponseFor");
    w.leaf("OrganId", "000.00.00.G22");
    w.leaf("Code", "7816/VPCP-TTĐT");
    w.leaf("PromulgationDate", "2026/11/01");
    w.leaf("DocumentId", "000.00.00.G22,2026/11/01,7816/VPCP-TTĐT");
    w.close("ResponseFor");
    w.leaf("SteeringType", "1");
    w.close("MessageHeader");
    w.open("TraceHeaderList");
    w.open("TraceHeader");
    w.leaf("OrganId", &doc.from);
    w.leaf("Timestamp", "2026/11/30 08:15:00");
    w.close("TraceHeader");
    w.open("Bussiness");
    w.leaf("BussinessDocType", &doc.business.to_string());
    w.leaf(
        "BussinessDocReason",
        if doc.business == 0 { "" } else { "Sai sót" },
    );
    if let Some(earlier) = &doc.earlier {
        w.leaf("DocumentId", earlier);
    }
    w.open("BussinessDocumentInfo");
    w.leaf("DocumentInfo", "1");
    w.leaf("DocumentReceiver", "1");
    w.open("ReceiverList");
    w.open("Receiver");
    w.leaf("ReceiverType", "1");
    w.leaf("OrganId", doc.to.first().map_or("", String::as_str));
    w.close("Receiver");
    w.close("ReceiverList");
    w.close("BussinessDocumentInfo");
    w.open("StaffInfo");
    w.leaf("Department", "Văn phòng");
    w.leaf("Staff", "Trần Thị Bình");
    w.leaf("Mobile", "0905000000");
    w.leaf("Email", "binh@example.gov.vn");
    w.close("StaffInfo");
    w.leaf("Paper", "0");
    w.open("ReplacementInfoList");
    w.open("ReplacementInfo");
    w.leaf("DocumentId", "000.00.12.H56,2026/01/02,1/KH-STC");
    w.open("OrganIdList");
    w.leaf("OrganId", doc.to.first().map_or("", String::as_str));
    w.close("OrganIdList");
    w.close("ReplacementInfo");
    w.close("ReplacementInfoList");
    w.close("Bussiness");
    w.close("TraceHeaderList");
    // The signature goes last in the header, with nothing after it.
    w.out.push_str(&template(doc.template));
    w.close("edXMLHeader");
    w.open("edXMLBody");
    w.out
        .push_str(&format!("<{p}edXMLManifest version=\"1.0\">", p = w.prefix));
    for (index, (name, media_type, _)) in doc.attachments.iter().enumerate() {
        w.open("Reference");
        w.leaf("ContentId", &format!("cid:{}", index + 1));
        w.leaf("ContentType", media_type);
        w.leaf("Description", &format!("Tệp {}", index + 1));
        w.leaf("AttachmentName", name);
        w.close("Reference");
    }
    w.close("edXMLManifest");
    w.close("edXMLBody");
    let mut bytes = w.out.into_bytes();
    let mut w = W {
        out: String::new(),
        prefix: if doc.prefixed { "edXML:" } else { "" },
    };
    w.open("AttachmentEncoded");
    for (index, (name, media_type, content)) in doc.attachments.iter().enumerate() {
        w.open("Attachment");
        w.leaf("ContentId", &format!("cid:{}", index + 1));
        w.leaf("AttachmentName", name);
        w.leaf("Description", &format!("Tệp {}", index + 1));
        w.leaf("ContentType", media_type);
        w.open("ContentTransferEncoded");
        bytes.extend_from_slice(std::mem::take(&mut w.out).as_bytes());
        bytes.extend_from_slice(base64(content).as_bytes());
        w.close("ContentTransferEncoded");
        w.close("Attachment");
    }
    w.close("AttachmentEncoded");
    w.out.push_str(if doc.prefixed {
        "</edXML:edXMLEnvelope>\n"
    } else {
        "</edXMLEnvelope>\n"
    });
    bytes.extend_from_slice(w.out.as_bytes());
    bytes
}

/// Base64 in 76-character lines, as document systems write it.
pub fn base64(content: &[u8]) -> String {
    let mut out = String::new();
    for line in content.chunks(57) {
        out.push('\n');
        out.push_str(&openssl::base64::encode_block(line));
    }
    out.push('\n');
    out
}

/// A status message from `reporter` about `document_id` of `sender`.
pub fn status(sender: &str, document_id: &str, reporter: &str, code: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<edXML:edXMLEnvelope xmlns:edXML=\"{NS}\"><edXML:edXMLHeader><edXML:Status><edXML:ResponseFor><edXML:OrganId>{sender}</edXML:OrganId><edXML:Code>101/KH-STC</edXML:Code><edXML:PromulgationDate>2026/11/30</edXML:PromulgationDate><edXML:DocumentId>{document_id}</edXML:DocumentId></edXML:ResponseFor><edXML:From><edXML:OrganId>{reporter}</edXML:OrganId><edXML:OrganName>UBND huyện</edXML:OrganName></edXML:From><edXML:StatusCode>{code}</edXML:StatusCode><edXML:Description>Đã tiếp nhận</edXML:Description><edXML:Timestamp>2026/12/01 10:20:30</edXML:Timestamp><edXML:StaffInfo><edXML:Department>Văn thư</edXML:Department><edXML:Staff>Lê Văn Cường</edXML:Staff><edXML:Mobile>0905111222</edXML:Mobile><edXML:Email>cuong@example.gov.vn</edXML:Email></edXML:StaffInfo></edXML:Status></edXML:edXMLHeader><edXML:edXMLBody/></edXML:edXMLEnvelope>\n"
    )
    .into_bytes()
}

/// Writes `bytes` to `dir/name`.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create fixture");
    file.write_all(bytes).expect("write fixture");
    path
}

/// Whether the oracles are here: xmlsec1 and the venv's python with
/// signxml and lxml. Outside CI a missing one skips; under CI it fails.
pub fn oracles() -> Option<PathBuf> {
    let python = std::env::var("LIENTHONG_PYTHON").ok().map(PathBuf::from);
    let xmlsec1 = Command::new("xmlsec1").arg("--version").output().is_ok();
    let signxml = python.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import signxml, lxml"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if xmlsec1 && signxml {
        return python;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the edXML tests: xmlsec1 (apt xmlsec1) and signxml (venv of scripts/test, LIENTHONG_PYTHON) are needed"
    );
    eprintln!("SKIPPED: xmlsec1 or signxml missing; run `scripts/test`");
    None
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `xmlsec1 --sign` with a certs-test signer (e.g.
/// `signers/department-organization`).
pub fn xmlsec1_sign(input: &Path, output: &Path, signer: &str) {
    let base = certs().join(signer);
    let key = format!(
        "{},{}",
        base.with_extension("key").display(),
        base.with_extension("crt").display()
    );
    run(
        Command::new("xmlsec1")
            .args(["--sign", "--privkey-pem", &key, "--output"])
            .arg(output)
            .arg(input),
        "xmlsec1 --sign",
    );
}

/// `xmlsec1 --verify` against the test PKI: Ok or xmlsec1's words.
pub fn xmlsec1_verify(path: &Path) -> Result<(), String> {
    let out = Command::new("xmlsec1")
        .args(["--verify", "--trusted-pem"])
        .arg(certs().join("ca/root.crt"))
        .arg("--untrusted-pem")
        .arg(certs().join("ca/agency-ca.crt"))
        .arg(path)
        .output()
        .expect("xmlsec1 runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn oracle(python: &Path) -> Command {
    let mut command = Command::new(python);
    command.arg(super::repo().join("tests/edxml/oracle.py"));
    command
}

/// signxml signs at the placeholder.
pub fn signxml_sign(python: &Path, input: &Path, output: &Path, signer: &str) {
    let base = certs().join(signer);
    run(
        oracle(python)
            .arg("signxml-sign")
            .arg(input)
            .arg(output)
            .arg(base.with_extension("key"))
            .arg(base.with_extension("crt")),
        "signxml sign",
    );
}

/// signxml verifies against the test PKI: Ok or its words.
pub fn signxml_verify(python: &Path, path: &Path, scratch: &Path) -> Result<(), String> {
    let bundle = scratch.join("ca-bundle.pem");
    let mut pem = std::fs::read(certs().join("ca/root.crt")).expect("root");
    pem.extend(std::fs::read(certs().join("ca/agency-ca.crt")).expect("agency ca"));
    std::fs::write(&bundle, pem).expect("bundle");
    let out = oracle(python)
        .arg("signxml-verify")
        .arg(path)
        .arg(&bundle)
        .output()
        .expect("signxml runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// libxml2's C14N (through lxml) and `openssl dgst` sign the template,
/// whatever namespace its Signature is in.
pub fn lxml_sign(python: &Path, input: &Path, output: &Path, signer: &str, sha1: bool) {
    let base = certs().join(signer);
    run(
        oracle(python)
            .arg("lxml-sign")
            .arg(input)
            .arg(output)
            .arg(base.with_extension("key"))
            .arg(base.with_extension("crt"))
            .arg(if sha1 { "sha1" } else { "sha256" }),
        "lxml sign",
    );
}

/// Every leaf of a header as `path = text`, in order (for comparing two
/// packages field by field).
pub fn leaves(element: &lienthong::edxml::Element, prefix: &str, out: &mut Vec<String>) {
    let path = format!("{prefix}/{}", element.name);
    for (name, value) in &element.attributes {
        out.push(format!("{path}@{name} = {value}"));
    }
    if element.children.is_empty() {
        out.push(format!("{path} = {}", element.text));
    }
    for child in &element.children {
        leaves(child, &path, out);
    }
}

/// A package read by the gateway's reader, attachments collected.
pub struct Read {
    pub package: lienthong::edxml::Package,
    pub attachments: Vec<Vec<u8>>,
}

struct Collect(Vec<Vec<u8>>);

impl lienthong::edxml::AttachmentSink for Collect {
    fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), lienthong::edxml::EdxmlError> {
        while self.0.len() <= index {
            self.0.push(Vec::new());
        }
        self.0[index].extend_from_slice(bytes);
        Ok(())
    }
}

pub fn read(bytes: &[u8]) -> Read {
    let mut sink = Collect(Vec::new());
    let package =
        lienthong::edxml::read(bytes, &Default::default(), &mut sink).expect("the package reads");
    Read {
        package,
        attachments: sink.0,
    }
}

/// Elements written without the `edXML:` prefix (the hub refuses them);
/// `ds:` elements of a signature are allowed.
pub fn unprefixed_elements(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, _) in text.match_indices('<') {
        let rest = &text[index + 1..];
        let Some(first) = rest.chars().next() else {
            continue;
        };
        if !first.is_ascii_alphabetic() {
            continue;
        }
        if !(rest.starts_with("edXML:") || rest.starts_with("ds:")) {
            found.push(rest.chars().take(30).collect());
        }
    }
    found
}
