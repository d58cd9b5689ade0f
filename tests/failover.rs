//! Gateways sharing one PostgreSQL database: one serves, the others stand
//! by and take over when it dies, hangs or loses the database; nothing
//! acknowledged is lost, nothing acknowledged comes back, the audit chain
//! holds. Real `lienthong serve` processes, a real PostgreSQL cluster
//! (`LIENTHONG_PG`, started by scripts/test; the database-restart test
//! starts a cluster of its own with scripts/pg).

mod common;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use lienthong::proto::{self, exchange_client::ExchangeClient};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The lease the tests run with: takeovers in about 2 s instead of 6.
const LEASE_SECONDS: u64 = 2;

/// Cycles from the environment (scripts/reliability runs more), else `default`.
fn cycles(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
const CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// The shipped configuration with absolute paths and a short lease.
fn config_file(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("lienthong.toml")).expect("config");
    let repo = repo().display().to_string();
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
        }
        let line = match (section.as_str(), line.split('=').next().map(str::trim)) {
            ("[store.postgres]", Some("lease_seconds")) => {
                format!("lease_seconds = {LEASE_SECONDS}")
            }
            ("[store.postgres]", Some("timeout_seconds")) => "timeout_seconds = 2".to_owned(),
            _ => line.replace("\"certs-test/", &format!("\"{repo}/certs-test/")),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        out.contains(&format!("lease_seconds = {LEASE_SECONDS}\n")),
        "the lease is set"
    );
    let path = dir.join("lienthong.toml");
    std::fs::write(&path, out).expect("write config");
    path
}

/// One `lienthong serve` of the pair, restartable on its port.
struct Node {
    data: PathBuf,
    config: PathBuf,
    url: String,
    addr: SocketAddr,
    process: Option<GatewayProcess>,
}

impl Node {
    fn start(name: &'static str, dir: &Path, url: &str, listen: &str) -> Self {
        Self::start_env(name, dir, url, listen, &[])
    }

    fn start_env(
        name: &'static str,
        dir: &Path,
        url: &str,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let data = dir.join(name);
        let config = config_file(dir);
        let (process, addr) = spawn_gateway_with_postgres(&data, &config, url, listen, env);
        Self {
            data,
            config,
            url: url.to_owned(),
            addr,
            process: Some(process),
        }
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.0.kill();
            let _ = process.0.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let (process, _) = spawn_gateway_with_postgres(
            &self.data,
            &self.config,
            &self.url,
            &self.addr.to_string(),
            &[],
        );
        self.process = Some(process);
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").0.id()
    }

    /// Stops the way SIGTERM does, and waits.
    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // It may have exited already: then there is nothing to stop.
            let _ = Command::new("kill")
                .args(["-TERM", &process.0.id().to_string()])
                .status();
            let _ = process.0.wait();
        }
    }
}

/// Sends `signal` (e.g. `-STOP`) to process `pid` with kill(1).
fn signal(signal: &str, pid: &str) {
    let sent = Command::new("kill").args([signal, pid]).status();
    assert!(
        sent.is_ok_and(|status| status.success()),
        "kill {signal} {pid}"
    );
}

fn spawn_gateway_with_postgres(
    data: &Path,
    config: &Path,
    url: &str,
    listen: &str,
    env: &[(&str, &str)],
) -> (GatewayProcess, SocketAddr) {
    spawn_gateway_env(
        data,
        listen,
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--postgres".as_ref(),
            url.as_ref(),
        ],
        env,
    )
}

/// Whether the gateway at `addr` reports its Exchange service SERVING.
async fn serving(addr: SocketAddr) -> bool {
    let check = async {
        let channel = connect(addr, None).await.ok()?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "lienthong.v1.Exchange".into(),
            })
            .await
            .ok()?;
        Some(status.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(true))
    )
}

/// Waits until one of `nodes` serves; its index and how long it took.
async fn wait_for_active(addrs: &[SocketAddr], within: Duration) -> (usize, Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        for (index, addr) in addrs.iter().enumerate() {
            if serving(*addr).await {
                return (index, started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no gateway took over within {within:?}");
}

async fn exchange(
    addr: SocketAddr,
    who: &str,
) -> Option<ExchangeClient<tonic::transport::Channel>> {
    let channel = tokio::time::timeout(CALL_TIMEOUT, connect(addr, Some(who)))
        .await
        .ok()?
        .ok()?;
    Some(ExchangeClient::new(channel))
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// Ids whose Send was answered OK.
    sent: BTreeSet<String>,
    /// Ids whose delivery was acknowledged (Ack answered OK).
    acked: BTreeSet<String>,
    /// Deliveries of an id after its Ack had been answered OK.
    after_ack: Vec<String>,
    /// Acks whose answer was lost in a failover, found committed in the
    /// document's trace.
    ack_answer_lost: usize,
}

/// Of `ids`, those whose trace at the gateway serving at `addrs` shows
/// the district's acknowledgement (an Ack committed whose answer was lost
/// when its gateway died).
async fn acknowledged_in_trace(addrs: &[SocketAddr], ids: &[String]) -> Vec<String> {
    let (active, _) = wait_for_active(addrs, Duration::from_secs(30)).await;
    let Some(mut client) = exchange(addrs[active], "department").await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in ids {
        let Ok(trace) = client
            .trace(proto::TraceRequest {
                message_id: id.clone(),
                sender: DEPARTMENT.into(),
            })
            .await
        else {
            continue;
        };
        let acked = trace.into_inner().events.iter().any(|event| {
            event.kind == proto::TraceEventKind::Acked as i32 && event.agency == DISTRICT
        });
        if acked {
            out.push(id.clone());
        }
    }
    out
}

/// Sends documents one after the other to whichever gateway answers, each
/// id again until a Send of it is answered OK (a retry is deduplicated).
async fn sender(addrs: Vec<SocketAddr>, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut target = 0;
    let mut index = 0u64;
    let mut client = None;
    // A retry sends the very same bytes (a new signature would be another
    // document under a used id).
    let mut current: Option<(String, proto::Envelope)> = None;
    while !stop.load(Ordering::SeqCst) {
        let (id, document) = current
            .get_or_insert_with(|| {
                let id = format!("fo-{index:06}");
                let content = format!("văn bản {id}").into_bytes();
                let document = envelope(&id, DEPARTMENT, &[DISTRICT], &content);
                (id, document)
            })
            .clone();
        if client.is_none() {
            client = exchange(addrs[target], "department").await;
        }
        let Some(connected) = client.as_mut() else {
            target = (target + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = send(connected, document);
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(Ok(_)) => {
                tally.lock().expect("tally").sent.insert(id);
                index += 1;
                current = None;
            }
            Ok(Err(status)) => {
                // The gateway answers UNAVAILABLE; a connection closed under
                // a call shows as the client's own transport error.
                // (A status the gateway sent has no source error.)
                let transport = std::error::Error::source(&status).is_some();
                assert!(
                    status.code() == Code::Unavailable || transport,
                    "{id}: a failover shows as UNAVAILABLE, not {status:?}"
                );
                client = None;
                target = (target + 1) % addrs.len();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                client = None;
                target = (target + 1) % addrs.len();
            }
        }
    }
}

/// Receives and acknowledges at whichever gateway serves, noting any
/// delivery of an id already acknowledged.
async fn receiver(addrs: Vec<SocketAddr>, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut target = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut client) = exchange(addrs[target], "district").await else {
            target = (target + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let opened = tokio::time::timeout(
            CALL_TIMEOUT,
            client.receive(proto::ReceiveRequest {
                max_in_flight: 16,
                drain: false,
            }),
        )
        .await;
        let Ok(Ok(stream)) = opened else {
            target = (target + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            let delivery = match next {
                Err(_) => continue,
                Ok(Ok(Some(delivery))) => delivery,
                Ok(_) => break,
            };
            let id = envelope_of(&delivery).message_id.clone();
            {
                let mut tally = tally.lock().expect("tally");
                if tally.acked.contains(&id) {
                    tally.after_ack.push(id.clone());
                }
            }
            let acked = tokio::time::timeout(
                CALL_TIMEOUT,
                client.ack(proto::AckRequest {
                    delivery_id: delivery.delivery_id.clone(),
                }),
            )
            .await;
            match acked {
                Ok(Ok(_)) => {
                    tally.lock().expect("tally").acked.insert(id);
                }
                _ => break,
            }
        }
        target = (target + 1) % addrs.len();
    }
}

/// Runs sender and receiver against `addrs` while `cycle` disturbs the
/// gateways `cycles` times; then lets the receiver catch up and checks
/// that every document sent was delivered and none came back after its
/// ack.
async fn under_load<F, Fut>(addrs: Vec<SocketAddr>, cycles: usize, mut cycle: F) -> Tally
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let sending = tokio::spawn(sender(addrs.clone(), tally.clone(), stop_sending.clone()));
    let receiving_addrs = addrs.clone();
    let receiving = tokio::spawn(receiver(addrs, tally.clone(), stop_receiving.clone()));
    for index in 0..cycles {
        // Some documents through before each disturbance.
        let before = tally.lock().expect("tally").sent.len();
        let started = Instant::now();
        while tally.lock().expect("tally").sent.len() < before + 5 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cycle {index}: no document was sent in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cycle(index).await;
    }
    stop_sending.store(true, Ordering::SeqCst);
    sending.await.expect("sender");
    let started = Instant::now();
    loop {
        let missing: Vec<String> = {
            let tally = tally.lock().expect("tally");
            tally.sent.difference(&tally.acked).cloned().collect()
        };
        if missing.is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            let found = acknowledged_in_trace(&receiving_addrs, &missing).await;
            let mut tally = tally.lock().expect("tally");
            tally.ack_answer_lost += found.len();
            tally.acked.extend(found);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} acknowledged documents were never delivered: {missing:?}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_receiving.store(true, Ordering::SeqCst);
    receiving.await.expect("receiver");
    Arc::try_unwrap(tally)
        .ok()
        .expect("one owner")
        .into_inner()
        .expect("tally")
}

fn audit_verify(url: &str) -> String {
    let output = Command::new(BIN)
        .args(["audit", "verify", "--postgres", url])
        .output()
        .expect("audit verify");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn report(line: String) {
    // One line per figure, for RELIABILITY.md.
    eprintln!("failover: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_takes_over_from_a_killed_active_gateway_and_nothing_is_lost() {
    let Some(admin) = lienthong::store::pg::test_cluster() else {
        eprintln!("SKIPPED: LIENTHONG_PG is not set (scripts/test starts PostgreSQL)");
        return;
    };
    let url = lienthong::store::pg::scratch_database(&admin)
        .expect("database")
        .url;
    eprintln!("database: {url}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = [
        Node::start("a", dir.path(), &url, "127.0.0.1:0"),
        Node::start("b", dir.path(), &url, "127.0.0.1:0"),
    ];
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let (first, _) = wait_for_active(&addrs, Duration::from_secs(20)).await;
    let standby = 1 - first;
    assert!(!serving(addrs[standby]).await, "only one gateway serves");
    // The standby refuses calls, naming the active gateway.
    let mut client = exchange(addrs[standby], "department")
        .await
        .expect("connect");
    let refused = send(
        &mut client,
        envelope("probe", DEPARTMENT, &[DISTRICT], b"x"),
    )
    .await
    .expect_err("a standby refuses");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("standby")
            && refused.message().contains(&addrs[first].to_string()),
        "the standby names the active gateway: {}",
        refused.message()
    );

    let cycle_count = cycles("LIENTHONG_FAILOVER_CYCLES", 20);
    let takeovers = Arc::new(Mutex::new(Vec::new()));
    let nodes = Arc::new(Mutex::new(&mut nodes));
    let tally = {
        let (nodes, takeovers, addrs) = (nodes.clone(), takeovers.clone(), addrs.clone());
        under_load(addrs.clone(), cycle_count, move |_| {
            let (nodes, takeovers, addrs) = (nodes.clone(), takeovers.clone(), addrs.clone());
            async move {
                let (active, _) = wait_for_active(&addrs, Duration::from_secs(30)).await;
                nodes.lock().expect("nodes")[active].kill();
                let other = 1 - active;
                let started = Instant::now();
                while !serving(addrs[other]).await {
                    assert!(
                        started.elapsed() < Duration::from_secs(LEASE_SECONDS + 10),
                        "the standby did not take over"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                takeovers.lock().expect("takeovers").push(started.elapsed());
                nodes.lock().expect("nodes")[active].restart();
            }
        })
        .await
    };
    let nodes = Arc::try_unwrap(nodes)
        .ok()
        .expect("one owner")
        .into_inner()
        .expect("nodes");
    let mut takeovers = takeovers.lock().expect("takeovers").clone();
    let max = *takeovers.iter().max().expect("cycles");
    let median = median(&mut takeovers);
    report(format!(
        "kill -9 of the active gateway under load, {cycle_count} cycles, lease {LEASE_SECONDS} s: \
         {} documents sent, {} lost, {} delivered again after their ack \
         ({} acks committed whose answer died with the gateway); \
         takeover median {} ms, max {} ms",
        tally.sent.len(),
        tally.sent.difference(&tally.acked).count(),
        tally.after_ack.len(),
        tally.ack_answer_lost,
        median.as_millis(),
        max.as_millis()
    ));
    assert!(
        tally.after_ack.is_empty(),
        "delivered after ack: {:?}",
        tally.after_ack
    );
    assert!(tally.sent.len() >= cycle_count * 5);
    assert!(
        max < Duration::from_secs(LEASE_SECONDS + 3),
        "a takeover took {max:?} with a {LEASE_SECONDS} s lease"
    );
    for node in nodes.iter_mut() {
        node.stop();
    }
    let verified = audit_verify(&url);
    assert!(verified.contains("audit chain intact"), "{verified}");
}

/// What a hung active gateway did when it came back.
struct Comeback {
    /// Its Send right after SIGCONT was answered OK.
    late_accepted: bool,
    /// What the district found at the new active gateway.
    drained: BTreeSet<String>,
}

/// Two gateways; the active one is stopped (SIGSTOP) until the standby has
/// taken over and accepted a document, then continued and sent one at
/// once. `unfenced`: the first gateway runs without fencing (a test fault).
async fn hung_leader(unfenced: bool) -> Option<Comeback> {
    let admin = lienthong::store::pg::test_cluster()?;
    let url = lienthong::store::pg::scratch_database(&admin)
        .expect("database")
        .url;
    let dir = tempfile::tempdir().expect("tempdir");
    let fault: &[(&str, &str)] = if unfenced {
        &[("LIENTHONG_FAULT_UNFENCED", "1")]
    } else {
        &[]
    };
    let mut first = Node::start_env("a", dir.path(), &url, "127.0.0.1:0", fault);
    wait_for_active(&[first.addr], Duration::from_secs(20)).await;
    let mut second = Node::start("b", dir.path(), &url, "127.0.0.1:0");
    let (active, other) = (first.addr, second.addr);
    let mut client = exchange(active, "department").await.expect("connect");
    send(
        &mut client,
        envelope("before-stop", DEPARTMENT, &[DISTRICT], b"1"),
    )
    .await
    .expect("the active gateway accepts");

    // Hung: the process stops, its connections to PostgreSQL stay open.
    let pid = first.pid().to_string();
    signal("-STOP", &pid);
    let started = Instant::now();
    while !serving(other).await {
        assert!(
            started.elapsed() < Duration::from_secs(LEASE_SECONDS + 10),
            "the standby did not take over from a stopped gateway"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !unfenced {
        report(format!(
            "SIGSTOP of the active gateway: the standby served after {} ms",
            started.elapsed().as_millis()
        ));
    }
    let mut taken = exchange(other, "department").await.expect("connect");
    send(
        &mut taken,
        envelope("after-takeover", DEPARTMENT, &[DISTRICT], b"2"),
    )
    .await
    .expect("the new active gateway accepts");

    // Back: whatever reaches it first, the deposed gateway must not write.
    signal("-CONT", &pid);
    let late = tokio::time::timeout(
        CALL_TIMEOUT,
        send(
            &mut client,
            envelope("by-the-deposed", DEPARTMENT, &[DISTRICT], b"3"),
        ),
    )
    .await;
    let late_accepted = match &late {
        Ok(Ok(_)) => true,
        // Refused, or cut off as it steps down (the client's own transport
        // error: a status the gateway sent has no source).
        Ok(Err(status)) => {
            let cut = std::error::Error::source(status).is_some();
            assert!(status.code() == Code::Unavailable || cut, "{status:?}");
            false
        }
        Err(_) => false,
    };
    if !unfenced {
        // It steps down to standby and names the new active one.
        let started = Instant::now();
        let named = loop {
            if let Some(mut fresh) = exchange(active, "department").await
                && let Err(status) =
                    send(&mut fresh, envelope("probe", DEPARTMENT, &[DISTRICT], b"4")).await
                && status.message().contains("standby")
            {
                break status.message().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the deposed gateway did not stand by"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(named.contains(&other.to_string()), "{named}");
        assert!(!serving(active).await);
    }
    let mut district = exchange(other, "district").await.expect("connect");
    let drained = drain(&mut district)
        .await
        .iter()
        .map(|d| envelope_of(d).message_id.clone())
        .collect();
    first.stop();
    second.stop();
    if !unfenced {
        audit_verify(&url);
    }
    Some(Comeback {
        late_accepted,
        drained,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_active_gateway_is_deposed_and_cannot_write_when_it_comes_back() {
    let Some(comeback) = hung_leader(false).await else {
        eprintln!("SKIPPED: LIENTHONG_PG is not set (scripts/test starts PostgreSQL)");
        return;
    };
    assert!(
        !comeback.late_accepted,
        "a deposed gateway accepted a document"
    );
    assert_eq!(
        comeback.drained,
        BTreeSet::from(["before-stop".to_owned(), "after-takeover".to_owned()]),
        "only what the leaders of their time accepted"
    );
}

/// The control: the same run with fencing turned off (a test fault) is
/// caught, so the test above would see a deposed gateway that writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_fencing_the_deposed_gateway_is_caught_writing() {
    let Some(comeback) = hung_leader(true).await else {
        eprintln!("SKIPPED: LIENTHONG_PG is not set (scripts/test starts PostgreSQL)");
        return;
    };
    report(format!(
        "control without fencing: the deposed gateway accepted a document after SIGCONT: {}; \
         the district found {:?}",
        comeback.late_accepted, comeback.drained
    ));
    assert!(
        comeback.late_accepted,
        "without fencing, the deposed one accepts"
    );
    assert_ne!(
        comeback.drained,
        BTreeSet::from(["before-stop".to_owned(), "after-takeover".to_owned()]),
        "the check sees what the deposed gateway wrote"
    );
}

/// A PostgreSQL cluster of this test's own, so that stopping it disturbs
/// no other test.
struct Cluster {
    dir: String,
    url: String,
}

impl Cluster {
    fn start() -> Option<Self> {
        lienthong::store::pg::test_cluster()?;
        let output = Command::new(repo().join("scripts/pg"))
            .arg("start")
            .output()
            .expect("scripts/pg start");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines = text.lines();
        let dir = lines.next().expect("directory").to_owned();
        let url = lines.next().expect("connection string").to_owned();
        Some(Self { dir, url })
    }

    fn ctl(&self, args: &[&str]) {
        let status = Command::new(repo().join("scripts/pg"))
            .args(["ctl", &self.dir])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("scripts/pg ctl");
        assert!(status.success(), "pg_ctl {args:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/pg"))
            .args(["stop", &self.dir])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_rides_out_a_database_crash_and_recovers_by_itself() {
    let Some(cluster) = Cluster::start() else {
        eprintln!("SKIPPED: LIENTHONG_PG is not set (scripts/test starts PostgreSQL)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start("a", dir.path(), &cluster.url, "127.0.0.1:0");
    let addrs = vec![node.addr];
    wait_for_active(&addrs, Duration::from_secs(20)).await;

    let cycle_count = cycles("LIENTHONG_DB_CRASH_CYCLES", 10);
    let recoveries = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(0usize));
    let tally = {
        let (recoveries, unavailable, addrs) =
            (recoveries.clone(), unavailable.clone(), addrs.clone());
        let cluster = &cluster;
        under_load(addrs.clone(), cycle_count, move |_| {
            let (recoveries, unavailable, addrs) =
                (recoveries.clone(), unavailable.clone(), addrs.clone());
            async move {
                cluster.ctl(&["stop", "-m", "immediate"]);
                // While the database is down, calls are refused as UNAVAILABLE.
                if let Some(mut client) = exchange(addrs[0], "department").await {
                    let probe = tokio::time::timeout(
                        CALL_TIMEOUT,
                        send(
                            &mut client,
                            envelope("while-down", DEPARTMENT, &[DISTRICT], b"x"),
                        ),
                    )
                    .await;
                    if let Ok(result) = probe {
                        let status = result.expect_err("nothing is accepted without the database");
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        *unavailable.lock().expect("count") += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                cluster.ctl(&["start"]);
                let started = Instant::now();
                while !serving(addrs[0]).await {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "the gateway did not recover by itself"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                recoveries
                    .lock()
                    .expect("recoveries")
                    .push(started.elapsed());
            }
        })
        .await
    };
    let mut recoveries = recoveries.lock().expect("recoveries").clone();
    let max = *recoveries.iter().max().expect("cycles");
    let median = median(&mut recoveries);
    report(format!(
        "pg_ctl stop -m immediate under load, {cycle_count} cycles: {} documents sent, {} lost, \
         {} delivered again after their ack, {} probes while down answered UNAVAILABLE; \
         serving again after the restart: median {} ms, max {} ms",
        tally.sent.len(),
        tally.sent.difference(&tally.acked).count(),
        tally.after_ack.len(),
        unavailable.lock().expect("count"),
        median.as_millis(),
        max.as_millis()
    ));
    assert!(
        tally.after_ack.is_empty(),
        "delivered after ack: {:?}",
        tally.after_ack
    );
    assert!(
        *unavailable.lock().expect("count") > 0,
        "the outage was seen"
    );
    node.stop();
    audit_verify(&cluster.url);
}
