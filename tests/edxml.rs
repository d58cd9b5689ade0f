//! edXML natively (QCVN 102:2016): document systems send and receive edXML
//! packages; XML signatures are judged by independent parties. Packages are
//! made here and signed by `xmlsec1`, by signxml, and by libxml2's C14N
//! through lxml (the edXML-namespace form, which neither tool makes); the
//! gateway's own signatures are verified by xmlsec1 and signxml.
//!
//! Needs `xmlsec1` (apt xmlsec1) and the venv of `scripts/test` (signxml,
//! lxml) named by LIENTHONG_PYTHON.

mod common;

use std::path::{Path, PathBuf};

use common::{
    edxml::{self, Doc, Template},
    *,
};
use lienthong::proto;

/// The single file under `dir` (recursively) whose name ends with `suffix`.
fn file_ending(dir: &Path, suffix: &str) -> PathBuf {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    assert_eq!(
        found.len(),
        1,
        "one {suffix} under {}: {found:?}",
        dir.display()
    );
    found.remove(0)
}

/// The header's leaves with this gateway's hop (OrganId `lienthong`) taken
/// out of the trace.
fn leaves_without_hop(header: &lienthong::edxml::Element) -> Vec<String> {
    let mut header = header.clone();
    if let Some(list) = header
        .children
        .iter_mut()
        .find(|c| c.name == "TraceHeaderList")
    {
        list.children
            .retain(|c| !(c.name == "TraceHeader" && c.text_at("OrganId") == "lienthong"));
    }
    let mut out = Vec::new();
    edxml::leaves(&header, "", &mut out);
    out
}

fn cli(args: &[&str], who: &str, server: &TestServer) -> String {
    let out = run_cli(args, who, &server.addr.to_string());
    stdout_of(&out, &args.join(" "))
}

fn cli_fails(args: &[&str], who: &str, server: &TestServer) -> String {
    let out = run_cli(args, who, &server.addr.to_string());
    assert!(
        !out.status.success(),
        "{} should fail: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A document system sends edXML signed by xmlsec1; the gateway verifies
/// and routes it; the recipient receives edXML whose header fields and
/// attachments equal the original's (every element prefixed `edXML:`,
/// this gateway's hop added); its status 03 goes back to the sender as an
/// edXML status message, signed by the gateway, which xmlsec1 and signxml
/// accept.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_system_sends_edxml_and_gets_its_status_back_as_edxml() {
    let Some(python) = edxml::oracles() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut doc = Doc::new(DEPARTMENT, &[DISTRICT], 101);
    let binary: Vec<u8> = (0..150_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    doc.attachments.push((
        "phu-luc.bin".to_owned(),
        "application/octet-stream".to_owned(),
        binary,
    ));
    let template = edxml::write(dir.path(), "template.edxml", &edxml::package(&doc));
    let signed = dir.path().join("signed.edxml");
    edxml::xmlsec1_sign(&template, &signed, "signers/department-organization");
    edxml::xmlsec1_verify(&signed).expect("xmlsec1 accepts its own signature");

    let sent = cli(&["send", "--edxml", text(&signed)], "department", &server);
    assert!(
        sent.contains("accepted: edXML document as message ed-"),
        "{sent}"
    );
    assert!(sent.contains("TOTAL_PASSED"), "{sent}");
    // Sent again: the same message, answered as a duplicate.
    let again = cli(&["send", "--edxml", text(&signed)], "department", &server);
    assert!(again.contains("already accepted"), "{again}");

    let inbox = dir.path().join("district-inbox");
    let received = cli(
        &[
            "receive",
            "--format",
            "edxml",
            "--out",
            text(&inbox),
            "--once",
            "--ack",
        ],
        "district",
        &server,
    );
    assert!(
        received.contains("1 document(s) received as edXML"),
        "{received}"
    );
    let path = file_ending(&inbox, ".edxml");
    let delivered = std::fs::read(&path).expect("delivered package");
    let delivered_text = String::from_utf8(delivered.clone()).expect("UTF-8");
    assert_eq!(
        edxml::unprefixed_elements(&delivered_text),
        Vec::<String>::new(),
        "every element carries the edXML: prefix"
    );
    let original = edxml::read(&std::fs::read(&signed).expect("signed"));
    let copy = edxml::read(&delivered);
    assert_eq!(
        leaves_without_hop(&copy.package.header),
        leaves_without_hop(&original.package.header),
        "every header field as sent"
    );
    let hops: Vec<_> = copy
        .package
        .header
        .at("TraceHeaderList")
        .expect("trace")
        .all("TraceHeader")
        .collect();
    assert_eq!(hops.len(), 2, "the sender's hop and the gateway's");
    let stamp = hops[1].text_at("Timestamp");
    assert!(
        stamp.len() == 19 && &stamp[4..5] == "/" && &stamp[7..8] == "/",
        "yyyy/MM/dd HH:mm:ss: {stamp}"
    );
    assert_eq!(
        copy.attachments, original.attachments,
        "byte-equal attachments"
    );
    assert_eq!(copy.package.attachments, original.package.attachments);
    assert_eq!(copy.attachments[1], doc.attachments[1].2);

    // Status 03, as an edXML status message from the district's system.
    let status = edxml::write(
        dir.path(),
        "status.edxml",
        &edxml::status(DEPARTMENT, &doc.document_id, DISTRICT, "03"),
    );
    let reported = cli(&["send", "--edxml", text(&status)], "district", &server);
    assert!(reported.contains("status accepted"), "{reported}");
    let department_inbox = dir.path().join("department-inbox");
    let back = cli(
        &[
            "receive",
            "--format",
            "edxml",
            "--out",
            text(&department_inbox),
            "--once",
            "--ack",
            "--sign",
        ],
        "department",
        &server,
    );
    assert!(back.contains("1 status message(s) received"), "{back}");
    let status_path = file_ending(&department_inbox, ".status-1.edxml");
    let message = edxml::read(&std::fs::read(&status_path).expect("status"));
    let header = &message.package.header;
    assert_eq!(header.text_at("Status/StatusCode"), "03");
    assert_eq!(
        header.text_at("Status/ResponseFor/DocumentId"),
        doc.document_id
    );
    assert_eq!(header.text_at("Status/ResponseFor/OrganId"), DEPARTMENT);
    assert_eq!(header.text_at("Status/From/OrganId"), DISTRICT);
    assert_eq!(header.text_at("Status/Description"), "Đã tiếp nhận");
    assert_eq!(header.text_at("Status/Timestamp"), "2026/12/01 10:20:30");
    assert_eq!(header.text_at("Status/StaffInfo/Staff"), "Lê Văn Cường");
    // Signed by the gateway: both independent verifiers agree.
    edxml::xmlsec1_verify(&status_path).expect("xmlsec1 verifies the gateway's signature");
    edxml::signxml_verify(&python, &status_path, dir.path())
        .expect("signxml verifies the gateway's signature");
    server.stop().await;
}

/// The same document sent as edXML and received through the gRPC
/// envelope, and the reverse: the fields both know are equal, and what the
/// envelope lacks reaches the gRPC receiver in the header the gateway keeps.
#[tokio::test(flavor = "multi_thread")]
async fn edxml_and_the_grpc_envelope_carry_the_same_document() {
    let Some(python) = edxml::oracles() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;

    // edXML in, signed by signxml (exclusive C14N), gRPC envelope out.
    let mut doc = Doc::new(DEPARTMENT, &[DISTRICT], 102);
    doc.template = Template::Placeholder;
    let template = edxml::write(dir.path(), "template.edxml", &edxml::package(&doc));
    let signed = dir.path().join("signed.edxml");
    edxml::signxml_sign(
        &python,
        &template,
        &signed,
        "signers/department-organization",
    );
    edxml::xmlsec1_verify(&signed).expect("xmlsec1 accepts signxml's signature");
    cli(&["send", "--edxml", text(&signed)], "department", &server);
    let mut district = server.exchange("district").await;
    let deliveries = drain(&mut district).await;
    assert_eq!(deliveries.len(), 1);
    let envelope = envelope_of(&deliveries[0]);
    let document = envelope.document.clone().expect("document");
    assert!(
        envelope.message_id.starts_with("ed-"),
        "{}",
        envelope.message_id
    );
    assert_eq!(envelope.from, DEPARTMENT);
    assert_eq!(document.subject, doc.subject);
    let code = document.code.clone().expect("code");
    assert_eq!(
        (code.number.as_str(), code.notation.as_str()),
        ("102", "KH-STC")
    );
    assert_eq!(document.r#type, "edxml-1");
    assert_eq!(document.type_name, "Kế hoạch");
    assert_eq!(document.priority, proto::Priority::Urgent as i32);
    let promulgation = document.promulgation.clone().expect("promulgation");
    assert_eq!(promulgation.date, "2026-11-30");
    assert_eq!(promulgation.place, "Khánh Hòa");
    let signer = document.signer.clone().expect("signer");
    assert_eq!(signer.full_name, "Nguyễn Văn An");
    assert_eq!(document.due_date, "2026-12-31");
    assert_eq!(document.steering_type, 1);
    assert_eq!(envelope.attachments[0].content, doc.attachments[0].2);
    let report = deliveries[0]
        .reports
        .iter()
        .find(|r| r.attachment == "edXMLHeader/Signature")
        .expect("the XML signature's report");
    assert_eq!(report.indication, proto::Indication::TotalPassed as i32);
    assert!(
        report.message.contains("Sở Tài chính"),
        "{}",
        report.message
    );
    let kept = edxml::read(&envelope.edxml_header);
    assert_eq!(
        kept.package
            .header
            .text_at("MessageHeader/OtherInfo/SphereOfPromulgation"),
        "Toàn tỉnh",
        "a field the envelope lacks reaches the gRPC receiver"
    );
    ack(&mut district, &deliveries[0]).await;

    // gRPC envelope in, edXML out, signed by the gateway.
    let mut department = server.exchange("department").await;
    let content = b"%PDF-1.7 not really a pdf".to_vec();
    let mut sent = common::envelope("grpc-103", DEPARTMENT, &[DISTRICT], &content);
    sent.attachments[0].media_type = "application/octet-stream".into();
    if let Some(document) = sent.document.as_mut() {
        document.priority = proto::Priority::Flash as i32;
        document.due_date = "2027-01-15".into();
    }
    send(&mut department, sent).await.expect("sent");
    let inbox = dir.path().join("inbox");
    cli(
        &[
            "receive",
            "--format",
            "edxml",
            "--out",
            text(&inbox),
            "--once",
            "--ack",
            "--sign",
        ],
        "district",
        &server,
    );
    let path = file_ending(&inbox, "grpc-103.edxml");
    let bytes = std::fs::read(&path).expect("package");
    edxml::xmlsec1_verify(&path).expect("xmlsec1 verifies the gateway's signature");
    edxml::signxml_verify(&python, &path, dir.path())
        .expect("signxml verifies the gateway's signature");
    assert_eq!(
        edxml::unprefixed_elements(std::str::from_utf8(&bytes).expect("UTF-8")),
        Vec::<String>::new()
    );
    let read = edxml::read(&bytes);
    let header = &read.package.header;
    assert_eq!(header.text_at("MessageHeader/From/OrganId"), DEPARTMENT);
    assert_eq!(header.text_at("MessageHeader/To/OrganId"), DISTRICT);
    assert_eq!(
        header.text_at("MessageHeader/Subject"),
        "Kế hoạch triển khai chuyển đổi số"
    );
    assert_eq!(header.text_at("MessageHeader/Code/CodeNumber"), "101");
    assert_eq!(header.text_at("MessageHeader/Code/CodeNotation"), "KH-UBND");
    assert_eq!(
        header.text_at("MessageHeader/DocumentType/Type"),
        "official-letter"
    );
    assert_eq!(header.text_at("MessageHeader/OtherInfo/Priority"), "3");
    assert_eq!(header.text_at("MessageHeader/DueDate"), "2027/01/15");
    assert_eq!(
        header.text_at("TraceHeaderList/Bussiness/BussinessDocType"),
        "0"
    );
    assert_eq!(read.attachments, vec![content]);
    server.stop().await;
}

/// Sends a package through the Edxml service as `who`, in 1 MiB chunks.
async fn edxml_send(
    server: &TestServer,
    who: &str,
    bytes: &[u8],
) -> Result<proto::EdxmlSendResponse, tonic::Status> {
    use proto::edxml_send_request::Part;
    let mut parts = vec![proto::EdxmlSendRequest {
        part: Some(Part::Options(proto::EdxmlSendOptions {
            size: bytes.len() as u64,
        })),
    }];
    parts.extend(bytes.chunks(1 << 20).map(|chunk| proto::EdxmlSendRequest {
        part: Some(Part::Chunk(chunk.to_vec())),
    }));
    proto::edxml_client::EdxmlClient::new(server.channel(who).await)
        .send(tokio_stream::iter(parts))
        .await
        .map(tonic::Response::into_inner)
}

/// The report of the header's XML signature in a refusal's details.
fn refused_report(status: &tonic::Status) -> proto::VerificationReport {
    use prost::Message;
    let details = tonic_types::pb::Status::decode(status.details()).expect("status details");
    details
        .details
        .iter()
        .filter_map(|any| proto::VerifyResponse::decode(any.value.as_slice()).ok())
        .flat_map(|response| response.reports)
        .find(|report| report.attachment == "edXMLHeader/Signature")
        .expect("the XML signature's report in the refusal")
}

/// Signs `doc` with the oracle its template is for; the signed bytes.
fn signed(python: &Path, dir: &Path, name: &str, doc: &Doc) -> Vec<u8> {
    let template = edxml::write(dir, &format!("{name}.template.edxml"), &edxml::package(doc));
    let out = dir.join(format!("{name}.edxml"));
    match doc.template {
        Template::Dsig { .. } => {
            edxml::xmlsec1_sign(&template, &out, "signers/department-organization")
        }
        Template::Placeholder => {
            edxml::signxml_sign(python, &template, &out, "signers/department-organization")
        }
        Template::EdxmlNamespace { sha1 } => edxml::lxml_sign(
            python,
            &template,
            &out,
            "signers/department-organization",
            sha1,
        ),
        Template::None => std::fs::copy(&template, &out).map(|_| ()).expect("copy"),
    }
    std::fs::read(out).expect("signed package")
}

/// Both signature namespaces, both canonicalizations, SHA-1 and SHA-256,
/// prefixed and unprefixed children, junk before the declaration and NFD
/// text: each verified as its maker meant, SHA-1 only under
/// `[edxml] accept_sha1` and then reported as weak; a changed byte in the
/// header or in an attachment fails the reference, named in the report.
#[tokio::test(flavor = "multi_thread")]
async fn every_signature_form_in_the_field_is_judged_as_its_maker_meant() {
    let Some(python) = edxml::oracles() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut number = 200;
    let mut next = |template: Template, prefixed: bool| {
        number += 1;
        let mut doc = Doc::new(DEPARTMENT, &[DISTRICT], number);
        doc.template = template;
        doc.prefixed = prefixed;
        doc
    };
    let cases = [
        (next(Template::Dsig { exclusive: true, sha1: false }, false), "XML-DSig namespace", "exclusive C14N"),
        (next(Template::Placeholder, true), "XML-DSig namespace", "exclusive C14N"),
        (next(Template::EdxmlNamespace { sha1: false }, true), "edXML default namespace", "C14N 1.0"),
        (next(Template::Dsig { exclusive: false, sha1: false }, true), "XML-DSig namespace", "C14N 1.0"),
    ];
    for (index, (doc, namespace, c14n)) in cases.iter().enumerate() {
        let bytes = signed(&python, dir.path(), &format!("case-{index}"), doc);
        let answer = edxml_send(&server, "department", &bytes)
            .await
            .unwrap_or_else(|e| panic!("case {index} ({namespace}, {c14n}): {e:?}"));
        let report = &answer.reports[0];
        assert_eq!(report.attachment, "edXMLHeader/Signature");
        assert_eq!(
            report.indication,
            proto::Indication::TotalPassed as i32,
            "case {index}: {}",
            report.message
        );
        let format = &report.checks[0].detail;
        assert!(format.contains(namespace) && format.contains(c14n), "case {index}: {format}");
    }

    // SHA-1, the VPCP sample's form (edXML namespace, rsa-sha1): refused
    // by default, naming SHA-1; xmlsec1's SHA-1 too.
    let sha1_forms = [
        next(Template::EdxmlNamespace { sha1: true }, true),
        next(Template::Dsig { exclusive: false, sha1: true }, true),
    ];
    let mut sha1_packages = Vec::new();
    for (index, doc) in sha1_forms.iter().enumerate() {
        let bytes = signed(&python, dir.path(), &format!("sha1-{index}"), doc);
        let refusal = edxml_send(&server, "department", &bytes)
            .await
            .expect_err("SHA-1 is refused by default");
        assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
        let report = refused_report(&refusal);
        assert_eq!(
            report.sub_indication,
            proto::SubIndication::CryptoConstraintsFailureNoPoe as i32
        );
        assert!(report.message.contains("SHA-1"), "{}", report.message);
        sha1_packages.push(bytes);
    }

    // A changed byte in the header, and one in an attachment's base64.
    let good = signed(
        &python,
        dir.path(),
        "tamper",
        &next(Template::Dsig { exclusive: true, sha1: false }, true),
    );
    let text = String::from_utf8(good.clone()).expect("UTF-8");
    let header = text.replacen("Kế hoạch triển khai", "Kế hoạch triển khaI", 1);
    let encoded_at = text.find("ContentTransferEncoded>").expect("attachment") + 30;
    let mut attachment = good.clone();
    attachment[encoded_at] = if attachment[encoded_at] == b'A' { b'B' } else { b'A' };
    for (what, bytes) in [("header", header.into_bytes()), ("attachment", attachment)] {
        let refusal = edxml_send(&server, "department", &bytes)
            .await
            .expect_err("a changed byte fails the signature");
        let report = refused_report(&refusal);
        assert_eq!(
            report.sub_indication,
            proto::SubIndication::HashFailure as i32,
            "{what}"
        );
        assert!(
            report.message.contains("Reference URI=\"\"") || report.message.contains("reference URI=\"\""),
            "{what}: {}",
            report.message
        );
    }
    server.stop().await;

    // Under accept_sha1: accepted, and reported as weak.
    let mut config = common::config(&dir.path().join("data-sha1"));
    config.edxml.accept_sha1 = true;
    let server = TestServer::start_with(config).await;
    for bytes in &sha1_packages {
        let answer = edxml_send(&server, "department", bytes)
            .await
            .expect("SHA-1 accepted under accept_sha1");
        assert_eq!(answer.reports[0].indication, proto::Indication::TotalPassed as i32);
        assert!(answer.reports[0].message.contains("weak"), "{}", answer.reports[0].message);
    }

    // Junk before the declaration and NFD Vietnamese: verified on the
    // bytes as signed, the text delivered in NFC.
    let mut nfd = next(Template::Dsig { exclusive: false, sha1: false }, true);
    let decomposed = "Ke\u{302}\u{301} hoa\u{323}ch chuye\u{302}\u{309}n đo\u{302}\u{309}i so\u{302}\u{301}";
    nfd.subject = decomposed.to_owned();
    let mut bytes = b"1212".to_vec();
    bytes.extend(signed(&python, dir.path(), "nfd", &nfd));
    let answer = edxml_send(&server, "department", &bytes)
        .await
        .expect("junk before the XML and NFD text are taken");
    assert_eq!(answer.reports[0].indication, proto::Indication::TotalPassed as i32);
    let mut district = server.exchange("district").await;
    let subjects: Vec<String> = drain(&mut district)
        .await
        .iter()
        .map(|d| envelope_of(d).document.clone().expect("document").subject)
        .collect();
    assert!(
        subjects.contains(&"Kế hoạch chuyển đổi số".to_owned()),
        "NFC on delivery: {subjects:?}"
    );
    server.stop().await;
}
