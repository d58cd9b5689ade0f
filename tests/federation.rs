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
        let data = self.dir.path().join(format!("data-{}", NAMES[index]));
        let started = spawn_gateway_listening(
            &data,
            &format!("127.0.0.1:{}", self.ports[index]),
            &["--config".as_ref(), self.paths[index].as_os_str()],
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
        let dead = admin(&gateways, 1)
            .await
            .list_dead_letters(proto::ListDeadLettersRequest {
                agency: "peer:VN:GOV:H56".into(),
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
    let letter = found.expect("the loop ended in a dead letter at the hub");
    assert_eq!(letter.message_id, "loop-1");
    assert!(
        letter.reason.contains("routing loop") && letter.reason.contains("VN:GOV:HUB"),
        "{}",
        letter.reason
    );
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

    // The real hub comes back: the waiting document goes through.
    drop(gateways.running[1].take());
    let real = std::fs::read_to_string(&gateways.paths[1])
        .expect("config")
        .replace("federation/hub/impostor.", "federation/hub/gateway.");
    std::fs::write(&gateways.paths[1], real).expect("config");
    gateways.start(1);
    let delivered = collect(&mut receiver, 1).await;
    assert_eq!(delivered.len(), 1, "delivered once the right hub is back");
}
