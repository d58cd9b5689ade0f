//! The load of the fault tests: senders of numbered documents, receivers
//! that acknowledge, and a ledger of what each side was told. The gateway
//! is killed at random moments (and, for the power-cut test, the power is
//! cut) between cycles; afterwards every Send that got OK must have been
//! delivered, and nothing whose Ack got OK delivered again.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use lienthong::proto;
use tonic::Code;

use super::*;

pub const RECIPIENTS: [(&str, &str); 2] = [("district", DISTRICT), ("commune-a", COMMUNE_A)];

#[derive(Default)]
pub struct Ledger {
    /// Message ids whose Send answered OK (new or duplicate).
    pub sent_ok: BTreeSet<String>,
    /// Sends cut by a crash: outcome unknown, retried with the very same
    /// envelope (a real client resends the bytes it has, signature included).
    pub unknown: BTreeMap<String, proto::Envelope>,
    /// (recipient, id) delivered at least once.
    pub delivered: HashSet<(String, String)>,
    /// (recipient, id) whose Ack answered OK.
    pub acked: HashSet<(String, String)>,
    pub deliveries: u64,
    pub redeliveries: u64,
    pub duplicates_after_ack: Vec<(String, String)>,
    pub retried_sends: u64,
}

pub type Shared = Arc<Mutex<Ledger>>;

pub fn ledger(shared: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    shared.lock().expect("ledger lock")
}

pub fn is_crash(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    )
}

pub async fn sender(addr: SocketAddr, shared: Shared, next: Arc<AtomicU64>) {
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

pub async fn receiver(
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

/// Retries the unknown sends of the last crash against a stable gateway.
pub async fn sender_retry_only(addr: SocketAddr, shared: &Shared) {
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

/// What a run of kill cycles saw.
pub struct Outcome {
    /// The ledger of sends, deliveries and acks.
    pub ledger: Ledger,
    /// (recipient, id) of Sends that got OK and were never delivered.
    pub lost: Vec<(String, String)>,
}

/// Runs `cycles` cycles of load against the real binary on `data`, each
/// ended by a SIGKILL at a random moment; `after_kill` runs once the
/// process is gone (the power-cut test cuts the power there). Then a last
/// start retries the sends a kill cut short and drains every queue.
pub async fn kill_cycles(data: &Path, cycles: u32, mut after_kill: impl FnMut(u32)) -> Outcome {
    let shared: Shared = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    for cycle in 0..cycles {
        let (mut process, addr) = spawn_gateway(data);
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
        after_kill(cycle);
        let l = ledger(&shared);
        println!(
            "cycle {cycle:>2}: killed after {:>3} ms; sent OK {:>5}, delivered {:>5}",
            alive.as_millis(),
            l.sent_ok.len(),
            l.delivered.len()
        );
    }

    // Last start: the store must open; retry the unknown sends, then drain.
    let (process, addr) = spawn_gateway(data);
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

    let ledger = std::mem::take(&mut *ledger(&shared));
    let mut lost = Vec::new();
    for id in &ledger.sent_ok {
        for (_, code) in RECIPIENTS {
            if !ledger.delivered.contains(&(code.to_owned(), id.clone())) {
                lost.push((code.to_owned(), id.clone()));
            }
        }
    }
    Outcome { ledger, lost }
}

impl Outcome {
    /// Asserts the promise: enough traffic to prove something, every Send
    /// that got OK delivered, nothing delivered again after an OK ack.
    pub fn assert_nothing_lost(&self, min_sent: usize) {
        let l = &self.ledger;
        assert!(
            l.sent_ok.len() > min_sent,
            "too little traffic to prove anything: {}",
            l.sent_ok.len()
        );
        assert!(
            self.lost.is_empty(),
            "acknowledged sends never delivered: {:?}",
            self.lost
        );
        assert!(
            l.duplicates_after_ack.is_empty(),
            "delivered again after an OK ack: {:?}",
            l.duplicates_after_ack
        );
    }

    /// One line of counts, written straight to stderr: the harness captures
    /// println!, and these counts belong in every CI log.
    pub fn report(&self, what: &str) {
        let l = &self.ledger;
        let summary = format!(
            "{what}; sent OK {}, retried after a crash {}, deliveries {}, \
             delivered (recipient, message) {}, redelivered before an ack {}, duplicates after ack {}, lost {}\n",
            l.sent_ok.len(),
            l.retried_sends,
            l.deliveries,
            l.delivered.len(),
            l.redeliveries,
            l.duplicates_after_ack.len(),
            self.lost.len()
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    }
}
