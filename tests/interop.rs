//! Interop: a Python grpcio client generated from our proto files sends,
//! receives and acks against the real server. `.ci/run` installs grpcio into
//! a venv and names its interpreter in LIENTHONG_PYTHON.

mod common;

use std::process::Command;

use common::*;

fn python() -> Option<String> {
    let candidate = std::env::var("LIENTHONG_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let usable = Command::new(&candidate)
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|status| status.success());
    usable.then_some(candidate)
}

#[tokio::test]
async fn a_python_grpcio_client_sends_receives_and_acks() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the interop test: set LIENTHONG_PYTHON to a python with grpcio and grpcio-tools"
        );
        eprintln!("SKIPPED: no python with grpcio; run `scripts/test` or set LIENTHONG_PYTHON");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path()).await;
    let addr = server.addr.to_string();
    let content = dir.path().join("cong-van.txt");
    std::fs::write(&content, "Công văn từ Python — interop").expect("content");
    let signature = dir.path().join("cong-van.txt.p7s");
    let signer = certs().join("signers/department-organization");
    let signed = Command::new("openssl")
        .args([
            "cms", "-sign", "-binary", "-cades", "-outform", "DER", "-in",
        ])
        .arg(&content)
        .arg("-signer")
        .arg(signer.with_extension("crt"))
        .arg("-inkey")
        .arg(signer.with_extension("key"))
        .arg("-out")
        .arg(&signature)
        .status()
        .expect("openssl");
    assert!(signed.success());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repo().join("tests/interop/client.py"))
            .arg(addr)
            .arg(certs())
            .arg(repo().join("proto"))
            .arg(content)
            .arg(signature)
            .output()
    })
    .await
    .expect("join")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("interop ok"), "{stdout}");
    println!("{stdout}");
    server.stop().await;
}
