//! `lienthong store migrate`: a stopped sled gateway's whole state moves
//! into PostgreSQL, verified, and a gateway on the database carries on
//! where the old one stopped.

mod common;

use std::process::{Command, Output};

use common::*;
use lienthong::proto;

fn migrate(from: &str, to: &str) -> Output {
    Command::new(BIN)
        .args(["store", "migrate", "--from", from, "--to", to])
        .output()
        .expect("lienthong store migrate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_sled_gateway_moves_to_postgres_and_carries_on() {
    let Some(admin) = lienthong::store::pg::test_cluster() else {
        eprintln!("SKIPPED: LIENTHONG_PG is not set (scripts/test starts PostgreSQL)");
        return;
    };
    if on_postgres() {
        return; // The source must be sled.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sled-gateway");
    let server = TestServer::start(&data).await;
    let mut department = server.exchange("department").await;
    // Larger than a content row, so that it spans several.
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    for index in 0..6 {
        let content = if index == 5 {
            large.clone()
        } else {
            format!("văn bản {index}").into_bytes()
        };
        send(
            &mut department,
            envelope(&format!("mg-{index}"), DEPARTMENT, &[DISTRICT], &content),
        )
        .await
        .expect("send");
    }
    // Two delivered and acknowledged before the move, four still queued.
    let mut district = server.exchange("district").await;
    let mut stream = live_stream(&mut district, 2).await;
    let mut acked = Vec::new();
    for _ in 0..2 {
        let delivery = next_delivery(&mut stream).await;
        ack(&mut district, &delivery).await;
        acked.push(envelope_of(&delivery).message_id.clone());
    }
    drop((stream, department, district));
    server.stop().await;

    let url = lienthong::store::pg::scratch_database(&admin)
        .expect("database")
        .url;
    let from = format!("sled:{}", data.display());
    let to = format!("postgres:{url}");

    // Bad input: clear errors, nothing written.
    let wrong = migrate(&format!("rocks:{}", data.display()), &to);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("--from must be sled:DIR"),
        "{}",
        text(&wrong)
    );
    let wrong = migrate(&from, &url);
    assert!(
        text(&wrong).contains("--to must be postgres:URL"),
        "{}",
        text(&wrong)
    );

    let moved = migrate(&from, &to);
    let report = text(&moved);
    eprintln!("{report}");
    assert!(moved.status.success(), "{report}");
    assert!(report.contains("verified:"), "{report}");
    assert!(
        report.contains("msg: 6 in the source, 6 in the database"),
        "{report}"
    );
    assert!(
        report.contains("queue: 4 in the source, 4 in the database"),
        "{report}"
    );

    // Twice: refused, the database is left as it is.
    let again = migrate(&from, &to);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already holds lienthong data"),
        "{}",
        text(&again)
    );

    // The gateway on PostgreSQL delivers what was queued, content intact.
    let config = {
        let mut config = common::config(&dir.path().join("pg-gateway"));
        config.store.engine = lienthong::store::Engine::Postgres;
        config.store.postgres.url = url.clone();
        config
    };
    let server = TestServer::start_with(config).await;
    let out = dir.path().join("received");
    let received = stdout_of(
        &run_cli(
            &[
                "receive",
                "--once",
                "--ack",
                "--out",
                out.to_str().expect("utf-8"),
            ],
            "district",
            &server.addr.to_string(),
        ),
        "receive after the move",
    );
    let mut ids: Vec<String> = std::fs::read_dir(out.join(DEPARTMENT))
        .expect("received")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    let expected: Vec<String> = (0..6)
        .map(|i| format!("mg-{i}"))
        .filter(|id| !acked.contains(id))
        .collect();
    assert_eq!(ids, expected, "exactly the unacknowledged ones: {received}");
    assert_eq!(
        std::fs::read(out.join(DEPARTMENT).join("mg-5").join("ke-hoach.pdf")).expect("read"),
        large,
        "content spanning several rows, intact"
    );
    let mut district = server.exchange("district").await;
    // And carries on: sending goes on with the chain and the numbering.
    let mut department = server.exchange("department").await;
    let receipt = send(
        &mut department,
        envelope("mg-after", DEPARTMENT, &[DISTRICT], b"after the move"),
    )
    .await
    .expect("send after the move");
    assert!(!receipt.duplicate);
    let again = send(
        &mut department,
        envelope("mg-1", DEPARTMENT, &[DISTRICT], b"van ban khac"),
    )
    .await
    .expect_err("an id used before the move is still taken");
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
    let trace = department
        .trace(proto::TraceRequest {
            message_id: "mg-1".into(),
            sender: DEPARTMENT.into(),
        })
        .await
        .expect("trace of a document from before the move")
        .into_inner();
    assert!(trace.events.len() >= 3, "{:?}", trace.events);
    assert!(drain(&mut district).await.len() == 1, "the new one only");
    drop((district, department));
    server.stop().await;
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--postgres", &url])
        .output()
        .expect("audit verify");
    assert!(verify.status.success(), "{}", text(&verify));
}
