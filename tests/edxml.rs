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
        (
            next(
                Template::Dsig {
                    exclusive: true,
                    sha1: false,
                },
                false,
            ),
            "XML-DSig namespace",
            "exclusive C14N",
        ),
        (
            next(Template::Placeholder, true),
            "XML-DSig namespace",
            "exclusive C14N",
        ),
        (
            next(Template::EdxmlNamespace { sha1: false }, true),
            "edXML default namespace",
            "C14N 1.0",
        ),
        (
            next(
                Template::Dsig {
                    exclusive: false,
                    sha1: false,
                },
                true,
            ),
            "XML-DSig namespace",
            "C14N 1.0",
        ),
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
        assert!(
            format.contains(namespace) && format.contains(c14n),
            "case {index}: {format}"
        );
    }

    // SHA-1, the VPCP sample's form (edXML namespace, rsa-sha1): refused
    // by default, naming SHA-1; xmlsec1's SHA-1 too.
    let sha1_forms = [
        next(Template::EdxmlNamespace { sha1: true }, true),
        next(
            Template::Dsig {
                exclusive: false,
                sha1: true,
            },
            true,
        ),
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
        &next(
            Template::Dsig {
                exclusive: true,
                sha1: false,
            },
            true,
        ),
    );
    let text = String::from_utf8(good.clone()).expect("UTF-8");
    let header = text.replacen("Kế hoạch triển khai", "Kế hoạch triển khaI", 1);
    let encoded_at = text.find("ContentTransferEncoded>").expect("attachment") + 30;
    let mut attachment = good.clone();
    attachment[encoded_at] = if attachment[encoded_at] == b'A' {
        b'B'
    } else {
        b'A'
    };
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
            report.message.contains("Reference URI=\"\"")
                || report.message.contains("reference URI=\"\""),
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
        assert_eq!(
            answer.reports[0].indication,
            proto::Indication::TotalPassed as i32
        );
        assert!(
            answer.reports[0].message.contains("weak"),
            "{}",
            answer.reports[0].message
        );
    }

    // Junk before the declaration and NFD Vietnamese: verified on the
    // bytes as signed, the text delivered in NFC.
    let mut nfd = next(
        Template::Dsig {
            exclusive: false,
            sha1: false,
        },
        true,
    );
    let decomposed =
        "Ke\u{302}\u{301} hoa\u{323}ch chuye\u{302}\u{309}n đo\u{302}\u{309}i so\u{302}\u{301}";
    nfd.subject = decomposed.to_owned();
    let mut bytes = b"1212".to_vec();
    bytes.extend(signed(&python, dir.path(), "nfd", &nfd));
    let answer = edxml_send(&server, "department", &bytes)
        .await
        .expect("junk before the XML and NFD text are taken");
    assert_eq!(
        answer.reports[0].indication,
        proto::Indication::TotalPassed as i32
    );
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

/// Bad packages: each refused with INVALID_ARGUMENT naming the element,
/// nothing queued and no staging file left behind. Entity expansion and
/// external entities cannot happen: a DOCTYPE is refused before anything
/// is expanded.
#[tokio::test]
async fn bad_packages_are_refused_naming_the_element_and_leave_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start(&data).await;
    let mut base = Doc::new(DEPARTMENT, &[DISTRICT], 300);
    base.template = Template::None;
    let good = String::from_utf8(edxml::package(&base)).expect("UTF-8");
    let edit = |from: &str, to: &str| {
        assert!(good.contains(from), "the fixture has {from:?}");
        good.replacen(from, to, 1).into_bytes()
    };
    let laughs = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE edXMLEnvelope [\n<!ENTITY lol \"lol\">\n{}]>\n<edXMLEnvelope xmlns=\"{}\">&lol9;</edXMLEnvelope>",
        (1..10)
            .map(|i| format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!(
                    "&lol{};",
                    if i == 1 {
                        String::new()
                    } else {
                        (i - 1).to_string()
                    }
                )
                .repeat(10)
            ))
            .collect::<String>(),
        edxml::NS
    );
    let xxe = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE edXMLEnvelope [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<edXMLEnvelope xmlns=\"{}\"><edXMLHeader>&xxe;</edXMLHeader></edXMLEnvelope>",
        edxml::NS
    );
    let huge_content = "Nội dung dài. ".repeat(90_000);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "malformed XML",
            edit("</edXML:Subject>", "</edXML:Subjec>"),
            "malformed XML",
        ),
        (
            "the wrong namespace",
            edit(edxml::NS, "http://example.org/not-edxml"),
            "edXMLEnvelope: is in the namespace",
        ),
        (
            "a field in another namespace",
            edit("<edXML:Content>", "<x:Content xmlns:x=\"urn:other\">")
                .into_iter()
                .collect::<Vec<u8>>()
                .pipe(|b| {
                    String::from_utf8(b)
                        .expect("utf-8")
                        .replacen("</edXML:Content>", "</x:Content>", 1)
                        .into_bytes()
                }),
            "MessageHeader/Content: is in the namespace",
        ),
        (
            "a missing recipient",
            edit(&between(&good, "<edXML:To>", "</edXML:To>\n"), ""),
            "edXMLHeader/MessageHeader/To: is required",
        ),
        (
            "a missing DocumentId",
            edit(
                &between(&good, "<edXML:DocumentId>", "</edXML:DocumentId>"),
                "",
            ),
            "edXMLHeader/MessageHeader/DocumentId: is required",
        ),
        (
            "a sender that is no org code",
            edit(
                "<edXML:OrganId>000.00.12.H56</edXML:OrganId>",
                "<edXML:OrganId>H56-STC</edXML:OrganId>",
            ),
            "MessageHeader/From/OrganId",
        ),
        (
            "a priority out of range",
            edit(
                "<edXML:Priority>1</edXML:Priority>",
                "<edXML:Priority>7</edXML:Priority>",
            ),
            "MessageHeader/OtherInfo/Priority",
        ),
        (
            "broken base64",
            edit(
                "<edXML:ContentTransferEncoded>\n",
                "<edXML:ContentTransferEncoded>\n*%$",
            ),
            "AttachmentEncoded/Attachment/ContentTransferEncoded: the base64 is broken",
        ),
        (
            "a manifest naming a missing attachment",
            edit(
                "</edXML:edXMLManifest>",
                "<edXML:Reference><edXML:ContentId>cid:9</edXML:ContentId><edXML:AttachmentName>mat.pdf</edXML:AttachmentName></edXML:Reference></edXML:edXMLManifest>",
            ),
            "edXMLManifest/Reference[2]",
        ),
        (
            "oversize content",
            edit("Triển khai trong quý I.", &huge_content),
            "MessageHeader/Content: over the limit",
        ),
        ("billion laughs", laughs.into_bytes(), "DOCTYPE"),
        ("an external entity", xxe.into_bytes(), "DOCTYPE"),
        (
            "an undefined entity",
            edit("Triển khai trong quý I.", "&xxe;"),
            "the entity &xxe; is not defined",
        ),
        (
            "another encoding",
            edit("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\""),
            "only UTF-8",
        ),
        (
            "not XML at all",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec(),
            "document: is not XML",
        ),
        (
            "a status code that does not exist",
            edxml::status(DEPARTMENT, "x", DISTRICT, "07"),
            "edXMLHeader/Status/StatusCode",
        ),
    ];
    for (what, bytes, named) in cases {
        let refusal = edxml_send(&server, "department", &bytes)
            .await
            .expect_err(what);
        assert_eq!(
            refusal.code(),
            tonic::Code::InvalidArgument,
            "{what}: {refusal:?}"
        );
        assert!(
            refusal.message().contains(named),
            "{what}: the refusal names {named:?}: {}",
            refusal.message()
        );
        assert_eq!(
            staging_files(&data),
            Vec::<PathBuf>::new(),
            "{what}: nothing left behind"
        );
    }
    let mut district = server.exchange("district").await;
    assert!(drain(&mut district).await.is_empty(), "nothing was queued");
    // The control: the same package, unbroken, is taken (unsigned, so the
    // default policy refuses it for want of a signature, not its form).
    let control = edxml_send(&server, "department", good.as_bytes())
        .await
        .expect_err("unsigned");
    assert_eq!(
        control.code(),
        tonic::Code::FailedPrecondition,
        "{control:?}"
    );
    server.stop().await;
}

/// The text from `start` to the end of `end` (both included).
fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).expect("start");
    let to = text[from..].find(end).expect("end") + from + end.len();
    text[from..to].to_owned()
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}

impl<T> Pipe for T {}

fn keystore_config(data: &Path) -> lienthong::config::Config {
    let mut config = common::config(data);
    config.keystore.passphrase = lienthong::pki::Passphrase::new(b"edxml test passphrase".to_vec());
    config
}

/// `lienthong edxml sign` with the department's organization key held by
/// the gateway: xmlsec1 and signxml verify the result, the gateway takes
/// it as signed by the department, and a package signed already, or a key
/// not held, is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_signs_edxml_with_a_held_key_for_both_oracles() {
    let Some(python) = edxml::oracles() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(keystore_config(&dir.path().join("data"))).await;
    let base = certs().join("signers/department-organization");
    server
        .admin("admin")
        .await
        .import_key(proto::ImportKeyRequest {
            key: Some(proto::KeyRef {
                agency: DEPARTMENT.into(),
                role: proto::SignerRole::Organization as i32,
            }),
            certificate_pem: std::fs::read_to_string(base.with_extension("crt")).expect("cert"),
            private_key_pem: std::fs::read_to_string(base.with_extension("key")).expect("key"),
        })
        .await
        .expect("import key");
    // Unprefixed children, a 300 KB attachment: the signature covers all.
    let mut doc = Doc::new(DEPARTMENT, &[DISTRICT, COMMUNE_A], 400);
    doc.template = Template::None;
    doc.prefixed = false;
    doc.attachments[0].2 = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let unsigned = edxml::write(dir.path(), "unsigned.edxml", &edxml::package(&doc));
    let out = dir.path().join("signed.edxml");
    let said = cli(
        &[
            "edxml",
            "sign",
            "--role",
            "organization",
            "--in",
            text(&unsigned),
            "--out",
            text(&out),
        ],
        "department",
        &server,
    );
    assert!(said.contains("signed as organization"), "{said}");
    edxml::xmlsec1_verify(&out).expect("xmlsec1 verifies the gateway's signature");
    edxml::signxml_verify(&python, &out, dir.path()).expect("signxml verifies it");
    // The offline verify agrees.
    let offline = run_cli(
        &[
            "edxml",
            "verify",
            text(&out),
            "--trust",
            text(&certs().join("ca/root.crt")),
            text(&certs().join("ca/agency-ca.crt")),
            "--crl",
            text(&certs().join("ca/root.crl")),
            text(&certs().join("ca/agency-ca.crl")),
        ],
        "department",
        &server.addr.to_string(),
    );
    let offline = stdout_of(&offline, "edxml verify");
    assert!(offline.contains("TOTAL_PASSED"), "{offline}");
    // What it signed is what went in, plus the signature.
    let signed = std::fs::read(&out).expect("signed");
    let original = std::fs::read(&unsigned).expect("unsigned");
    assert_eq!(signed.len() - original.len(), {
        let text = String::from_utf8(signed.clone()).expect("UTF-8");
        between(&text, "<ds:Signature", "</ds:Signature>").len()
    });
    let answer = edxml_send(&server, "department", &signed)
        .await
        .expect("the signed package is taken");
    let report = &answer.reports[0];
    assert_eq!(report.indication, proto::Indication::TotalPassed as i32);
    let signer = report.signer.clone().expect("signer");
    assert_eq!(signer.agency, DEPARTMENT);
    assert_eq!(signer.role, proto::SignerRole::Organization as i32);

    let again = cli_fails(
        &[
            "edxml",
            "sign",
            "--role",
            "organization",
            "--in",
            text(&out),
            "--out",
            text(&dir.path().join("twice.edxml")),
        ],
        "department",
        &server,
    );
    assert!(again.contains("signed already"), "{again}");
    let not_held = cli_fails(
        &[
            "edxml",
            "sign",
            "--role",
            "head",
            "--in",
            text(&unsigned),
            "--out",
            text(&dir.path().join("head.edxml")),
        ],
        "department",
        &server,
    );
    assert!(not_held.contains("holds no key"), "{not_held}");
    assert!(!dir.path().join("twice.edxml").exists() && !dir.path().join("head.edxml").exists());
    assert_eq!(
        staging_files(&dir.path().join("data")),
        Vec::<PathBuf>::new()
    );
    server.stop().await;
}

/// BussinessDocType 0-3 become the gateway's actions: a revoke, an update
/// and a replacement refer to the document they act on (by its
/// DocumentId), and go out as edXML with their type; every status code
/// comes in and goes back out as an edXML status message.
#[tokio::test(flavor = "multi_thread")]
async fn business_types_become_actions_and_every_status_goes_both_ways() {
    let Some(python) = edxml::oracles() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    // The district takes them through the gRPC envelope, commune A as edXML.
    let original = Doc::new(DEPARTMENT, &[DISTRICT, COMMUNE_A], 500);
    let first = edxml_send(
        &server,
        "department",
        &signed(&python, dir.path(), "new", &original),
    )
    .await
    .expect("new document");
    let first_id = first.receipt.expect("receipt").message_id;
    let mut ids = vec![first_id.clone()];
    for (business, name) in [(2u8, "update"), (3, "replace"), (1, "revoke")] {
        let mut doc = original.clone();
        doc.business = business;
        doc.earlier = Some(original.document_id.clone());
        let answer = edxml_send(
            &server,
            "department",
            &signed(&python, dir.path(), name, &doc),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let id = answer.receipt.expect("receipt").message_id;
        assert!(id.starts_with(&format!("ed-{name}-")), "{name}: {id}");
        ids.push(id);
    }
    // An update of a document the gateway never saw is refused.
    let mut orphan = original.clone();
    orphan.business = 2;
    orphan.earlier = Some("000.00.12.H56,2020/01/01,1/XX".into());
    let refusal = edxml_send(
        &server,
        "department",
        &signed(&python, dir.path(), "orphan", &orphan),
    )
    .await
    .expect_err("an update of an unknown document");
    assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
    assert!(
        refusal.message().contains("refers_to"),
        "{}",
        refusal.message()
    );

    let mut district = server.exchange("district").await;
    let deliveries = drain(&mut district).await;
    let actions: Vec<(String, i32, String)> = deliveries
        .iter()
        .map(|d| {
            let e = envelope_of(d);
            let document = e.document.clone().expect("document");
            (e.message_id.clone(), document.action, document.refers_to)
        })
        .collect();
    let expect = [
        (ids[0].clone(), proto::Action::New as i32, String::new()),
        (
            ids[1].clone(),
            proto::Action::Update as i32,
            first_id.clone(),
        ),
        (
            ids[2].clone(),
            proto::Action::Replace as i32,
            first_id.clone(),
        ),
        (
            ids[3].clone(),
            proto::Action::Revoke as i32,
            first_id.clone(),
        ),
    ];
    for expected in &expect {
        assert!(actions.contains(expected), "{expected:?} in {actions:?}");
    }
    let inbox = dir.path().join("inbox");
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
        "commune-a",
        &server,
    );
    assert!(
        received.contains("4 document(s) received as edXML"),
        "{received}"
    );
    let revoke = edxml::read(
        &std::fs::read(file_ending(&inbox, &format!("{}.edxml", ids[3]))).expect("revoke"),
    );
    assert_eq!(
        revoke
            .package
            .header
            .text_at("TraceHeaderList/Bussiness/BussinessDocType"),
        "1"
    );
    assert_eq!(
        revoke
            .package
            .header
            .text_at("TraceHeaderList/Bussiness/DocumentId"),
        original.document_id
    );

    // Every status, as edXML status messages: commune A takes the document
    // through 01, 03, 04, 05, 06 and accepts the revocation (15), the
    // district refuses the document (02) and the revocation (16). A 15 or
    // 16 names only the document; it lands on the latest revocation.
    let statuses = [
        ("commune-a", COMMUNE_A, "01"),
        ("commune-a", COMMUNE_A, "03"),
        ("commune-a", COMMUNE_A, "04"),
        ("commune-a", COMMUNE_A, "05"),
        ("commune-a", COMMUNE_A, "06"),
        ("commune-a", COMMUNE_A, "15"),
        ("district", DISTRICT, "02"),
        ("district", DISTRICT, "16"),
    ];
    for (who, code, status) in statuses {
        let message = edxml::status(DEPARTMENT, &original.document_id, code, status);
        let answer = edxml_send(&server, who, &message)
            .await
            .unwrap_or_else(|e| panic!("status {status} from {who}: {e:?}"));
        assert!(answer.status, "status {status} is a status");
    }
    // A status that cannot follow the last one is refused.
    let late = edxml_send(
        &server,
        "commune-a",
        &edxml::status(DEPARTMENT, &original.document_id, COMMUNE_A, "01"),
    )
    .await
    .expect_err("01 after 06");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    let department_inbox = dir.path().join("department");
    let said = cli(
        &[
            "receive",
            "--format",
            "edxml",
            "--out",
            text(&department_inbox),
            "--once",
            "--ack",
        ],
        "department",
        &server,
    );
    assert!(said.contains("8 status message(s) received"), "{said}");
    let codes_of = |message_id: &str, count: usize| -> Vec<String> {
        let mut codes: Vec<String> = (1..=count)
            .map(|n| {
                let path =
                    file_ending(&department_inbox, &format!("{message_id}.status-{n}.edxml"));
                let read = edxml::read(&std::fs::read(path).expect("status"));
                let header = &read.package.header;
                assert_eq!(
                    header.text_at("Status/ResponseFor/DocumentId"),
                    original.document_id
                );
                format!(
                    "{} {}",
                    header.text_at("Status/From/OrganId"),
                    header.text_at("Status/StatusCode")
                )
            })
            .collect();
        codes.sort();
        codes
    };
    assert_eq!(
        codes_of(&first_id, 6),
        [
            format!("{DISTRICT} 02"),
            format!("{COMMUNE_A} 01"),
            format!("{COMMUNE_A} 03"),
            format!("{COMMUNE_A} 04"),
            format!("{COMMUNE_A} 05"),
            format!("{COMMUNE_A} 06"),
        ]
    );
    assert_eq!(
        codes_of(&ids[3], 2),
        [format!("{DISTRICT} 16"), format!("{COMMUNE_A} 15")]
    );
    server.stop().await;
}

/// A 50 MB attachment, signed by xmlsec1 (the reference covers it), sent
/// with `send --edxml` and received with `receive --format edxml`: the
/// gateway reads it from a map and decodes it in pieces; what comes back
/// is byte-equal. (Memory is measured by `benches/edxml.sh`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_fifty_megabyte_package_goes_through_whole() {
    use sha2::{Digest, Sha256};
    if edxml::oracles().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut doc = Doc::new(DEPARTMENT, &[DISTRICT], 600);
    let big: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let expected = Sha256::digest(&big).to_vec();
    doc.attachments = vec![(
        "ho-so-quet.pdf".to_owned(),
        "application/octet-stream".to_owned(),
        big,
    )];
    let template = edxml::write(dir.path(), "big.template.edxml", &edxml::package(&doc));
    drop(doc);
    let signed = dir.path().join("big.edxml");
    edxml::xmlsec1_sign(&template, &signed, "signers/department-organization");
    std::fs::remove_file(&template).expect("remove template");
    let sent = cli(&["send", "--edxml", text(&signed)], "department", &server);
    assert!(sent.contains("52428800 bytes"), "{sent}");
    assert!(sent.contains("TOTAL_PASSED"), "{sent}");
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
        ],
        "district",
        &server,
    );
    let delivered = std::fs::read(file_ending(&inbox, ".edxml")).expect("delivered");
    let copy = edxml::read(&delivered);
    assert_eq!(copy.attachments.len(), 1);
    assert_eq!(Sha256::digest(&copy.attachments[0]).to_vec(), expected);
    server.stop().await;
}

#[path = "common/trust.rs"]
mod trust;

/// ECDSA both ways, with a P-256 key made here under the test agency CA:
/// xmlsec1 signs (ecdsa-sha256) and the gateway's verification passes; the
/// gateway's signing writes the value as XML-DSig wants (r || s, not DER)
/// and xmlsec1 verifies it.
#[test]
fn ecdsa_signatures_both_ways() {
    if edxml::oracles().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = (dir.path().join("ec.key"), dir.path().join("ec.crt"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let extensions = dir.path().join("ext.cnf");
    std::fs::write(
        &extensions,
        "[v3]\nkeyUsage = critical, digitalSignature, nonRepudiation\nbasicConstraints = CA:FALSE\n",
    )
    .expect("extensions");
    let csr = dir.path().join("ec.csr");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        text(&key),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        text(&key),
        "-subj",
        "/C=VN/O=department/OU=head/CN=ECDSA test",
        "-out",
        text(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        text(&csr),
        "-CA",
        text(&certs().join("ca/agency-ca.crt")),
        "-CAkey",
        text(&certs().join("ca/agency-ca.key")),
        "-set_serial",
        "777001",
        "-days",
        "30",
        "-extfile",
        text(&extensions),
        "-extensions",
        "v3",
        "-out",
        text(&cert),
    ]);
    let verifier = trust::verifier(&certs());
    let check = |bytes: &[u8]| {
        let package =
            lienthong::edxml::read(bytes, &Default::default(), &mut lienthong::edxml::Discard)
                .expect("reads");
        lienthong::edxml::verify_signature(bytes, &package, &verifier, &|_| None, false)
            .expect("signed")
    };

    // xmlsec1 signs with ECDSA.
    let mut doc = Doc::new(DEPARTMENT, &[DISTRICT], 700);
    doc.template = Template::Dsig {
        exclusive: true,
        sha1: false,
    };
    let template = String::from_utf8(edxml::package(&doc))
        .expect("UTF-8")
        .replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        );
    let template = edxml::write(dir.path(), "ec-template.edxml", template.as_bytes());
    let signed = dir.path().join("ec-signed.edxml");
    let pair = format!("{},{}", key.display(), cert.display());
    let out = std::process::Command::new("xmlsec1")
        .args([
            "--sign",
            "--privkey-pem",
            &pair,
            "--output",
            text(&signed),
            text(&template),
        ])
        .output()
        .expect("xmlsec1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = check(&std::fs::read(&signed).expect("signed"));
    assert!(report.passed(), "{}: {:?}", report.message, report.checks);
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "algorithms" && c.detail.contains("EC-256")),
        "{:?}",
        report.checks
    );

    // The gateway's signing code with the EC key; xmlsec1 verifies.
    doc.template = Template::None;
    let unsigned = edxml::package(&doc);
    let signing_key = lienthong::pki::signing_key_from_pem(
        &std::fs::read(&cert).expect("cert"),
        &std::fs::read(&key).expect("key"),
        None,
    )
    .expect("EC key");
    let package = lienthong::edxml::read(
        &unsigned,
        &Default::default(),
        &mut lienthong::edxml::Discard,
    )
    .expect("reads");
    let insertion = lienthong::edxml::sign(&unsigned, &package, &signing_key).expect("signs");
    assert!(
        insertion.element.contains("ecdsa-sha256"),
        "{}",
        insertion.element
    );
    let ours = insertion.apply(&unsigned);
    let path = edxml::write(dir.path(), "ec-ours.edxml", &ours);
    edxml::xmlsec1_verify(&path).expect("xmlsec1 verifies our ECDSA signature");
    assert!(check(&ours).passed());
    // One byte of the value changed: both refuse it.
    let text_of = String::from_utf8(ours).expect("UTF-8");
    let value_at = text_of.find("<ds:SignatureValue>").expect("value") + 20;
    let mut broken = text_of.into_bytes();
    broken[value_at] = if broken[value_at] == b'A' { b'B' } else { b'A' };
    let path = edxml::write(dir.path(), "ec-broken.edxml", &broken);
    assert!(
        edxml::xmlsec1_verify(&path).is_err(),
        "xmlsec1 refuses a changed value"
    );
    let report = check(&broken);
    assert_eq!(
        report.sub_indication,
        Some(lienthong::pki::SubIndication::SigCryptoFailure),
        "{}",
        report.message
    );
}
