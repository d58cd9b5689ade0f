//! Three real gateways on 127.0.0.1, as in examples/federation/: province
//! H56 → the national hub → province H17, each with its own CA and pinned
//! peer certificates.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use common::*;
use lienthong::proto::{self, admin_client::AdminClient, exchange_client::ExchangeClient};
use tonic::transport::Channel;

const NAMES: [&str; 3] = ["h56", "hub", "h17"];
const H17_DEPARTMENT: &str = "000.00.12.H17";

/// The three example configs with free ports and absolute paths, each
/// passed through `edit` (by name), written in `dir`.
fn configs(dir: &Path, edit: impl Fn(&str, String) -> String) -> ([u16; 3], [PathBuf; 3]) {
    let ports = [0; 3].map(|_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    });
    let certs = certs().display().to_string();
    let paths = NAMES.map(|name| {
        let mut text =
            std::fs::read_to_string(repo().join(format!("examples/federation/{name}.toml")))
                .expect("example config")
                .replace("../../certs-test", &certs);
        for (index, port) in ports.iter().enumerate() {
            text = text.replace(
                &format!("127.0.0.1:5006{}", index + 1),
                &format!("127.0.0.1:{port}"),
            );
        }
        // Quick retries: a gateway that starts later than its peer (a busy
        // CI machine runs the tests side by side) must not push the first
        // forward into a long backoff.
        text.push_str("\n[queue]\nbackoff_initial_millis = 200\nbackoff_max_seconds = 2\n");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, edit(name, text)).expect("write config");
        path
    });
    (ports, paths)
}

struct Gateways {
    dir: tempfile::TempDir,
    ports: [u16; 3],
    paths: [PathBuf; 3],
    running: Vec<Option<(GatewayProcess, SocketAddr)>>,
}

impl Gateways {
    fn new(edit: impl Fn(&str, String) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ports, paths) = configs(dir.path(), edit);
        Self {
            dir,
            ports,
            paths,
            running: vec![None, None, None],
        }
    }

    fn start(&mut self, index: usize) -> SocketAddr {
        self.start_with_env(index, &[])
    }

    fn start_with_env(&mut self, index: usize, env: &[(&str, &str)]) -> SocketAddr {
        let data = self.dir.path().join(format!("data-{}", NAMES[index]));
        let started = spawn_gateway_env(
            &data,
            &format!("127.0.0.1:{}", self.ports[index]),
            &["--config".as_ref(), self.paths[index].as_os_str()],
            env,
        );
        let addr = started.1;
        self.running[index] = Some(started);
        addr
    }

    fn start_all(&mut self) {
        for index in 0..3 {
            self.start(index);
        }
    }

    fn addr(&self, index: usize) -> SocketAddr {
        self.running[index].as_ref().expect("running").1
    }
}

fn ca_of(index: usize) -> PathBuf {
    certs().join(format!("federation/{}/ca.crt", NAMES[index]))
}

async fn exchange(
    gateways: &Gateways,
    index: usize,
    cert: &Path,
    key: &Path,
) -> ExchangeClient<Channel> {
    ExchangeClient::new(
        connect_trusting(gateways.addr(index), Some((cert, key)), &ca_of(index))
            .await
            .expect("connect"),
    )
}

async fn h56_department(gateways: &Gateways) -> ExchangeClient<Channel> {
    let (cert, key) = identity_files("department");
    exchange(gateways, 0, &cert, &key).await
}

async fn h17_department(gateways: &Gateways) -> ExchangeClient<Channel> {
    let base = certs().join("federation/h17/department");
    exchange(
        gateways,
        2,
        &base.with_extension("crt"),
        &base.with_extension("key"),
    )
    .await
}

async fn admin(gateways: &Gateways, index: usize) -> AdminClient<Channel> {
    let (cert, key) = identity_files("admin");
    AdminClient::new(
        connect_trusting(gateways.addr(index), Some((&cert, &key)), &ca_of(index))
            .await
            .expect("connect"),
    )
}

/// Drains `client`'s queue until `want` deliveries came, within 30 s;
/// acks each.
async fn collect(client: &mut ExchangeClient<Channel>, want: usize) -> Vec<proto::Delivery> {
    let mut out = Vec::new();
    for _ in 0..150 {
        for delivery in drain(client).await {
            ack(client, &delivery).await;
            out.push(delivery);
        }
        if out.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// The status deliveries `client` receives within 30 s (until `want`),
/// acknowledged: (message id, reporter, code, description).
async fn statuses_of(
    client: &mut ExchangeClient<Channel>,
    want: usize,
) -> Vec<(String, String, i32, String)> {
    collect(client, want)
        .await
        .iter()
        .filter_map(|delivery| match &delivery.payload {
            Some(proto::delivery::Payload::Status(status)) => Some((
                status.message_id.clone(),
                status.reporter.clone(),
                status.code,
                status.description.clone(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_goes_from_a_province_through_the_hub_to_another_province_once() {
    let mut gateways = Gateways::new(|_, text| text);
    gateways.start_all();
    let mut sender = h56_department(&gateways).await;
    let content = b"Cong van gui So Tai chinh Thai Binh".to_vec();
    let message = envelope("fed-1", DEPARTMENT, &[H17_DEPARTMENT, DISTRICT], &content);
    let receipt = send(&mut sender, message.clone()).await.expect("send");
    let recipients: Vec<(String, String)> = receipt
        .recipients
        .iter()
        .map(|r| (r.code.clone(), r.via.clone()))
        .collect();
    assert_eq!(
        recipients,
        [
            (
                H17_DEPARTMENT.to_owned(),
                "forwarded to VN:GOV:HUB".to_owned()
            ),
            (DISTRICT.to_owned(), DISTRICT.to_owned()),
        ]
    );
    let mut receiver = h17_department(&gateways).await;
    let delivered = collect(&mut receiver, 1).await;
    assert_eq!(delivered.len(), 1, "one delivery at H17: {delivered:?}");
    let forwarded = envelope_of(&delivered[0]);
    assert_eq!(forwarded.message_id, "fed-1");
    assert_eq!(forwarded.from, DEPARTMENT);
    assert_eq!(
        forwarded.attachments[0].content, content,
        "content byte-equal"
    );
    assert_eq!(
        forwarded.signatures, message.signatures,
        "signatures travel unchanged"
    );
    assert!(
        delivered[0]
            .reports
            .iter()
            .all(|r| r.indication == proto::Indication::TotalPassed as i32),
        "H17 verified the signature itself: {:?}",
        delivered[0].reports
    );

    // H17's status 03 (accepted) goes back across the hub to the sender.
    receiver
        .report_status(proto::ReportStatusRequest {
            status: Some(proto::StatusReport {
                message_id: "fed-1".into(),
                sender: DEPARTMENT.into(),
                code: proto::StatusCode::Accepted as i32,
                description: "Đã tiếp nhận".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("status at H17");
    let statuses = statuses_of(&mut sender, 1).await;
    assert_eq!(
        statuses,
        [(
            "fed-1".to_owned(),
            H17_DEPARTMENT.to_owned(),
            proto::StatusCode::Accepted as i32,
            "Đã tiếp nhận".to_owned()
        )]
    );

    // The origin's trace shows the whole signed route, and it verifies.
    let trace = sender
        .trace(proto::TraceRequest {
            message_id: "fed-1".into(),
            sender: String::new(),
        })
        .await
        .expect("trace at H56")
        .into_inner();
    let route: Vec<(&str, &str, &str)> = trace
        .hops
        .iter()
        .map(|h| (h.gateway.as_str(), h.from.as_str(), h.to.as_str()))
        .collect();
    assert_eq!(
        route,
        [
            ("VN:GOV:H56", DEPARTMENT, "VN:GOV:HUB"),
            ("VN:GOV:HUB", "VN:GOV:H56", "VN:GOV:H17"),
            ("VN:GOV:H17", "VN:GOV:HUB", H17_DEPARTMENT),
        ]
    );
    let receipts = |dirs: &[&str]| -> Vec<String> {
        dirs.iter()
            .flat_map(|dir| {
                [
                    "--gateway-cert".to_owned(),
                    certs()
                        .join(format!("federation/{dir}/receipts.crt"))
                        .display()
                        .to_string(),
                ]
            })
            .collect()
    };
    let verified = run_trace(&gateways, &receipts(&["h56", "hub", "h17"]));
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(text.contains("verified: 3 hops"), "{text}");
    // Without the hub's certificate, the check names the hub's hop.
    let broken = run_trace(&gateways, &receipts(&["h56", "h17"]));
    assert!(!broken.status.success());
    let error = String::from_utf8_lossy(&broken.stderr);
    assert!(error.contains("hop 2 (VN:GOV:HUB) is broken"), "{error}");

    // Sent again: a duplicate at H56, nothing more at H17.
    let again = send(&mut sender, message).await.expect("send again");
    assert!(again.duplicate);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(drain(&mut receiver).await.is_empty(), "delivered twice");

    // Custody came back: the outbound queues at H56 and at the hub are empty.
    for (index, peer) in [(0, "peer:VN:GOV:HUB"), (1, "peer:VN:GOV:H17")] {
        let stats = admin(&gateways, index)
            .await
            .queue_stats(proto::QueueStatsRequest {
                agency: peer.into(),
            })
            .await
            .expect("queue stats")
            .into_inner();
        let queue = &stats.agencies[0];
        let waiting: u64 = queue.depths.iter().map(|d| d.depth).sum();
        assert_eq!(
            (waiting, queue.dead),
            (0, 0),
            "{peer} at {}: {queue:?}",
            NAMES[index]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_routing_loop_ends_in_a_dead_letter_with_the_reason() {
    // The hub sends H99 back to H56, which sends everything it does not
    // know to the hub.
    let mut gateways = Gateways::new(|name, text| match name {
        "hub" => text.replace("routes = [\"*.H56\"]", "routes = [\"*.H56\", \"*.H99\"]"),
        _ => text,
    });
    gateways.start_all();
    let mut sender = h56_department(&gateways).await;
    send(
        &mut sender,
        envelope("loop-1", DEPARTMENT, &["000.00.12.H99"], b"round and round"),
    )
    .await
    .expect("accepted: the loop is found further on");
    let mut found = None;
    for _ in 0..150 {
        let dead = admin(&gateways, 0)
            .await
            .list_dead_letters(proto::ListDeadLettersRequest {
                agency: "peer:VN:GOV:HUB".into(),
                limit: 10,
            })
            .await
            .expect("dead letters")
            .into_inner()
            .dead_letters;
        if let Some(letter) = dead.into_iter().next() {
            found = Some(letter);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The hub sees that H99 would go back to H56, already on the route,
    // and refuses; H56 dead-letters it with the hub's reason.
    let letter = found.expect("the loop ended in a dead letter at H56");
    assert_eq!(letter.message_id, "loop-1");
    assert!(
        letter.reason.contains("refused by VN:GOV:HUB")
            && letter
                .reason
                .contains("routing loop: 000.00.12.H99 would go on to VN:GOV:H56"),
        "{}",
        letter.reason
    );
    // The refusal travels back to the sender as a status 02 by the
    // recipient it could not reach.
    let statuses = statuses_of(&mut sender, 1).await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    let (id, reporter, code, description) = &statuses[0];
    assert_eq!(
        (id.as_str(), reporter.as_str(), *code),
        ("loop-1", "000.00.12.H99", proto::StatusCode::Refused as i32)
    );
    assert!(description.contains("routing loop"), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_with_another_certificate_is_refused_both_ways() {
    // The hub presents a certificate of its own CA, but not the pinned one.
    let mut gateways = Gateways::new(|name, text| match name {
        "hub" => text.replace("federation/hub/gateway.", "federation/hub/impostor."),
        _ => text,
    });
    gateways.start_all();
    let mut sender = h56_department(&gateways).await;
    send(
        &mut sender,
        envelope("pin-1", DEPARTMENT, &[H17_DEPARTMENT], b"for H17"),
    )
    .await
    .expect("accepted at H56");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = admin(&gateways, 0)
        .await
        .queue_stats(proto::QueueStatsRequest {
            agency: "peer:VN:GOV:HUB".into(),
        })
        .await
        .expect("queue stats")
        .into_inner();
    let waiting: u64 = stats.agencies[0].depths.iter().map(|d| d.depth).sum();
    assert_eq!(
        waiting, 1,
        "the document waits at H56: {:?}",
        stats.agencies[0]
    );
    let mut receiver = h17_department(&gateways).await;
    assert!(drain(&mut receiver).await.is_empty());

    // As a client too: a Forward from a certificate no peer pins.
    let (cert, key) = identity_files("department");
    let channel = connect_trusting(gateways.addr(2), Some((&cert, &key)), &ca_of(2))
        .await
        .expect("connect");
    let header = proto::ForwardRequest {
        part: Some(proto::forward_request::Part::Header(proto::ForwardHeader {
            envelope: Some(unsigned_envelope("x", DEPARTMENT, &[H17_DEPARTMENT], b"")),
            recipients: vec![H17_DEPARTMENT.into()],
            route: vec!["VN:GOV:HUB".into()],
            hops: Vec::new(),
        })),
    };
    let refused = proto::federation_client::FederationClient::new(channel)
        .forward(tokio_stream::iter(vec![header]))
        .await
        .expect_err("not a peer");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("not the pinned certificate"),
        "{}",
        refused.message()
    );

    // The probe names the failing step.
    let probe = run_probe(&gateways, 0, "VN:GOV:HUB");
    assert!(
        !probe.status.success(),
        "the probe passed with an impostor hub"
    );
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(
        text.contains("tcp          ok") && text.contains("tls          FAILED"),
        "{text}"
    );
    assert!(text.contains("not the pinned"), "{text}");
    assert!(
        text.contains("outbound queue peer:VN:GOV:HUB: 1 waiting"),
        "{text}"
    );

    // The real hub comes back: the waiting document goes through.
    drop(gateways.running[1].take());
    let real = std::fs::read_to_string(&gateways.paths[1])
        .expect("config")
        .replace("federation/hub/impostor.", "federation/hub/gateway.");
    std::fs::write(&gateways.paths[1], real).expect("config");
    gateways.start(1);
    let delivered = collect(&mut receiver, 1).await;
    assert_eq!(delivered.len(), 1, "delivered once the right hub is back");
    let probe = run_probe(&gateways, 0, "VN:GOV:HUB");
    let text = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.status.success(), "{text}");
    for step in ["tcp", "tls", "certificate", "round trip"] {
        assert!(text.contains(&format!("{step:<12} ok")), "{step}: {text}");
    }
    let unknown = run_probe(&gateways, 0, "VN:GOV:H99");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no peer VN:GOV:H99"),
        "{unknown:?}"
    );
}

/// `lienthong peer probe ID` at gateway `index`, as its administrator.
fn run_probe(gateways: &Gateways, index: usize, peer: &str) -> std::process::Output {
    cli_at(gateways, index, "admin", &["peer", "probe", peer])
}

/// The `lienthong` CLI against gateway `index`, as the certs-test identity
/// `who`, trusting that gateway's own CA.
fn cli_at(gateways: &Gateways, index: usize, who: &str, args: &[&str]) -> std::process::Output {
    let (cert, key) = identity_files(who);
    std::process::Command::new(BIN)
        .args(args)
        .env(
            "LIENTHONG_SERVER",
            format!("https://localhost:{}", gateways.addr(index).port()),
        )
        .env("LIENTHONG_TLS_CERT", cert)
        .env("LIENTHONG_TLS_KEY", key)
        .env("LIENTHONG_TLS_CA", ca_of(index))
        .output()
        .expect("run lienthong")
}

/// What the H17 department received, by message id: deliveries, and
/// whether an ack had answered OK before a delivery.
#[derive(Default)]
struct Received {
    acked: std::collections::HashSet<String>,
    again_after_ack: Vec<String>,
    deliveries: usize,
}

/// Takes what is waiting at H17 and acks it, once.
async fn receive_once(client: &mut ExchangeClient<Channel>, received: &mut Received) {
    let Ok(stream) = client
        .receive(proto::ReceiveRequest {
            max_in_flight: 256,
            drain: true,
        })
        .await
    else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(delivery)) = stream.message().await {
        received.deliveries += 1;
        let id = envelope_of(&delivery).message_id.clone();
        if received.acked.contains(&id) {
            received.again_after_ack.push(id.clone());
        }
        let acked = client
            .ack(proto::AckRequest {
                delivery_id: delivery.delivery_id.clone(),
            })
            .await;
        if acked.is_ok() {
            received.acked.insert(id);
        }
    }
}

/// The hub is killed with SIGKILL twenty times (CI; LIENTHONG_FED_CYCLES
/// for more) while H56 sends numbered documents and H17 receives and acks;
/// then H17 is down while documents wait at the hub. Every document H56
/// accepted arrives at H17 exactly once after its ack.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_hub_again_and_again_loses_nothing_and_duplicates_nothing() {
    let cycles: usize = std::env::var("LIENTHONG_FED_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut gateways = Gateways::new(|_, text| text);
    gateways.start_all();
    let mut sender = h56_department(&gateways).await;
    let mut receiver = h17_department(&gateways).await;
    let mut received = Received::default();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // H56 is never killed: every send answers.
    let sending = tokio::spawn(async move {
        let mut sent = Vec::new();
        for index in 0.. {
            if *stopped.borrow_and_update() {
                break;
            }
            let id = format!("k-{index}");
            let content = format!("document {index}").into_bytes();
            send(
                &mut sender,
                envelope(&id, DEPARTMENT, &[H17_DEPARTMENT], &content),
            )
            .await
            .expect("H56 accepts");
            sent.push(id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    });
    for cycle in 0..cycles {
        let wait = 150 + (cycle * 137) % 500;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        receive_once(&mut receiver, &mut received).await;
        drop(gateways.running[1].take()); // SIGKILL
        gateways.start(1);
    }
    // H17 down: what H56 sends now waits at the hub.
    drop(gateways.running[2].take());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(true);
    let sent = sending.await.expect("sender");
    let mut backlog = 0;
    for _ in 0..50 {
        let stats = admin(&gateways, 1)
            .await
            .queue_stats(proto::QueueStatsRequest {
                agency: "peer:VN:GOV:H17".into(),
            })
            .await
            .expect("hub stats")
            .into_inner();
        backlog = stats.agencies[0]
            .depths
            .iter()
            .map(|d| d.depth)
            .sum::<u64>();
        if backlog > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(backlog > 0, "nothing waited at the hub while H17 was down");
    gateways.start(2);
    let mut receiver = h17_department(&gateways).await;
    for _ in 0..300 {
        receive_once(&mut receiver, &mut received).await;
        if sent.iter().all(|id| received.acked.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lost: Vec<&String> = sent
        .iter()
        .filter(|id| !received.acked.contains(*id))
        .collect();
    let summary = format!(
        "federation: {cycles} SIGKILLs of the hub, H17 down once; sent OK {}, deliveries {}, \
         delivered {}, delivered again after ack {}, lost {}, backlog at the hub while H17 was down {backlog}\n",
        sent.len(),
        received.deliveries,
        received.acked.len(),
        received.again_after_ack.len(),
        lost.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(sent.len() >= 50, "too little traffic: {}", sent.len());
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        received.again_after_ack.is_empty(),
        "delivered again after an ack: {:?}",
        received.again_after_ack
    );
}

/// A hub that alters one byte of what it forwards (a test-only fault) is
/// caught by H17's own verification; the refusal reaches the sender.
#[tokio::test(flavor = "multi_thread")]
async fn a_byte_changed_by_a_malicious_hub_is_caught_and_reported_back() {
    let mut gateways = Gateways::new(|_, text| text);
    gateways.start(0);
    gateways.start_with_env(1, &[("LIENTHONG_FAULT_TAMPER_FORWARD", "1")]);
    gateways.start(2);
    let mut sender = h56_department(&gateways).await;
    send(
        &mut sender,
        envelope(
            "tamper-1",
            DEPARTMENT,
            &[H17_DEPARTMENT],
            b"So tien: 1.000.000 dong",
        ),
    )
    .await
    .expect("accepted at H56");
    let statuses = statuses_of(&mut sender, 1).await;
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    let (id, reporter, code, description) = &statuses[0];
    assert_eq!(
        (id.as_str(), reporter.as_str(), *code),
        (
            "tamper-1",
            H17_DEPARTMENT,
            proto::StatusCode::Refused as i32
        )
    );
    assert!(
        description.contains("VN:GOV:H17") && description.contains("FailedPrecondition"),
        "{description}"
    );
    let mut receiver = h17_department(&gateways).await;
    assert!(
        drain(&mut receiver).await.is_empty(),
        "H17 delivered an altered document"
    );
}

/// Forward takes bad input like SendStream does: precise codes, and
/// nothing left behind at the receiving gateway.
#[tokio::test(flavor = "multi_thread")]
async fn bad_forwards_are_refused_precisely_and_leave_nothing_behind() {
    use proto::forward_request::Part;
    let mut gateways = Gateways::new(|_, text| text);
    gateways.start(2);
    // H17's peer is the hub: the test holds the hub's certificate.
    let hub = certs().join("federation/hub/gateway");
    let channel = connect_trusting(
        gateways.addr(2),
        Some((&hub.with_extension("crt"), &hub.with_extension("key"))),
        &ca_of(2),
    )
    .await
    .expect("connect as the hub");
    let mut client = proto::federation_client::FederationClient::new(channel);
    let content = b"noi dung".to_vec();
    let signed = envelope("bf", DEPARTMENT, &[H17_DEPARTMENT], &content);
    let header = |route: &[&str], recipients: &[&str], size: u64| {
        let mut envelope = signed.clone();
        envelope.attachments[0].content.clear();
        envelope.attachments[0].size = size;
        proto::ForwardRequest {
            part: Some(Part::Header(proto::ForwardHeader {
                envelope: Some(envelope),
                recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
                route: route.iter().map(|r| (*r).to_owned()).collect(),
                hops: Vec::new(),
            })),
        }
    };
    let chunk = |data: &[u8]| proto::ForwardRequest {
        part: Some(Part::Chunk(proto::ContentChunk {
            attachment: "ke-hoach.pdf".into(),
            data: data.to_vec(),
        })),
    };
    let size = content.len() as u64;
    let route = ["VN:GOV:H56", "VN:GOV:HUB"];
    let to = [H17_DEPARTMENT];
    let mut tampered = content.clone();
    tampered[0] ^= 1;
    use tonic::Code;
    let cases: Vec<(&str, Vec<proto::ForwardRequest>, Code, &str)> = vec![
        ("an empty Forward", vec![], Code::InvalidArgument, "empty"),
        (
            "a chunk first",
            vec![chunk(b"x")],
            Code::InvalidArgument,
            "must be the header",
        ),
        (
            "a header without its envelope",
            vec![proto::ForwardRequest {
                part: Some(Part::Header(proto::ForwardHeader::default())),
            }],
            Code::InvalidArgument,
            "header.envelope",
        ),
        (
            "a route that does not end with the caller",
            vec![header(&["VN:GOV:H56"], &to, size), chunk(&content)],
            Code::InvalidArgument,
            "header.route",
        ),
        (
            "a route through this gateway (a loop)",
            vec![
                header(&["VN:GOV:H17", "VN:GOV:HUB"], &to, size),
                chunk(&content),
            ],
            Code::FailedPrecondition,
            "routing loop",
        ),
        (
            "more hops than federation.max_hops",
            vec![
                header(
                    &["VN:GOV:A1", "VN:GOV:A2", "VN:GOV:A3", "VN:GOV:HUB"],
                    &to,
                    size,
                ),
                chunk(&content),
            ],
            Code::FailedPrecondition,
            "too many hops",
        ),
        (
            "no recipients",
            vec![header(&route, &[], size), chunk(&content)],
            Code::InvalidArgument,
            "header.recipients",
        ),
        (
            "a recipient H17 does not know (it would go back to the hub)",
            vec![header(&route, &["000.00.77.H17"], size), chunk(&content)],
            Code::FailedPrecondition,
            "routing loop: 000.00.77.H17 would go on to VN:GOV:HUB",
        ),
        (
            "more bytes than declared",
            vec![header(&route, &to, 2), chunk(&content)],
            Code::InvalidArgument,
            "longer than its declared size",
        ),
        (
            "a Forward that ends early",
            vec![header(&route, &to, size)],
            Code::InvalidArgument,
            "ended after 0",
        ),
        (
            "content changed in transit",
            vec![header(&route, &to, size), chunk(&tampered)],
            Code::FailedPrecondition,
            "",
        ),
    ];
    for (case, frames, code, mentions) in cases {
        let refused = client
            .forward(tokio_stream::iter(frames))
            .await
            .expect_err(case);
        assert_eq!(refused.code(), code, "{case}: {refused:?}");
        assert!(
            refused.message().contains(mentions),
            "{case}: {:?} should mention {mentions:?}",
            refused.message()
        );
    }
    let data = gateways.dir.path().join("data-h17");
    let staged = staging_files(&data).len();
    assert_eq!(staged, 0, "a refused Forward left a staging file");
    let mut receiver = h17_department(&gateways).await;
    assert!(
        drain(&mut receiver).await.is_empty(),
        "a refused Forward was queued"
    );
    // And a good one is taken.
    let custody = client
        .forward(tokio_stream::iter(vec![
            header(&route, &to, size),
            chunk(&content),
        ]))
        .await
        .expect("a good forward")
        .into_inner()
        .custody
        .expect("custody receipt");
    assert!(!custody.duplicate);
    assert!(custody.signature.is_some(), "the custody receipt is signed");
}

/// `lienthong trace fed-1 --verify ARGS` at H56, as its department.
fn run_trace(gateways: &Gateways, args: &[String]) -> std::process::Output {
    let mut all = vec!["trace", "fed-1", "--verify"];
    all.extend(args.iter().map(String::as_str));
    cli_at(gateways, 0, "department", &all)
}
