//! `lienthong receive --out` never loses content at the recipient: names
//! that clash once made safe, an attachment named like a signature file, a
//! redelivered message: nothing is overwritten, and the document is acked
//! only after every file was read back intact. The gateway refuses names
//! that no file system would take (over 200 characters, control characters).

mod common;

use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn receive_out_never_overwrites_and_names_are_bounded_at_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_gateway, addr) = spawn_gateway(&dir.path().join("data"));
    let addr = addr.to_string();
    let mut department = ExchangeClient::new(
        connect(addr.parse().expect("addr"), Some("department"))
            .await
            .expect("connect"),
    );

    // Names that no receiver could store are refused up front.
    for (name, why) in [
        ("a\nb.txt".to_owned(), "control characters"),
        (
            format!("{}.pdf", "ư".repeat(197)),
            "at most 200 are allowed",
        ),
    ] {
        let mut bad = envelope("bad-name", DEPARTMENT, &[DISTRICT], b"x");
        bad.attachments[0].name = name.clone();
        bad.signatures.clear();
        let refused = send(&mut department, bad).await.expect_err("bad name");
        assert_eq!(refused.code(), Code::InvalidArgument, "{name:?}");
        assert!(
            refused.message().contains("attachments[0].name"),
            "{}",
            refused.message()
        );
        assert!(refused.message().contains(why), "{}", refused.message());
    }

    // ke-hoach.pdf, its signature, and an attachment named like the
    // signature file the old CLI wrote for it.
    let mut document = envelope("clash-1", DEPARTMENT, &[DISTRICT], b"the plan");
    document.attachments.push(lienthong::proto::Attachment {
        name: "ke-hoach.pdf.0.p7s".into(),
        media_type: "application/octet-stream".into(),
        content: b"an attachment, not a signature".to_vec(),
        ..Default::default()
    });
    document.attachments.push(lienthong::proto::Attachment {
        name: "manifest.json".into(),
        media_type: "application/json".into(),
        content: b"{\"not\": \"ours\"}".to_vec(),
        ..Default::default()
    });
    send(&mut department, document).await.expect("send");

    // A copy of this message is already in the inbox (an earlier delivery
    // saved but not acked): it must stay as it is.
    let inbox = dir.path().join("inbox");
    let earlier = inbox.join(DEPARTMENT).join("clash-1");
    std::fs::create_dir_all(&earlier).expect("mkdir");
    std::fs::write(earlier.join("ke-hoach.pdf"), b"earlier copy").expect("write");

    let out = stdout_of(
        &run_cli(
            &[
                "receive",
                "--once",
                "--ack",
                "--out",
                inbox.to_str().expect("utf-8"),
            ],
            "district",
            &addr,
        ),
        "receive",
    );
    assert!(out.contains("acknowledged"), "{out}");
    assert_eq!(
        std::fs::read(earlier.join("ke-hoach.pdf")).expect("earlier"),
        b"earlier copy"
    );
    let saved = inbox.join(DEPARTMENT).join("clash-1~2");
    assert_eq!(
        std::fs::read(saved.join("ke-hoach.pdf")).expect("pdf"),
        b"the plan"
    );
    assert_eq!(
        std::fs::read(saved.join("ke-hoach.pdf.0.p7s")).expect("attachment"),
        b"an attachment, not a signature"
    );
    assert_eq!(
        std::fs::read(saved.join("manifest~2.json")).expect("attachment"),
        b"{\"not\": \"ours\"}"
    );
    // The signature is apart, and still verifies with the openssl command.
    let signature = saved.join("signatures/0.p7s");
    let verified = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(&signature)
        .arg("-content")
        .arg(saved.join("ke-hoach.pdf"))
        .args(["-CAfile"])
        .arg(certs().join("ca/root.crt"))
        .args(["-certfile"])
        .arg(certs().join("ca/agency-ca.crt"))
        .args(["-purpose", "any", "-out", "/dev/null"])
        .output()
        .expect("openssl");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(saved.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["attachments"].as_array().expect("array").len(), 3);
    assert_eq!(manifest["signatures"][0]["attachment"], "ke-hoach.pdf");
    assert_eq!(manifest["signatures"][0]["file"], "signatures/0.p7s");

    // Acked: nothing waits any more.
    let again = stdout_of(&run_cli(&["receive", "--once"], "district", &addr), "again");
    assert!(again.contains("0 document(s) received"), "{again}");
}

use lienthong::proto::exchange_client::ExchangeClient;
