//! `lienthong bench` against a real gateway: it sends, receives and
//! acknowledges what it says it did, and reports in JSON.

mod common;

use std::process::Command;

use common::{BIN, repo, spawn_gateway};

fn bench(args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .current_dir(repo())
        .output()
        .expect("run lienthong bench");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("bench prints JSON")
}

#[test]
fn bench_sends_receives_and_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gateway, addr) = spawn_gateway(dir.path());
    let server = format!("https://localhost:{}", addr.port());
    let pid = gateway.0.id().to_string();
    let result = bench(&[
        "--server",
        &server,
        "--count",
        "60",
        "--clients",
        "4",
        "--connections",
        "2",
        "--distinct",
        "3",
        "--end-to-end",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(result["sent_ok"], 60, "{result}");
    assert_eq!(
        result["acknowledged"], 60,
        "every document came back acked: {result}"
    );
    assert_eq!(result["errors"], serde_json::json!({}), "{result}");
    assert_eq!(result["document_bytes"], 10240);
    assert!(result["documents_per_second"].as_f64().expect("rate") > 0.0);
    let p50 = result["end_to_end_latency"]["p50_ms"]
        .as_f64()
        .expect("p50");
    let max = result["end_to_end_latency"]["max_ms"]
        .as_f64()
        .expect("max");
    assert!(p50 > 0.0 && p50 <= max, "{result}");
    assert_eq!(
        result["queue_after"]["waiting"], 0,
        "the queue was drained: {result}"
    );
    assert!(result["memory"]["samples"].as_u64().is_some(), "{result}");

    // Unsigned documents are refused by the default policy: counted by code.
    let refused = bench(&["--server", &server, "--count", "5", "--signatures", "0"]);
    assert_eq!(refused["sent_ok"], 0, "{refused}");
    assert_eq!(refused["errors"]["FailedPrecondition"], 5, "{refused}");

    let ceiling = bench(&["--verify-only", "--duration", "1"]);
    assert!(
        ceiling["per_second"].as_f64().expect("rate") > 0.0,
        "{ceiling}"
    );
    drop(gateway);
}

#[test]
fn bench_refuses_bad_arguments_clearly() {
    let output = Command::new(BIN)
        .args(["bench", "--size", "10 parsecs", "--verify-only"])
        .current_dir(repo())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size"), "{stderr}");
}
