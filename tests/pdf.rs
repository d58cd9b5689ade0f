//! Signatures inside PDFs (PAdES, NĐ 30/2020), judged by independent
//! implementations: pyHanko signs and seals and the gateway verifies and
//! applies the `cong-van` policy; the gateway signs and pyHanko and
//! poppler's pdfsig verify. Modifications after signing and the PDF attack
//! classes (incremental saving, signature wrapping, shadow attacks) are
//! refused or flagged, and judged against pyHanko too.
//!
//! Needs pyHanko (`pyhanko`, `pyhanko-cli` in the venv `scripts/test`
//! makes, found beside LIENTHONG_PYTHON), `pdfsig` (poppler-utils) and
//! `certutil` (libnss3-tools, for pdfsig's trust database).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{pdfs, *};
use lienthong::proto;
use tonic::Code;

/// The pyHanko command of the test venv, or `None` (outside CI: skip).
fn pyhanko() -> Option<PathBuf> {
    let python = std::env::var("LIENTHONG_PYTHON").ok().map(PathBuf::from);
    let candidate = python
        .as_deref()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("pyhanko"), |bin| bin.join("pyhanko"));
    let usable = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let pdfsig = Command::new("pdfsig").arg("-v").output().is_ok();
    let certutil = Command::new("certutil").arg("-H").output().is_ok();
    if usable && pdfsig && certutil {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the PDF tests: pyhanko (venv of scripts/test, LIENTHONG_PYTHON), pdfsig (poppler-utils) and certutil (libnss3-tools) are needed"
    );
    eprintln!("SKIPPED: pyhanko, pdfsig or certutil missing; run `scripts/test`");
    None
}

/// pyHanko adds a PAdES signature in a new field (`identity` is a
/// certs-test signer, e.g. `signers/department-head`).
fn pyhanko_sign(pyhanko: &Path, input: &Path, output: &Path, field: &str, identity: &str) {
    let base = certs().join(identity);
    let out = Command::new(pyhanko)
        .args([
            "sign",
            "addsig",
            "--field",
            field,
            "--use-pades",
            "pemder",
            "--key",
        ])
        .arg(base.with_extension("key"))
        .arg("--cert")
        .arg(base.with_extension("crt"))
        .arg("--chain")
        .arg(certs().join("ca/agency-ca.crt"))
        .arg("--no-pass")
        .arg(input)
        .arg(output)
        .output()
        .expect("pyhanko runs");
    assert!(
        out.status.success(),
        "pyhanko sign addsig {field}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `base` into `dir` and has pyHanko sign it as the department's
/// head in field ChuKyLanhDao: the path of the signed file.
fn pyhanko_head(pyhanko: &Path, dir: &Path, base: &[u8]) -> PathBuf {
    let (input, head) = (dir.join("base.pdf"), dir.join("head.pdf"));
    std::fs::write(&input, base).expect("write");
    pyhanko_sign(
        pyhanko,
        &input,
        &head,
        "ChuKyLanhDao",
        "signers/department-head",
    );
    head
}

/// pyHanko's one-line verdicts, `FIELD:SHA256:INTACT:TRUSTED,UNTOUCHED`.
fn pyhanko_validate(pyhanko: &Path, file: &Path) -> String {
    let out = Command::new(pyhanko)
        .args(["sign", "validate", "--trust"])
        .arg(certs().join("ca/root.crt"))
        .arg("--trust-replace")
        .arg("--other-certs")
        .arg(certs().join("ca/agency-ca.crt"))
        .arg("--no-revocation-check")
        .arg(file)
        .output()
        .expect("pyhanko runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The verdict pyHanko gives a field.
fn pyhanko_verdict<'a>(all: &'a str, field: &str) -> &'a str {
    all.lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("pyHanko says nothing of {field}: {all}"))
}

/// pdfsig's report, with a trust database holding the test root.
fn pdfsig(file: &Path) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sql:{}", dir.path().display());
    let ok = |mut command: Command| {
        let out = command.output().expect("certutil runs");
        assert!(
            out.status.success(),
            "certutil: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut init = Command::new("certutil");
    init.args(["-N", "-d", &db, "--empty-password"]);
    ok(init);
    let mut root = Command::new("certutil");
    root.args(["-A", "-d", &db, "-n", "root", "-t", "CT,C,C", "-i"])
        .arg(certs().join("ca/root.crt"));
    ok(root);
    let mut agency = Command::new("certutil");
    agency
        .args(["-A", "-d", &db, "-n", "agency", "-t", ",,", "-i"])
        .arg(certs().join("ca/agency-ca.crt"));
    ok(agency);
    let out = Command::new("pdfsig")
        .args(["-nssdir", &db])
        .arg(file)
        .output()
        .expect("pdfsig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The two base documents of every test.
fn bases() -> [(&'static str, Vec<u8>); 2] {
    [
        ("hand-written", pdfs::hand_written(0)),
        ("xref-stream", pdfs::with_xref_stream()),
    ]
}

/// Signing.Verify over a PDF: the reports of its embedded signatures.
async fn verify(server: &TestServer, pdf: &[u8]) -> Vec<proto::VerificationReport> {
    let mut signing = proto::signing_client::SigningClient::new(server.channel("department").await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    signing
        .verify(proto::VerifyRequest {
            content: pdf.to_vec(),
            cms_der: Vec::new(),
            attachment: "cong-van.pdf".into(),
        })
        .await
        .expect("verify")
        .into_inner()
        .reports
}

fn passed(report: &proto::VerificationReport) -> bool {
    report.indication == proto::Indication::TotalPassed as i32
}

fn field(report: &proto::VerificationReport) -> (String, u32) {
    let place = report.embedded.clone().expect("an embedded signature");
    (place.field, place.revision)
}

/// A công văn from the department to the district: the PDF only, no
/// detached signature.
fn cong_van(message_id: &str, pdf: &[u8]) -> proto::Envelope {
    let mut envelope = unsigned_envelope(message_id, DEPARTMENT, &[DISTRICT], pdf);
    if let Some(document) = envelope.document.as_mut() {
        document.r#type = "cong-van".into();
    }
    envelope.attachments[0].name = "cong-van.pdf".into();
    envelope
}

/// Sends an envelope with SendStream: the envelope with each attachment's
/// size, then its content in 4 KiB chunks.
async fn send_streamed(
    client: &mut proto::exchange_client::ExchangeClient<tonic::transport::Channel>,
    mut envelope: proto::Envelope,
) -> Result<proto::Receipt, tonic::Status> {
    use proto::send_stream_request::Part;
    let contents: Vec<(String, Vec<u8>)> = envelope
        .attachments
        .iter_mut()
        .map(|a| {
            a.size = a.content.len() as u64;
            (a.name.clone(), std::mem::take(&mut a.content))
        })
        .collect();
    let mut requests = vec![proto::SendStreamRequest {
        part: Some(Part::Envelope(envelope)),
    }];
    for (name, data) in contents {
        for chunk in data.chunks(4096) {
            requests.push(proto::SendStreamRequest {
                part: Some(Part::Chunk(proto::ContentChunk {
                    attachment: name.clone(),
                    data: chunk.to_vec(),
                })),
            });
        }
    }
    let response = client.send_stream(tokio_stream::iter(requests)).await?;
    Ok(response.into_inner().receipt.expect("receipt"))
}

/// pyHanko head then seal, on both bases (the second sent by SendStream): the gateway verifies both
/// TOTAL_PASSED with their fields and revisions, the `cong-van` policy is
/// satisfied, and the district receives the PDF byte for byte with the
/// reports.
#[tokio::test]
async fn pyhanko_head_then_seal_passes_cong_van() {
    let Some(pyhanko) = pyhanko() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let mut department = server.exchange("department").await;
    let mut district = server.exchange("district").await;
    for (index, (kind, base)) in bases().into_iter().enumerate() {
        let (input, head, both) = (
            dir.path().join(format!("{kind}.pdf")),
            dir.path().join(format!("{kind}-head.pdf")),
            dir.path().join(format!("{kind}-both.pdf")),
        );
        std::fs::write(&input, &base).expect("write");
        pyhanko_sign(
            &pyhanko,
            &input,
            &head,
            "ChuKyLanhDao",
            "signers/department-head",
        );
        pyhanko_sign(
            &pyhanko,
            &head,
            &both,
            "DauCoQuan",
            "signers/department-organization",
        );
        let pdf = std::fs::read(&both).expect("read");
        let reports = verify(&server, &pdf).await;
        assert_eq!(reports.len(), 2, "{kind}: {reports:#?}");
        assert!(reports.iter().all(passed), "{kind}: {reports:#?}");
        assert_eq!(field(&reports[0]), ("ChuKyLanhDao".into(), 2), "{kind}");
        assert_eq!(field(&reports[1]), ("DauCoQuan".into(), 3), "{kind}");
        let roles: Vec<i32> = reports
            .iter()
            .map(|r| r.signer.clone().expect("signer").role)
            .collect();
        assert_eq!(
            roles,
            [
                proto::SignerRole::Head as i32,
                proto::SignerRole::Organization as i32
            ]
        );
        // The xref-stream one goes by SendStream: staged on disk, its
        // signatures read from the staged file.
        let envelope = cong_van(&format!("CV-{index}"), &pdf);
        let sent = if index == 0 {
            send(&mut department, envelope).await
        } else {
            send_streamed(&mut department, envelope).await
        };
        let receipt = sent.unwrap_or_else(|status| panic!("{kind}: cong-van refused: {status:?}"));
        assert!(!receipt.message_id.is_empty());
        let delivery = drain(&mut district).await.pop().expect("delivered");
        let received = envelope_of(&delivery);
        assert_eq!(
            received.attachments[0].content, pdf,
            "{kind}: byte for byte"
        );
        assert_eq!(delivery.reports.len(), 2, "{kind}");
        assert!(delivery.reports.iter().all(passed), "{kind}");
        ack(&mut district, &delivery).await;
    }
    server.stop().await;
}

/// The seal first, then the head: each signature is valid, but the policy
/// refuses the order and says what it found.
#[tokio::test]
async fn seal_before_head_is_refused_naming_the_order() {
    let Some(pyhanko) = pyhanko() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let (input, seal, both) = (
        dir.path().join("base.pdf"),
        dir.path().join("seal.pdf"),
        dir.path().join("both.pdf"),
    );
    std::fs::write(&input, pdfs::hand_written(0)).expect("write");
    pyhanko_sign(
        &pyhanko,
        &input,
        &seal,
        "DauCoQuan",
        "signers/department-organization",
    );
    pyhanko_sign(
        &pyhanko,
        &seal,
        &both,
        "ChuKyLanhDao",
        "signers/department-head",
    );
    let pdf = std::fs::read(&both).expect("read");
    assert!(verify(&server, &pdf).await.iter().all(passed));
    let mut department = server.exchange("department").await;
    let refused = send(&mut department, cong_van("CV-ORDER", &pdf))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(
        message.contains("head, then organization")
            && message.contains("organization at revision 2, head at revision 3"),
        "{message}"
    );
    server.stop().await;
}

/// One byte changed inside a signed range: HASH_FAILURE for every
/// signature covering it; pyHanko agrees the signature is broken.
#[tokio::test]
async fn a_flipped_byte_is_a_hash_failure() {
    let Some(pyhanko) = pyhanko() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let head = pyhanko_head(&pyhanko, dir.path(), &pdfs::hand_written(0));
    let mut pdf = std::fs::read(&head).expect("read");
    assert!(verify(&server, &pdf).await.iter().all(passed), "control");
    let at = pdf.windows(3).position(|w| w == b"123").expect("the text");
    pdf[at] = b'7';
    let flipped = dir.path().join("flipped.pdf");
    std::fs::write(&flipped, &pdf).expect("write");
    let reports = verify(&server, &pdf).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].sub_indication,
        proto::SubIndication::HashFailure as i32,
        "{:#?}",
        reports[0]
    );
    assert_eq!(reports[0].indication, proto::Indication::TotalFailed as i32);
    let pyhanko_says = pyhanko_validate(&pyhanko, &flipped);
    assert!(
        !pyhanko_verdict(&pyhanko_says, "ChuKyLanhDao").contains("INTACT"),
        "{pyhanko_says}"
    );
    server.stop().await;
}

/// What must be flagged after a signature: new page content, a new
/// annotation, content hidden at signing and revealed later (shadow
/// attack). Each is named with its object, and pyHanko calls each
/// illegal; a further signature alone is not.
#[tokio::test]
async fn changes_after_signing_are_named_and_pyhanko_agrees() {
    let Some(pyhanko) = pyhanko() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    // The hidden overlay: in the signed revision, but drawn by no page.
    let hidden = b"BT /F1 18 Tf 72 690 Td (So tien: 900.000.000 dong) Tj ET";
    let mut base = pdfs::hand_written(0);
    base = pdfs::append_update(
        &base,
        &[(
            7,
            format!(
                "<< /Length {} >>\nstream\n{}\nendstream",
                hidden.len(),
                String::from_utf8_lossy(hidden)
            )
            .into_bytes(),
        )],
    );
    let head = pyhanko_head(&pyhanko, dir.path(), &base);
    let signed = std::fs::read(&head).expect("read");
    let page = String::from_utf8(pdfs::object_body(&signed, 3)).expect("page");
    let next = pdfs::next_object(&signed);
    let new_text = b"BT /F1 18 Tf 72 720 Td (Cong van so 999/UBND-VP) Tj ET";
    // (case, the update's objects, what the report must name)
    type Case<'a> = (&'a str, Vec<(u32, Vec<u8>)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "page content replaced",
            vec![(
                4,
                format!(
                    "<< /Length {} >>\nstream\n{}\nendstream",
                    new_text.len(),
                    String::from_utf8_lossy(new_text)
                )
                .into_bytes(),
            )],
            "the content of page 1 (object 4 0) was changed",
        ),
        (
            // The trailer names the page content as the document
            // information, whose updates are otherwise allowed.
            "page content replaced as the document information",
            vec![(
                4,
                format!(
                    "<< /Length {} >>\nstream\n{}\nendstream",
                    new_text.len(),
                    String::from_utf8_lossy(new_text)
                )
                .into_bytes(),
            )],
            "the content of page 1 (object 4 0) was changed",
        ),
        (
            "annotation added",
            vec![
                (
                    next,
                    b"<< /Type /Annot /Subtype /Text /Rect [72 600 92 620] /Contents (Da duyet) >>"
                        .to_vec(),
                ),
                (
                    3,
                    page.replace("/Annots [", &format!("/Annots [ {next} 0 R"))
                        .into_bytes(),
                ),
            ],
            "an annotation /Text",
        ),
        (
            "hidden content revealed (shadow attack)",
            vec![(
                3,
                page.replace("/Contents 4 0 R", "/Contents [4 0 R 7 0 R]")
                    .into_bytes(),
            )],
            "page 1 (object 3 0): its /Contents changed",
        ),
    ];
    for (case, objects, named) in cases {
        let mut changed = pdfs::append_update(&signed, &objects);
        if case.contains("document information") {
            let trailer = changed
                .windows(12)
                .rposition(|w| w == b"/Root 1 0 R ")
                .expect("the new trailer");
            changed.splice(
                trailer..trailer + 12,
                b"/Root 1 0 R /Info 4 0 R ".iter().copied(),
            );
        }
        let file = dir.path().join(format!("{}.pdf", case.replace(' ', "-")));
        std::fs::write(&file, &changed).expect("write");
        let reports = verify(&server, &changed).await;
        assert_eq!(reports.len(), 1, "{case}");
        let report = &reports[0];
        assert_eq!(
            report.indication,
            proto::Indication::TotalFailed as i32,
            "{case}: {report:#?}"
        );
        assert!(
            report.message.contains("modified after signing") && report.message.contains(named),
            "{case}: {}",
            report.message
        );
        let pyhanko_says = pyhanko_validate(&pyhanko, &file);
        let verdict = pyhanko_verdict(&pyhanko_says, "ChuKyLanhDao");
        assert!(
            verdict.contains("ILLEGAL_MODIFICATIONS") || !verdict.contains("INTACT"),
            "{case}: pyHanko: {verdict}"
        );
    }
    // The control: a seal alone after the head is no modification.
    let sealed = dir.path().join("sealed.pdf");
    pyhanko_sign(
        &pyhanko,
        &head,
        &sealed,
        "DauCoQuan",
        "signers/department-organization",
    );
    let reports = verify(&server, &std::fs::read(&sealed).expect("read")).await;
    assert!(reports.iter().all(passed), "{reports:#?}");
    server.stop().await;
}

/// Signature wrapping: a byte range whose hole holds more than the
/// signature's /Contents (an object hidden in the unsigned hole), and a
/// signature dictionary rewritten later whose byte range points at the
/// earlier /Contents. Both refused with FORMAT_FAILURE; the same hand-made
/// signature without the injection passes (the construction is sound).
#[tokio::test]
async fn signature_wrapping_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(&dir.path().join("data")).await;
    let signer = certs().join("signers/department-head");
    let agency_ca = certs().join("ca/agency-ca.crt");
    let base = pdfs::hand_written(0);
    let honest = pdfs::hand_signed(&base, &signer, &agency_ca, b"");
    let reports = verify(&server, &honest).await;
    assert!(
        reports.iter().all(passed) && reports.len() == 1,
        "{reports:#?}"
    );

    let injected = pdfs::hand_signed(
        &base,
        &signer,
        &agency_ca,
        b" /Annots [ 3 0 R ] /Hidden <00>",
    );
    let reports = verify(&server, &injected).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].sub_indication,
        proto::SubIndication::FormatFailure as i32
    );
    assert!(
        reports[0]
            .message
            .contains("holds more than the hex /Contents"),
        "{}",
        reports[0].message
    );

    // The signature dictionary written again after the signed revision,
    // its byte range still naming the old hole.
    let sig = pdfs::next_object(&base);
    let body = pdfs::object_body(&honest, sig);
    let rewrapped = pdfs::append_update(&honest, &[(sig, body)]);
    let reports = verify(&server, &rewrapped).await;
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].sub_indication,
        proto::SubIndication::FormatFailure as i32
    );
    assert!(
        reports[0].message.contains("signature wrapping"),
        "{}",
        reports[0].message
    );
    server.stop().await;
}

/// The shipped configuration with a keystore passphrase, so that keys can
/// be imported.
fn keystore_config(data: &Path) -> lienthong::config::Config {
    let mut config = config(data);
    config.keystore.passphrase = lienthong::pki::Passphrase::new(b"pdf test passphrase".to_vec());
    config
}

/// A certification signature allowing no change (DocMDP P=1): valid
/// alone; a signature field added after it is a modification for it; the
/// gateway refuses to sign such a document.
#[tokio::test]
async fn a_certification_without_changes_allows_no_later_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(keystore_config(&dir.path().join("data"))).await;
    let base = pdfs::hand_written(0);
    let certified = pdfs::hand_signed_as(
        &base,
        &certs().join("signers/department-head"),
        &certs().join("ca/agency-ca.crt"),
        b"",
        true,
    );
    let reports = verify(&server, &certified).await;
    assert!(reports.len() == 1 && passed(&reports[0]), "{reports:#?}");

    // An empty signature field added afterwards, for someone to sign.
    let next = pdfs::next_object(&certified);
    let field = pdfs::next_object(&base) + 1;
    let later = pdfs::append_update(
        &certified,
        &[
            (
                next,
                b"<< /FT /Sig /T (Later) /Type /Annot /Subtype /Widget /Rect [0 0 0 0] /P 3 0 R >>"
                    .to_vec(),
            ),
            (
                1,
                format!(
                    "<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [{field} 0 R {next} 0 R] /SigFlags 3 >> /Perms << /DocMDP {} 0 R >> >>",
                    field - 1
                )
                .into_bytes(),
            ),
        ],
    );
    let reports = verify(&server, &later).await;
    assert_eq!(reports.len(), 1);
    assert!(
        reports[0].message.contains("allows no change (DocMDP P=1)")
            && reports[0]
                .message
                .contains("signature field \"Later\" was added"),
        "{}",
        reports[0].message
    );

    import_key(
        &server,
        proto::SignerRole::Organization,
        "signers/department-organization",
    )
    .await;
    let mut signing = proto::signing_client::SigningClient::new(server.channel("department").await);
    let status = sign_pdf(
        &mut signing,
        organization_options(certified.len() as u64),
        &certified,
    )
    .await
    .expect_err("certified with no changes allowed");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("DocMDP P=1"), "{status:?}");
    server.stop().await;
}

/// The department's organization key, for SignPdf.
fn organization_options(size: u64) -> proto::SignPdfOptions {
    proto::SignPdfOptions {
        key: Some(proto::KeyRef {
            agency: DEPARTMENT.into(),
            role: proto::SignerRole::Organization as i32,
        }),
        size,
        ..Default::default()
    }
}

/// One SignPdf call: the options, then the PDF in 100-byte chunks; the
/// signed PDF, or the status it ended with (at once or part way).
async fn sign_pdf(
    signing: &mut proto::signing_client::SigningClient<tonic::transport::Channel>,
    options: proto::SignPdfOptions,
    pdf: &[u8],
) -> Result<Vec<u8>, tonic::Status> {
    let messages = std::iter::once(proto::SignPdfRequest {
        part: Some(proto::sign_pdf_request::Part::Options(options)),
    })
    .chain(pdf.chunks(100).map(|chunk| proto::SignPdfRequest {
        part: Some(proto::sign_pdf_request::Part::Chunk(chunk.to_vec())),
    }))
    .collect::<Vec<_>>();
    let mut answer = signing
        .sign_pdf(tokio_stream::iter(messages))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(message) = answer.message().await? {
        if let Some(proto::sign_pdf_response::Part::Chunk(chunk)) = message.part {
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

async fn import_key(server: &TestServer, role: proto::SignerRole, file: &str) {
    let base = certs().join(file);
    server
        .admin("admin")
        .await
        .import_key(proto::ImportKeyRequest {
            key: Some(proto::KeyRef {
                agency: DEPARTMENT.into(),
                role: role as i32,
            }),
            certificate_pem: std::fs::read_to_string(base.with_extension("crt")).expect("cert"),
            private_key_pem: std::fs::read_to_string(base.with_extension("key")).expect("key"),
        })
        .await
        .expect("import key");
}

/// A small PNG (a red disc with transparency), made here.
fn seal_png() -> Vec<u8> {
    let (width, height) = (48u32, 48u32);
    let mut pixels = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let (dx, dy) = (x as i32 - 24, y as i32 - 24);
            let inside = dx * dx + dy * dy < 22 * 22;
            pixels.extend_from_slice(&[200, 16, 16, if inside { 255 } else { 0 }]);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("png header");
        writer.write_image_data(&pixels).expect("png data");
    }
    out
}

/// The gateway signs (with `lienthong pdf sign`, visible seal, on both
/// bases): pyHanko says INTACT:TRUSTED,UNTOUCHED and pdfsig that the
/// signature is valid and trusted; pyHanko then seals over it and both
/// signatures stay valid in both tools and in the gateway. A head
/// signature made elsewhere (pyHanko) sealed by the gateway satisfies
/// `cong-van`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_signatures_satisfy_pyhanko_and_pdfsig() {
    let Some(pyhanko) = pyhanko() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(keystore_config(&dir.path().join("data"))).await;
    import_key(
        &server,
        proto::SignerRole::Organization,
        "signers/department-organization",
    )
    .await;
    import_key(&server, proto::SignerRole::Head, "signers/department-head").await;
    let addr = server.addr.to_string();
    let image = dir.path().join("seal.png");
    std::fs::write(&image, seal_png()).expect("png");
    for (kind, base) in bases() {
        let (input, ours, theirs) = (
            dir.path().join(format!("{kind}.pdf")),
            dir.path().join(format!("{kind}-ours.pdf")),
            dir.path().join(format!("{kind}-then-pyhanko.pdf")),
        );
        std::fs::write(&input, &base).expect("write");
        let output = run_cli(
            &[
                "pdf",
                "sign",
                "--role",
                "head",
                "--in",
                input.to_str().expect("path"),
                "--out",
                ours.to_str().expect("path"),
                "--field",
                "ChuKyLanhDao",
                "--image",
                image.to_str().expect("path"),
                "--page",
                "1",
                "--rect",
                "380,80,500,200",
                "--reason",
                "Ký ban hành",
            ],
            "department",
            &addr,
        );
        let printed = stdout_of(&output, "lienthong pdf sign");
        assert!(
            printed.contains("signed field \"ChuKyLanhDao\" (revision 2)"),
            "{printed}"
        );
        let verdicts = pyhanko_validate(&pyhanko, &ours);
        assert!(
            pyhanko_verdict(&verdicts, "ChuKyLanhDao").ends_with("INTACT:TRUSTED,UNTOUCHED"),
            "{kind}: {verdicts}"
        );
        let poppler = pdfsig(&ours);
        assert!(
            poppler.contains("Signature is Valid.") && poppler.contains("Certificate is Trusted."),
            "{kind}: {poppler}"
        );
        pyhanko_sign(
            &pyhanko,
            &ours,
            &theirs,
            "DauCoQuan",
            "signers/department-organization",
        );
        let verdicts = pyhanko_validate(&pyhanko, &theirs);
        assert!(
            pyhanko_verdict(&verdicts, "ChuKyLanhDao").contains("INTACT:TRUSTED")
                && !pyhanko_verdict(&verdicts, "ChuKyLanhDao").contains("ILLEGAL")
                && pyhanko_verdict(&verdicts, "DauCoQuan").ends_with("INTACT:TRUSTED,UNTOUCHED"),
            "{kind}: {verdicts}"
        );
        let poppler = pdfsig(&theirs);
        assert_eq!(
            poppler.matches("Signature is Valid.").count(),
            2,
            "{kind}: {poppler}"
        );
        let reports = verify(&server, &std::fs::read(&theirs).expect("read")).await;
        assert!(
            reports.len() == 2 && reports.iter().all(passed),
            "{kind}: {reports:#?}"
        );
        let offline = Command::new(BIN)
            .args(["pdf", "verify"])
            .arg(&theirs)
            .arg("--trust")
            .arg(certs().join("ca/root.crt"))
            .arg(certs().join("ca/agency-ca.crt"))
            .arg("--crl")
            .arg(certs().join("ca/agency-ca.crl"))
            .arg(certs().join("ca/root.crl"))
            .output()
            .expect("lienthong pdf verify");
        let printed = stdout_of(&offline, "lienthong pdf verify");
        assert_eq!(printed.matches(": TOTAL_PASSED").count(), 2, "{printed}");
        assert!(
            printed.contains("field     DauCoQuan (revision 3 of 3, the whole document)"),
            "{printed}"
        );
    }

    // NĐ 30 across two systems: the head signs elsewhere, the gateway seals.
    let (input, head, sealed) = (
        dir.path().join("elsewhere.pdf"),
        dir.path().join("elsewhere-head.pdf"),
        dir.path().join("elsewhere-sealed.pdf"),
    );
    std::fs::write(&input, pdfs::hand_written(0)).expect("write");
    pyhanko_sign(
        &pyhanko,
        &input,
        &head,
        "ChuKyLanhDao",
        "signers/department-head",
    );
    let output = run_cli(
        &[
            "pdf",
            "sign",
            "--role",
            "organization",
            "--in",
            head.to_str().expect("path"),
            "--out",
            sealed.to_str().expect("path"),
        ],
        "department",
        &addr,
    );
    stdout_of(&output, "lienthong pdf sign (seal)");
    let verdicts = pyhanko_validate(&pyhanko, &sealed);
    assert!(
        !pyhanko_verdict(&verdicts, "ChuKyLanhDao").contains("ILLEGAL")
            && pyhanko_verdict(&verdicts, "Signature1").ends_with("INTACT:TRUSTED,UNTOUCHED"),
        "{verdicts}"
    );
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        cong_van("CV-SEALED", &std::fs::read(&sealed).expect("read")),
    )
    .await
    .expect("head elsewhere, seal by the gateway: cong-van accepted");
    server.stop().await;
}

/// Bad input to SignPdf (9 cases) and to PDF verification: each a clear code, and
/// nothing left in the staging area.
#[tokio::test]
async fn bad_pdf_input_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = TestServer::start_with(keystore_config(&data)).await;
    import_key(
        &server,
        proto::SignerRole::Organization,
        "signers/department-organization",
    )
    .await;
    let mut signing = proto::signing_client::SigningClient::new(server.channel("department").await);
    let base = pdfs::hand_written(0);
    let options = organization_options;
    let certified_not = b"%PDF-1.7\nthis is not a PDF at all\n%%EOF\n".to_vec();
    let cases: Vec<(&str, proto::SignPdfOptions, Vec<u8>, Code)> = vec![
        (
            "not a PDF",
            options(certified_not.len() as u64),
            certified_not.clone(),
            Code::InvalidArgument,
        ),
        (
            "size not declared",
            options(0),
            base.clone(),
            Code::InvalidArgument,
        ),
        (
            "more than declared",
            options(10),
            base.clone(),
            Code::InvalidArgument,
        ),
        (
            "less than declared",
            options(base.len() as u64 + 10),
            base.clone(),
            Code::Cancelled,
        ),
        (
            "bytes before the header",
            options(base.len() as u64 + 6),
            [b"JUNK\r\n".as_slice(), &base].concat(),
            Code::FailedPrecondition,
        ),
        (
            "a broken PNG",
            proto::SignPdfOptions {
                appearance: Some(proto::PdfAppearance {
                    png: b"\x89PNG not really".to_vec(),
                    page: 1,
                    rect: vec![10.0, 10.0, 60.0, 60.0],
                }),
                ..options(base.len() as u64)
            },
            base.clone(),
            Code::InvalidArgument,
        ),
        (
            "a page the document lacks",
            proto::SignPdfOptions {
                appearance: Some(proto::PdfAppearance {
                    png: seal_png(),
                    page: 9,
                    rect: vec![10.0, 10.0, 60.0, 60.0],
                }),
                ..options(base.len() as u64)
            },
            base.clone(),
            Code::FailedPrecondition,
        ),
        (
            "a rectangle of three numbers",
            proto::SignPdfOptions {
                appearance: Some(proto::PdfAppearance {
                    png: seal_png(),
                    page: 1,
                    rect: vec![10.0, 10.0, 60.0],
                }),
                ..options(base.len() as u64)
            },
            base.clone(),
            Code::InvalidArgument,
        ),
        (
            "a key the gateway does not hold",
            proto::SignPdfOptions {
                key: Some(proto::KeyRef {
                    agency: DEPARTMENT.into(),
                    role: proto::SignerRole::ChiefAccountant as i32,
                }),
                ..options(base.len() as u64)
            },
            base.clone(),
            Code::NotFound,
        ),
    ];
    for (case, options, pdf, code) in cases {
        let status = sign_pdf(&mut signing, options, &pdf).await.expect_err(case);
        assert_eq!(status.code(), code, "{case}: {status:?}");
        println!(
            "bad input: SignPdf {case}: {:?}: {}",
            status.code(),
            status.message()
        );
    }
    // A second field of the same name.
    let seal = |size| proto::SignPdfOptions {
        field: "Seal".into(),
        ..options(size)
    };
    let signed = sign_pdf(&mut signing, seal(base.len() as u64), &base)
        .await
        .expect("sign");
    assert!(
        signed.starts_with(&base),
        "the original bytes come first, unchanged"
    );
    let status = sign_pdf(&mut signing, seal(signed.len() as u64), &signed)
        .await
        .expect_err("a field of that name exists");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("already has a field named \"Seal\""),
        "{status:?}"
    );

    // Verify: a PDF without signatures, and garbage that claims to be one.
    let status = signing
        .verify(proto::VerifyRequest {
            content: base.clone(),
            ..Default::default()
        })
        .await
        .expect_err("nothing to verify");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("no embedded signature"),
        "{status:?}"
    );
    let status = signing
        .verify(proto::VerifyRequest {
            content: b"%PDF-1.7\ngarbage".to_vec(),
            ..Default::default()
        })
        .await
        .expect_err("unreadable");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("not a readable PDF"),
        "{status:?}"
    );

    // A công văn whose signed PDF is damaged: refused, its report saying
    // the signature cannot be checked.
    let mut department = server.exchange("department").await;
    let status = send(
        &mut department,
        cong_van(
            "CV-BROKEN",
            b"%PDF-1.7\n1 0 obj << /ByteRange [0 1 2 3] /Contents <00",
        ),
    )
    .await
    .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("1 signature(s) did not pass"),
        "{status:?}"
    );
    server.stop().await;
    let staging = staging_files(&data);
    assert!(staging.is_empty(), "staging files left behind: {staging:?}");
}
