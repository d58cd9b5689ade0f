//! The README walkthrough, with the real `lienthong` binary: serve, register
//! an agency, send, receive, and a clean exit on SIGTERM.

mod common;

use std::{
    process::{Child, Command},
    time::Duration,
};

use common::{BIN, certs, run_cli as run, spawn_gateway, stdout_of};

#[test]
fn the_readme_walkthrough_works_with_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut server, addr) = spawn_gateway(&dir.path().join("data"));
    let addr = addr.to_string();

    let out = stdout_of(
        &run(
            &[
                "agency",
                "add",
                "--code",
                "000.00.99.H56",
                "--name",
                "Cơ quan chưa đăng ký",
                "--parent",
                "000.00.31.H56",
                "--cert",
                "certs-test/agencies/unregistered.crt",
            ],
            "admin",
            &addr,
        ),
        "agency add",
    );
    assert!(out.contains("000.00.99.H56"), "{out}");

    let out = stdout_of(
        &run(
            &[
                "signer",
                "add",
                "--agency",
                "000.00.99.H56",
                "--role",
                "organization",
                "--cert",
                "certs-test/signers/unregistered-organization.crt",
            ],
            "admin",
            &addr,
        ),
        "signer add",
    );
    assert!(out.contains("000.00.99.H56  organization"), "{out}");

    let document = dir.path().join("thong-bao.txt");
    std::fs::write(&document, "Thông báo lịch họp").expect("write document");
    let signature = dir.path().join("thong-bao.txt.p7s");
    // The agency's own signing tool: here the openssl command.
    let signed = Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-cades", "-outform", "DER", "-in",
        ])
        .arg(&document)
        .args([
            "-signer",
            "certs-test/signers/unregistered-organization.crt",
            "-inkey",
            "certs-test/signers/unregistered-organization.key",
            "-certfile",
            "certs-test/ca/agency-ca.crt",
            "-out",
        ])
        .arg(&signature)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("openssl");
    assert!(signed.success());
    let unsigned = run(
        &[
            "send",
            "--to",
            "000.00.31.H56",
            "--code",
            "12/TB-UBND",
            "--subject",
            "x",
            document.to_str().expect("utf-8 path"),
        ],
        "unregistered",
        &addr,
    );
    assert!(
        !unsigned.status.success(),
        "an unsigned document was accepted"
    );
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("FailedPrecondition"));
    let signature_arg = format!("thong-bao.txt={}", signature.display());
    let receipt_file = dir.path().join("tb-12.receipt");
    let out = stdout_of(
        &run(
            &[
                "send",
                "--to",
                "000.00.31.H56,000.01.31.H56",
                "--code",
                "12/TB-UBND",
                "--subject",
                "Thông báo lịch họp",
                "--message-id",
                "tb-12",
                "--signature",
                &signature_arg,
                "--receipt-out",
                receipt_file.to_str().expect("utf-8 path"),
                document.to_str().expect("utf-8 path"),
            ],
            "unregistered",
            &addr,
        ),
        "send",
    );
    assert!(
        out.contains("accepted: message tb-12 from 000.00.99.H56"),
        "{out}"
    );
    assert!(out.contains("queued for 000.01.31.H56"), "{out}");

    // The signed receipt checks out offline, and one changed byte anywhere fails it.
    let gateway_cert = certs().join("gateway/signing.crt");
    let verify = |file: &std::path::Path| {
        Command::new(BIN)
            .args(["receipt", "verify"])
            .arg(file)
            .arg("--gateway-cert")
            .arg(&gateway_cert)
            .output()
            .expect("receipt verify")
    };
    let checked = verify(&receipt_file);
    assert!(
        checked.status.success(),
        "receipt verify failed: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("receipt valid: message tb-12"));
    let original = std::fs::read(&receipt_file).expect("receipt");
    let tampered_file = dir.path().join("tampered.receipt");
    let step = (original.len() / 40).max(1);
    for offset in (0..original.len()).step_by(step) {
        let mut tampered = original.clone();
        tampered[offset] ^= 0x01;
        std::fs::write(&tampered_file, &tampered).expect("write");
        assert!(
            !verify(&tampered_file).status.success(),
            "a receipt altered at byte {offset} of {} still verified",
            original.len()
        );
    }
    let other_cert = verify_with_cert(&receipt_file, &certs().join("admin/admin.crt"));
    assert!(
        !other_cert,
        "verified with a certificate that did not sign it"
    );

    let inbox = dir.path().join("inbox");
    let out = stdout_of(
        &run(
            &[
                "receive",
                "--once",
                "--ack",
                "--out",
                inbox.to_str().expect("utf-8 path"),
            ],
            "district",
            &addr,
        ),
        "receive",
    );
    assert!(out.contains("1 document(s) received"), "{out}");
    assert!(
        out.contains("TOTAL_PASSED (000.00.99.H56 as organization)"),
        "{out}"
    );
    assert!(out.contains("acknowledged"), "{out}");
    let saved = inbox.join("000.00.99.H56/tb-12/thong-bao.txt");
    assert_eq!(
        std::fs::read_to_string(&saved).expect("saved file"),
        "Thông báo lịch họp"
    );
    let out = stdout_of(
        &run(&["receive", "--once"], "district", &addr),
        "receive again",
    );
    assert!(
        out.contains("0 document(s) received"),
        "acked document came back: {out}"
    );

    let out = stdout_of(&run(&["agency", "list"], "admin", &addr), "agency list");
    assert!(
        out.contains("000.00.99.H56") && out.contains("parent 000.00.31.H56"),
        "{out}"
    );
    let out = stdout_of(&run(&["queue", "stats"], "admin", &addr), "queue stats");
    assert!(
        out.lines()
            .any(|l| l.starts_with("000.01.31.H56") && l.contains(" 1 ")),
        "{out}"
    );

    let refused = run(&["agency", "list"], "district", &addr);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));

    // SIGTERM: finish, flush, exit 0.
    let pid = server.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = wait_with_timeout(&mut server.0, Duration::from_secs(20));
    assert!(exit.success(), "gateway exited with {exit:?} after SIGTERM");
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gateway did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify_with_cert(file: &std::path::Path, certificate: &std::path::Path) -> bool {
    Command::new(BIN)
        .args(["receipt", "verify"])
        .arg(file)
        .arg("--gateway-cert")
        .arg(certificate)
        .output()
        .expect("receipt verify")
        .status
        .success()
}
