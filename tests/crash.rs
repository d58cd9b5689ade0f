//! Crash proof: concurrent senders and receivers run against the real
//! `lienthong` binary while it is killed with SIGKILL at random moments and
//! restarted on the same data dir. Afterwards every Send that got OK has been
//! delivered to every recipient, no message was delivered again after an ack
//! that got OK, and the store opens cleanly.
//!
//! LIENTHONG_CRASH_CYCLES sets the number of kills (default 20).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;
use lienthong::proto;
use tonic::Code;

const RECIPIENTS: [(&str, &str); 2] = [("district", DISTRICT), ("commune-a", COMMUNE_A)];

#[derive(Default)]
struct Ledger {
    /// Message ids whose Send answered OK (new or duplicate).
    sent_ok: BTreeSet<String>,
    /// Sends cut by a crash: outcome unknown, retried with the very same
    /// envelope (a real client resends the bytes it has, signature included).
    unknown: BTreeMap<String, proto::Envelope>,
    /// (recipient, id) delivered at least once.
    delivered: HashSet<(String, String)>,
    /// (recipient, id) whose Ack answered OK.
    acked: HashSet<(String, String)>,
    deliveries: u64,
    redeliveries: u64,
    duplicates_after_ack: Vec<(String, String)>,
    retried_sends: u64,
}

type Shared = Arc<Mutex<Ledger>>;

fn ledger(shared: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    shared.lock().expect("ledger lock")
}

fn is_crash(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    )
}

async fn sender(addr: SocketAddr, shared: Shared, next: Arc<AtomicU64>) {
    let Ok(channel) = connect(addr, Some("department")).await else {
        return;
    };
    let mut client = proto::exchange_client::ExchangeClient::new(channel);
    let mut retries: Vec<proto::Envelope> = {
        let mut l = ledger(&shared);
        let taken: Vec<String> = l.unknown.keys().take(4).cloned().collect();
        taken.iter().filter_map(|id| l.unknown.remove(id)).collect()
    };
    let to: Vec<&str> = RECIPIENTS.iter().map(|(_, code)| *code).collect();
    loop {
        let (message, retry) = match retries.pop() {
            Some(message) => (message, true),
            None => {
                let id = format!("crash-{}", next.fetch_add(1, Ordering::Relaxed));
                (envelope(&id, DEPARTMENT, &to, id.as_bytes()), false)
            }
        };
        let id = message.message_id.clone();
        match send(&mut client, message.clone()).await {
            Ok(receipt) => {
                assert!(
                    !receipt.duplicate || retry,
                    "a fresh id came back as a duplicate: {id}"
                );
                let mut l = ledger(&shared);
                l.retried_sends += u64::from(retry);
                l.sent_ok.insert(id);
            }
            Err(status) if is_crash(&status) => {
                ledger(&shared).unknown.insert(id, message);
                return;
            }
            Err(status) => panic!("send {id} refused unexpectedly: {status:?}"),
        }
    }
}

async fn receiver(
    addr: SocketAddr,
    who: &'static str,
    code: &'static str,
    shared: Shared,
    drain: bool,
) -> usize {
    let Ok(channel) = connect(addr, Some(who)).await else {
        return 0;
    };
    let mut client = proto::exchange_client::ExchangeClient::new(channel);
    let Ok(response) = client
        .receive(proto::ReceiveRequest {
            max_in_flight: 8,
            drain,
        })
        .await
    else {
        return 0;
    };
    let mut stream = response.into_inner();
    let mut received = 0;
    while let Ok(Some(delivery)) = stream.message().await {
        received += 1;
        let id = envelope_of(&delivery).message_id.clone();
        assert_eq!(
            envelope_of(&delivery).attachments[0].content,
            id.as_bytes(),
            "content of {id}"
        );
        let key = (code.to_owned(), id);
        {
            let mut l = ledger(&shared);
            l.deliveries += 1;
            if l.acked.contains(&key) {
                l.duplicates_after_ack.push(key.clone());
            }
            if !l.delivered.insert(key.clone()) {
                l.redeliveries += 1;
            }
        }
        let ack = client
            .ack(proto::AckRequest {
                delivery_id: delivery.delivery_id.clone(),
            })
            .await;
        match ack {
            Ok(_) => {
                ledger(&shared).acked.insert(key);
            }
            Err(status) if is_crash(&status) => return received,
            Err(status) => panic!("ack of {key:?} refused: {status:?}"),
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_across_sigkill() {
    let cycles: u32 = std::env::var("LIENTHONG_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let shared: Shared = Arc::default();
    let next = Arc::new(AtomicU64::new(0));

    for cycle in 0..cycles {
        let (mut process, addr) = spawn_gateway(&data);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            tasks.push(tokio::spawn(sender(addr, shared.clone(), next.clone())));
        }
        for (who, code) in [RECIPIENTS[0], RECIPIENTS[0], RECIPIENTS[1]] {
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                receiver(addr, who, code, shared, false).await;
            }));
        }
        let alive = Duration::from_millis(100 + rand::random::<u64>() % 600);
        tokio::time::sleep(alive).await;
        process.0.kill().expect("SIGKILL");
        process.0.wait().expect("reap");
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        let l = ledger(&shared);
        println!(
            "cycle {cycle:>2}: killed after {:>3} ms; sent OK {:>5}, delivered {:>5}",
            alive.as_millis(),
            l.sent_ok.len(),
            l.delivered.len()
        );
    }

    // Last start: the store must open; retry the unknown sends, then drain.
    let (process, addr) = spawn_gateway(&data);
    while !ledger(&shared).unknown.is_empty() {
        sender_retry_only(addr, &shared).await;
    }
    for _ in 0..3 {
        let mut received = 0;
        for (who, code) in RECIPIENTS {
            received += receiver(addr, who, code, shared.clone(), true).await;
        }
        if received == 0 {
            break;
        }
    }
    drop(process);

    let l = ledger(&shared);
    let mut lost = Vec::new();
    for id in &l.sent_ok {
        for (_, code) in RECIPIENTS {
            if !l.delivered.contains(&(code.to_owned(), id.clone())) {
                lost.push((code, id.clone()));
            }
        }
    }
    let summary = format!(
        "crash test: {cycles} SIGKILL cycles; sent OK {}, retried after a crash {}, deliveries {}, \
         delivered (recipient, message) {}, redelivered before an ack {}, duplicates after ack {}, lost {}\n",
        l.sent_ok.len(),
        l.retried_sends,
        l.deliveries,
        l.delivered.len(),
        l.redeliveries,
        l.duplicates_after_ack.len(),
        lost.len()
    );
    // Straight to the stderr handle: the test harness captures println!, and
    // these counts belong in every CI log.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(
        l.sent_ok.len() > 20,
        "too little traffic to prove anything: {}",
        l.sent_ok.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged sends never delivered: {lost:?}"
    );
    assert!(
        l.duplicates_after_ack.is_empty(),
        "delivered again after an OK ack: {:?}",
        l.duplicates_after_ack
    );
    drop(l);
    // The store opens cleanly offline too.
    let (pairs, _) = snapshot(&data);
    assert!(!pairs.is_empty());
}

/// Retries the unknown sends of the last crash against a stable gateway.
async fn sender_retry_only(addr: SocketAddr, shared: &Shared) {
    let channel = connect(addr, Some("department")).await.expect("connect");
    let mut client = proto::exchange_client::ExchangeClient::new(channel);
    let unknown = std::mem::take(&mut ledger(shared).unknown);
    for (id, message) in unknown {
        send(&mut client, message)
            .await
            .expect("retry after the crash");
        let mut l = ledger(shared);
        l.retried_sends += 1;
        l.sent_ok.insert(id);
    }
}
