//! Every refused request gets its precise code, names what was wrong, and
//! leaves the store exactly as it was.

mod common;

use common::*;
use lienthong::proto::{self, send_stream_request::Part};
use tonic::Code;

fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    mentions: &str,
    case: &str,
) {
    let status = result.expect_err(case);
    // One line per case, for RELIABILITY.md (scripts/reliability).
    let line = format!("bad input: {case}: {:?}\n", status.code());
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    assert_eq!(status.code(), code, "{case}: {status:?}");
    assert!(
        status.message().contains(mentions),
        "{case}: message {:?} should mention {mentions:?}",
        status.message()
    );
}

#[tokio::test]
async fn bad_requests_are_refused_precisely_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An accepted message first, so that reusing its id can be tried.
    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;
    send(
        &mut department,
        envelope("taken", DEPARTMENT, &[DISTRICT], b"original"),
    )
    .await
    .expect("send");
    // A delivery id of the district's, leased now: leasing records the attempt.
    let mut district = server.exchange("district").await;
    let deliveries = drain(&mut district).await;
    assert_eq!(deliveries.len(), 1);
    drop((department, district));
    server.stop().await;
    let before = snapshot(dir.path());

    let server = TestServer::start(dir.path()).await;
    let mut department = server.exchange("department").await;

    // Who is calling.
    let anonymous = connect(server.addr, None)
        .await
        .expect("TLS without a client certificate");
    let mut anonymous = proto::exchange_client::ExchangeClient::new(anonymous);
    assert_status(
        send(
            &mut anonymous,
            envelope("a1", DEPARTMENT, &[DISTRICT], b"x"),
        )
        .await,
        Code::Unauthenticated,
        "client certificate",
        "no client certificate",
    );
    let mut unregistered = server.exchange("unregistered").await;
    assert_status(
        send(
            &mut unregistered,
            envelope("a2", "000.00.99.H56", &[DISTRICT], b"x"),
        )
        .await,
        Code::Unauthenticated,
        "not registered",
        "unregistered certificate",
    );
    assert!(
        connect(server.addr, Some("self-signed")).await.is_err()
            || send(
                &mut server.exchange("self-signed").await,
                envelope("a3", DEPARTMENT, &[DISTRICT], b"x")
            )
            .await
            .is_err(),
        "a certificate outside the client CA must not get through"
    );
    assert_status(
        send(
            &mut department,
            envelope("a4", DISTRICT, &[COMMUNE_A], b"x"),
        )
        .await,
        Code::PermissionDenied,
        "envelope.from",
        "acting for another agency",
    );
    let mut agency_as_admin = server.admin("district").await;
    assert_status(
        agency_as_admin
            .list_agencies(proto::ListAgenciesRequest {})
            .await,
        Code::PermissionDenied,
        "admin",
        "Admin without an admin certificate",
    );

    // What is sent.
    let cases: Vec<(&str, proto::Envelope, Code, &str)> = vec![
        (
            "bad org code",
            envelope("b1", DEPARTMENT, &["000.00.31"], b"x"),
            Code::InvalidArgument,
            "envelope.to[0]",
        ),
        (
            "unknown recipient",
            envelope("b2", DEPARTMENT, &[DISTRICT, "000.00.77.H56"], b"x"),
            Code::InvalidArgument,
            "envelope.to[1]",
        ),
        (
            "no recipients",
            envelope("b3", DEPARTMENT, &[], b"x"),
            Code::InvalidArgument,
            "envelope.to",
        ),
        (
            "no message id",
            envelope("", DEPARTMENT, &[DISTRICT], b"x"),
            Code::InvalidArgument,
            "envelope.message_id",
        ),
        (
            "over the size limit",
            envelope(
                "b5",
                DEPARTMENT,
                &[DISTRICT],
                &vec![0u8; 16 * 1024 * 1024 + 1],
            ),
            Code::ResourceExhausted,
            "envelope.attachments",
        ),
        (
            "same id, other content",
            envelope("taken", DEPARTMENT, &[DISTRICT], b"different"),
            Code::AlreadyExists,
            "taken",
        ),
        (
            "attachment name that escapes a directory",
            {
                let mut e = envelope("b7", DEPARTMENT, &[DISTRICT], b"x");
                e.attachments[0].name = "..".into();
                e
            },
            Code::InvalidArgument,
            "envelope.attachments[0].name",
        ),
    ];
    for (case, envelope, code, mentions) in cases {
        assert_status(send(&mut department, envelope).await, code, mentions, case);
    }
    // Signatures.
    let mut forged = envelope("s1", DEPARTMENT, &[DISTRICT], b"the real text");
    forged.signatures[0].cms_der = sign("signers/department-organization", b"another text");
    let mut garbage = envelope("s2", DEPARTMENT, &[DISTRICT], b"x");
    garbage.signatures[0].cms_der = b"\x30\x82\xff\xff not DER at all".to_vec();
    let mut orphan = envelope("s3", DEPARTMENT, &[DISTRICT], b"x");
    orphan.signatures[0].attachment = "not-there.pdf".into();
    let mut twice = envelope("s4", DEPARTMENT, &[DISTRICT], b"x");
    twice.attachments.push(twice.attachments[0].clone());
    let mut long_subject = envelope("s5", DEPARTMENT, &[DISTRICT], b"x");
    if let Some(document) = long_subject.document.as_mut() {
        document.subject = "đ".repeat(2001);
    }
    let mut dangling = envelope("s6", DEPARTMENT, &[DISTRICT], b"x");
    if let Some(document) = dangling.document.as_mut() {
        document.refers_to = "never-sent".into();
    }
    let cases: Vec<(&str, proto::Envelope, Code, &str)> = vec![
        (
            "a signature over other content (forged)",
            forged,
            Code::FailedPrecondition,
            "",
        ),
        (
            "a signature that is not DER",
            garbage,
            Code::FailedPrecondition,
            "",
        ),
        (
            "a signature naming a missing attachment",
            orphan,
            Code::InvalidArgument,
            "envelope.signatures[0]",
        ),
        (
            "two attachments of one name",
            twice,
            Code::InvalidArgument,
            "envelope.attachments[1]",
        ),
        (
            "a subject over the text limit",
            long_subject,
            Code::InvalidArgument,
            "envelope.document.subject",
        ),
        (
            "an answer to a message never sent",
            dangling,
            Code::InvalidArgument,
            "refers_to",
        ),
    ];
    for (case, envelope, code, mentions) in cases {
        assert_status(send(&mut department, envelope).await, code, mentions, case);
    }

    // SendStream frames out of order.
    let head = |size: u64| {
        let mut envelope = unsigned_envelope("st", DEPARTMENT, &[DISTRICT], b"");
        envelope.attachments[0].size = size;
        proto::SendStreamRequest {
            part: Some(Part::Envelope(envelope)),
        }
    };
    let chunk = |name: &str, data: &[u8]| proto::SendStreamRequest {
        part: Some(Part::Chunk(proto::ContentChunk {
            attachment: name.into(),
            data: data.to_vec(),
        })),
    };
    const PDF: &str = "ke-hoach.pdf";
    let streams: Vec<(&str, Vec<proto::SendStreamRequest>, Code, &str)> = vec![
        (
            "an empty SendStream",
            vec![],
            Code::InvalidArgument,
            "empty",
        ),
        (
            "a SendStream that starts with a chunk",
            vec![chunk(PDF, b"x")],
            Code::InvalidArgument,
            "must be the envelope",
        ),
        (
            "a second envelope in a SendStream",
            vec![head(1), head(1)],
            Code::InvalidArgument,
            "only content chunks",
        ),
        (
            "a chunk of an attachment the envelope does not name",
            vec![head(4), chunk("other.pdf", b"x")],
            Code::InvalidArgument,
            "chunk.attachment",
        ),
        (
            "an empty chunk",
            vec![head(4), chunk(PDF, b"")],
            Code::InvalidArgument,
            "empty chunk",
        ),
        (
            "more bytes than declared",
            vec![head(4), chunk(PDF, b"12345")],
            Code::InvalidArgument,
            "longer than its declared size",
        ),
        (
            "a chunk after the last declared byte",
            vec![head(2), chunk(PDF, b"12"), chunk(PDF, b"3")],
            Code::InvalidArgument,
            "beyond the declared sizes",
        ),
        (
            "a SendStream that ends early",
            vec![head(4), chunk(PDF, b"12")],
            Code::InvalidArgument,
            "ended after 2 of the 4 bytes",
        ),
        (
            "a chunk over limits.max_chunk_bytes",
            vec![head(5 << 20), chunk(PDF, &vec![0u8; (4 << 20) + 1])],
            Code::ResourceExhausted,
            "chunk.data",
        ),
        (
            "a declared size over limits.max_stream_bytes",
            vec![head(5 << 30)],
            Code::ResourceExhausted,
            "",
        ),
    ];
    for (case, frames, code, mentions) in streams {
        let result = department.send_stream(tokio_stream::iter(frames)).await;
        assert_status(result, code, mentions, case);
    }
    assert_eq!(
        staging_files(dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "a refused stream left a staging file"
    );

    let missing = department.send(proto::SendRequest { envelope: None }).await;
    assert_status(
        missing,
        Code::InvalidArgument,
        "envelope",
        "missing envelope",
    );

    // Acks only reach the caller's own queue.
    let mut district = server.exchange("district").await;
    let mut commune = server.exchange("commune-a").await;
    let foreign = commune
        .ack(proto::AckRequest {
            delivery_id: deliveries[0].delivery_id.clone(),
        })
        .await;
    assert_status(
        foreign,
        Code::NotFound,
        "not in the queue",
        "acking another agency's delivery",
    );
    let malformed = district
        .ack(proto::AckRequest {
            delivery_id: "../../etc".into(),
        })
        .await;
    assert_status(
        malformed,
        Code::InvalidArgument,
        "delivery_id",
        "malformed delivery id",
    );
    let unknown_code = district
        .report_status(proto::ReportStatusRequest {
            status: Some(proto::StatusReport {
                message_id: "taken".into(),
                sender: DEPARTMENT.into(),
                code: 99,
                ..Default::default()
            }),
        })
        .await;
    assert_status(
        unknown_code,
        Code::InvalidArgument,
        "code",
        "a status code outside 01-16",
    );
    let no_status = district
        .report_status(proto::ReportStatusRequest { status: None })
        .await;
    assert_status(
        no_status,
        Code::InvalidArgument,
        "status",
        "a status report without its status",
    );

    drop((
        department,
        district,
        commune,
        anonymous,
        unregistered,
        agency_as_admin,
    ));
    server.stop().await;
    let after = snapshot(dir.path());
    assert_eq!(before.1, after.1, "blob files changed");
    assert_eq!(before.0.len(), after.0.len(), "sled key count changed");
    assert!(before.0 == after.0, "sled contents changed");
}

#[tokio::test]
async fn agency_registration_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let mut admin = server.admin("admin").await;
    let pem = std::fs::read_to_string(certs().join("agencies/unregistered.crt")).expect("pem");
    let taken_pem = std::fs::read_to_string(certs().join("agencies/district.crt")).expect("pem");
    let request = |code: &str, parent: &str, pem: &str| proto::RegisterAgencyRequest {
        code: code.into(),
        name: "Cơ quan mới".into(),
        parent: parent.into(),
        certificate_pem: vec![pem.to_owned()],
    };
    let cases = [
        (
            "bad code",
            request("12.H56", "", &pem),
            Code::InvalidArgument,
            "12.H56",
        ),
        (
            "taken code",
            request(DISTRICT, "", &pem),
            Code::AlreadyExists,
            DISTRICT,
        ),
        (
            "unknown parent",
            request("000.00.99.H56", "000.00.98.H56", &pem),
            Code::InvalidArgument,
            "000.00.98.H56",
        ),
        (
            "not a certificate",
            request("000.00.99.H56", "", "hello"),
            Code::InvalidArgument,
            "certificate",
        ),
        (
            "certificate in use",
            request("000.00.99.H56", "", &taken_pem),
            Code::AlreadyExists,
            DISTRICT,
        ),
    ];
    for (case, request, code, mentions) in cases {
        assert_status(admin.register_agency(request).await, code, mentions, case);
    }
    let agencies = admin
        .list_agencies(proto::ListAgenciesRequest {})
        .await
        .expect("list")
        .into_inner()
        .agencies;
    assert_eq!(
        agencies.len(),
        6,
        "a refused registration must not add an agency"
    );

    // A registered, then disabled, agency can neither call nor be sent to.
    let registered = admin
        .register_agency(request("000.00.99.H56", DISTRICT, &pem))
        .await
        .expect("register")
        .into_inner()
        .agency
        .expect("agency");
    assert_eq!(registered.parent, DISTRICT);
    let signer_pem = std::fs::read_to_string(certs().join("signers/unregistered-organization.crt"))
        .expect("pem");
    admin
        .add_signer(proto::AddSignerRequest {
            agency: "000.00.99.H56".into(),
            role: proto::SignerRole::Organization as i32,
            certificate_pem: signer_pem.clone(),
        })
        .await
        .expect("bind the newcomer's signer");
    let again = admin
        .add_signer(proto::AddSignerRequest {
            agency: "000.00.99.H56".into(),
            role: proto::SignerRole::Head as i32,
            certificate_pem: signer_pem,
        })
        .await
        .expect_err("one binding per certificate");
    assert_eq!(again.code(), Code::AlreadyExists);
    let mut newcomer = server.exchange("unregistered").await;
    send(
        &mut newcomer,
        envelope("hello", "000.00.99.H56", &[DISTRICT], b"hi"),
    )
    .await
    .expect("a registered agency can send at once");
    admin
        .disable_agency(proto::DisableAgencyRequest {
            code: "000.00.99.H56".into(),
        })
        .await
        .expect("disable");
    assert_status(
        send(
            &mut newcomer,
            envelope("hello2", "000.00.99.H56", &[DISTRICT], b"hi"),
        )
        .await,
        Code::PermissionDenied,
        "disabled",
        "disabled caller",
    );
    let mut department = server.exchange("department").await;
    assert_status(
        send(
            &mut department,
            envelope("to-disabled", DEPARTMENT, &["000.00.99.H56"], b"hi"),
        )
        .await,
        Code::InvalidArgument,
        "disabled",
        "disabled recipient",
    );
    server.stop().await;
}
