//! `lienthong bench`: a load generator over gRPC with mTLS, and the
//! in-process verification ceiling it is compared with.
//!
//! Documents are signed once up front with certs-test signer keys; each send
//! gets a fresh message id. Latency is measured from when a send was due
//! (with `--rate`, its slot in the schedule), so a gateway that falls behind
//! shows it in the percentiles instead of slowing the generator down.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use lienthong_domain::clock::SystemClock;
use lienthong_pki::{self as pki, CryptoRules, Indication, TrustStore, Verifier};
use lienthong_proto::{self as proto, admin_client::AdminClient, exchange_client::ExchangeClient};
use serde::Serialize;
use tonic::transport::Channel;

use super::{CLIENT_MESSAGE_LIMIT, Connection, read};

/// `lienthong bench`
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Sends in flight at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Size of the one attachment: bytes, or with KB / MB (1024-based).
    #[arg(long, default_value = "10KB")]
    size: String,
    /// Detached RSA-2048 signatures per document (0-2: the sender's
    /// organization signer, then its head).
    #[arg(long, default_value_t = 1)]
    signatures: usize,
    /// Distinct documents (each signed up front) the sends cycle through.
    /// 1 means every send carries the same content, stored once.
    #[arg(long, default_value_t = 1)]
    distinct: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many documents instead (whichever comes first).
    #[arg(long)]
    count: Option<u64>,
    /// Documents per second to offer in total; 0 sends as fast as the
    /// gateway answers (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Receivers take and acknowledge the documents as they arrive;
    /// reports end-to-end latency (send → acknowledged by the recipient).
    #[arg(long)]
    end_to_end: bool,
    /// Receive streams in end-to-end mode.
    #[arg(long, default_value_t = 2)]
    receivers: usize,
    /// Sending agency: certs-test identity name (agencies/NAME.crt).
    #[arg(long, default_value = "department")]
    from: String,
    /// Receiving agency: certs-test identity name.
    #[arg(long, default_value = "district")]
    to: String,
    /// The test PKI directory.
    #[arg(long, default_value = "certs-test")]
    certs: PathBuf,
    /// Gateway URL.
    #[arg(
        long,
        env = "LIENTHONG_SERVER",
        default_value = "https://localhost:50051"
    )]
    server: String,
    /// CA certificate (PEM) of the gateway's server certificate; default:
    /// the test PKI's root.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Federation: the receiving agency is at this other gateway (the
    /// document crosses gateways); `--to` is then a directory holding the
    /// receiving agency's `department.crt`/`.key`, e.g.
    /// certs-test/federation/h17.
    #[arg(long, requires_all = ["receiver_ca", "to_code"])]
    receiver_server: Option<String>,
    /// CA certificate (PEM) of the receiving gateway's server certificate.
    #[arg(long)]
    receiver_ca: Option<PathBuf>,
    /// The receiving agency's org code, when its certificate does not name
    /// it (federation).
    #[arg(long)]
    to_code: Option<String>,
    /// The gateway's process id, to sample its memory (RSS) every second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Measure the in-process verification ceiling instead: full
    /// verification (chain, CRLs) of the document's signature on every core.
    #[arg(long)]
    verify_only: bool,
    /// Send edXML packages through Edxml.Send instead of envelopes (with
    /// --end-to-end, receivers take them as edXML too), each signed up
    /// front by the sender's organization key (an enveloped XML signature
    /// over the whole package). A package's DocumentId makes its message
    /// id, so each send is its own package: needs --count.
    #[arg(long, requires = "count")]
    edxml: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Serialize, Default)]
struct Latency {
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p95_ms: ms(histogram.value_at_quantile(0.95)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// The recipient's queue after the run.
#[derive(Debug, Serialize, Default)]
struct Depth {
    waiting: u64,
    in_flight: u64,
    dead: u64,
}

/// Gateway memory over the run.
#[derive(Debug, Serialize, Default)]
struct Memory {
    samples: usize,
    first_mib: f64,
    max_mib: f64,
    last_mib: f64,
    /// Mean RSS of the second half of the run minus the first half's.
    second_half_growth_mib: f64,
    /// RSS at each tenth of the run (eleven points, first to last), MiB.
    series_mib: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Results {
    edxml: bool,
    document_bytes: u64,
    signatures: usize,
    distinct: usize,
    clients: usize,
    connections: usize,
    offered_rate: f64,
    end_to_end: bool,
    seconds: f64,
    sent_ok: u64,
    errors: BTreeMap<String, u64>,
    documents_per_second: f64,
    mib_per_second: f64,
    accept_latency: Latency,
    end_to_end_latency: Option<Latency>,
    acknowledged: u64,
    queue_after: Option<Depth>,
    queue_error: Option<String>,
    memory: Option<Memory>,
}

#[derive(Debug, Serialize)]
struct VerifyResults {
    document_bytes: u64,
    threads: usize,
    seconds: f64,
    verifications: u64,
    per_second: f64,
    per_second_per_thread: f64,
}

struct Shared {
    accept: Mutex<Histogram<u64>>,
    end_to_end: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    issued: AtomicU64,
    ok: AtomicU64,
    acked: AtomicU64,
    /// Send due times of documents not yet acknowledged (end-to-end mode).
    due: Mutex<HashMap<String, Instant>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn parse_size(text: &str) -> anyhow::Result<u64> {
    let upper = text.trim().to_ascii_uppercase();
    let (number, unit) = match upper.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => upper.split_at(at),
        None => (upper.as_str(), ""),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("--size {text:?}: expected a number like 10KB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        other => bail!("--size {text:?}: unknown unit {other:?} (use B, KB or MB)"),
    };
    Ok(value * scale)
}

impl BenchArgs {
    fn identity(&self, name: &str, dir: &str) -> Connection {
        Connection {
            server: self.server.clone(),
            tls_cert: Some(self.certs.join(dir).join(format!("{name}.crt"))),
            tls_key: Some(self.certs.join(dir).join(format!("{name}.key"))),
            tls_ca: Some(
                self.ca
                    .clone()
                    .unwrap_or_else(|| self.certs.join("ca/root.crt")),
            ),
        }
    }

    /// The receiving agency: at this gateway, or (federation) at
    /// `--receiver-server`, holding `{--to}/department.crt`.
    fn recipient(&self) -> Connection {
        match (&self.receiver_server, &self.receiver_ca) {
            (Some(server), Some(ca)) => {
                let dir = PathBuf::from(&self.to);
                Connection {
                    server: server.clone(),
                    tls_cert: Some(dir.join("department.crt")),
                    tls_key: Some(dir.join("department.key")),
                    tls_ca: Some(ca.clone()),
                }
            }
            _ => self.identity(&self.to, "agencies"),
        }
    }

    /// An administrator of the recipient's gateway.
    fn recipient_admin(&self) -> Connection {
        let mut admin = self.identity("admin", "admin");
        if let (Some(server), Some(ca)) = (&self.receiver_server, &self.receiver_ca) {
            admin.server = server.clone();
            admin.tls_ca = Some(ca.clone());
        }
        admin
    }
}

/// `distinct` documents of `size` bytes from `from` to `to`, each signed
/// up front by the first `signatures` of the signer `identity`'s
/// organization and head keys in `certs`.
fn documents(
    certs: &Path,
    identity: &str,
    signatures: usize,
    distinct: usize,
    size: u64,
    from: &str,
    to: &str,
) -> anyhow::Result<Vec<proto::Envelope>> {
    if signatures > 2 {
        bail!("--signatures: at most 2 (the sender's organization and head signers)");
    }
    let roles = ["organization", "head"];
    let chain = pki::certificates_from_pem(&[read(&certs.join("ca/agency-ca.crt"), "CA")?])?;
    let mut keys = Vec::new();
    for role in &roles[..signatures] {
        let base = certs.join("signers").join(format!("{identity}-{role}"));
        let mut key = pki::signing_key_from_pem(
            &read(&base.with_extension("crt"), "signer certificate")?,
            &read(&base.with_extension("key"), "signer key")?,
            None,
        )?;
        key.set_chain(chain.clone());
        keys.push(key);
    }
    let mut out = Vec::with_capacity(distinct.max(1));
    for index in 0..distinct.max(1) {
        let content: Vec<u8> = (0..size)
            .map(|i| (i as usize).wrapping_mul(31).wrapping_add(index * 7919) as u8)
            .collect();
        let mut signatures = Vec::new();
        for key in &keys {
            signatures.push(proto::Signature {
                attachment: "bench.pdf".into(),
                cms_der: pki::sign_detached(key, &content)?,
            });
        }
        out.push(proto::Envelope {
            message_id: String::new(),
            from: from.to_owned(),
            to: vec![to.to_owned()],
            document: Some(proto::Document {
                code: Some(proto::DocumentCode {
                    number: "1".into(),
                    notation: "BENCH".into(),
                }),
                r#type: "official-letter".into(),
                subject: "Tải thử (load test)".into(),
                ..Default::default()
            }),
            attachments: vec![proto::Attachment {
                name: "bench.pdf".into(),
                media_type: "application/pdf".into(),
                content,
                ..Default::default()
            }],
            signatures,
            edxml_header: Vec::new(),
        });
    }
    Ok(out)
}

/// `count` edXML packages of one `size`-byte attachment from `from` to
/// `to`, each with its own DocumentId and signed up front by `identity`'s
/// organization key: (message id, package).
fn edxml_packages(
    certs: &Path,
    identity: &str,
    count: u64,
    size: u64,
    from: &str,
    to: &str,
    run: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use lienthong_edxml::write::{self, DocumentView, Organization, OutAttachment};
    let chain = pki::certificates_from_pem(&[read(&certs.join("ca/agency-ca.crt"), "CA")?])?;
    let base = certs
        .join("signers")
        .join(format!("{identity}-organization"));
    let mut key = pki::signing_key_from_pem(
        &read(&base.with_extension("crt"), "signer certificate")?,
        &read(&base.with_extension("key"), "signer key")?,
        None,
    )?;
    key.set_chain(chain);
    let content: Vec<u8> = (0..size)
        .map(|i| (i as usize).wrapping_mul(31) as u8)
        .collect();
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for n in 0..count {
        let document = lienthong_domain::envelope::DocumentInfo {
            number: n.to_string(),
            notation: format!("BENCH-{run}"),
            doc_type: "official-letter".into(),
            subject: "Tải thử (load test)".into(),
            ..Default::default()
        };
        let document_id = write::document_id(from, "2026-12-02", &document);
        let header = write::header_from_envelope(&DocumentView {
            from: Organization {
                code: from.to_owned(),
                name: String::new(),
            },
            to: vec![Organization {
                code: to.to_owned(),
                name: String::new(),
            }],
            document: &document,
            document_id: document_id.clone(),
            earlier_document_id: None,
            message_id: "",
            accepted_at: 0,
        });
        let mut unsigned = Vec::new();
        let (header_end, _) = write::write_package(
            &mut unsigned,
            &header,
            &[OutAttachment {
                content_id: String::new(),
                name: "bench.pdf".into(),
                description: String::new(),
                content_type: "application/pdf".into(),
            }],
            &mut |_| Ok(Box::new(std::io::Cursor::new(content.clone())) as Box<dyn std::io::Read>),
        )?;
        let insertion = lienthong_edxml::sign_written(&unsigned, header_end, &key)?;
        out.push((
            lienthong_edxml::map::message_id(&document_id, None),
            insertion.apply(&unsigned),
        ));
    }
    Ok(out)
}

fn code_of(connection: &Connection, name: &str) -> anyhow::Result<String> {
    connection
        .agency_from_certificate()
        .with_context(|| format!("the certificate of {name:?} names no org code in its OU"))
}

/// Runs the load generator, or the verification ceiling.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let size = parse_size(&args.size)?;
    if args.verify_only {
        return verify_ceiling(&args, size);
    }
    if args.clients == 0 || args.connections == 0 {
        bail!("--clients and --connections must be at least 1");
    }
    let sender = args.identity(&args.from, "agencies");
    let recipient = args.recipient();
    let from = code_of(&sender, &args.from)?;
    let to = match &args.to_code {
        Some(code) => code.clone(),
        None => code_of(&recipient, &args.to)?,
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (pool, packages) = if args.edxml {
        if !args.json {
            eprintln!(
                "signing {} edXML packages up front...",
                args.count.unwrap_or(0)
            );
        }
        let packages = edxml_packages(
            &args.certs,
            &args.from,
            args.count.unwrap_or(0),
            size,
            &from,
            &to,
            &run,
        )?;
        (Arc::new(Vec::new()), Arc::new(packages))
    } else {
        let pool = documents(
            &args.certs,
            &args.from,
            args.signatures,
            args.distinct,
            size,
            &from,
            &to,
        )?;
        (Arc::new(pool), Arc::new(Vec::new()))
    };
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(sender.channel().await?);
    }
    let shared = Arc::new(Shared {
        accept: Mutex::new(histogram()),
        end_to_end: Mutex::new(histogram()),
        errors: Mutex::new(BTreeMap::new()),
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        due: Mutex::new(HashMap::new()),
    });
    let progress = progress_bar(&args);
    let memory = args.server_pid.map(sample_memory);
    let receivers = if args.end_to_end {
        let mut handles = Vec::new();
        for _ in 0..args.receivers.max(1) {
            let channel = recipient.channel().await?;
            if args.edxml {
                handles.push(tokio::spawn(receive_edxml_and_ack(channel, shared.clone())));
            } else {
                handles.push(tokio::spawn(receive_and_ack(
                    channel,
                    shared.clone(),
                    format!("{run}-"),
                )));
            }
        }
        handles
    } else {
        Vec::new()
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut senders = Vec::new();
    for index in 0..args.clients {
        let channel = channels[index % channels.len()].clone();
        let client = ExchangeClient::new(channel.clone())
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT);
        let edxml_client = proto::edxml_client::EdxmlClient::new(channel)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT);
        let (shared, pool, packages, progress, run) = (
            shared.clone(),
            pool.clone(),
            packages.clone(),
            progress.clone(),
            run.clone(),
        );
        let (rate, end_to_end) = (args.rate, args.end_to_end);
        senders.push(tokio::spawn(async move {
            let mut client = client;
            let mut edxml_client = edxml_client;
            loop {
                let n = shared.issued.fetch_add(1, Ordering::Relaxed);
                if n >= limit || Instant::now() >= deadline {
                    break;
                }
                let due = if rate > 0.0 {
                    let at = start + Duration::from_secs_f64(n as f64 / rate);
                    if at >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    at
                } else {
                    Instant::now()
                };
                let answer = if let Some((message_id, package)) = packages.get(n as usize) {
                    if end_to_end {
                        lock(&shared.due).insert(message_id.clone(), due);
                    }
                    use proto::edxml_send_request::Part;
                    let parts = [
                        Part::Options(proto::EdxmlSendOptions {
                            size: package.len() as u64,
                        }),
                        Part::Chunk(package.clone()),
                    ]
                    .map(|part| proto::EdxmlSendRequest { part: Some(part) });
                    edxml_client
                        .send(tokio_stream::iter(parts))
                        .await
                        .map(|_| ())
                } else if pool.is_empty() {
                    break;
                } else {
                    let mut envelope = pool[(n as usize) % pool.len()].clone();
                    envelope.message_id = format!("{run}-{n}");
                    if end_to_end {
                        lock(&shared.due).insert(envelope.message_id.clone(), due);
                    }
                    client
                        .send(proto::SendRequest {
                            envelope: Some(envelope),
                        })
                        .await
                        .map(|_| ())
                };
                let took = micros(due.elapsed());
                match answer {
                    Ok(_) => {
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                        let _ = lock(&shared.accept).record(took);
                    }
                    Err(status) => {
                        *lock(&shared.errors)
                            .entry(format!("{:?}", status.code()))
                            .or_default() += 1;
                    }
                }
                progress.inc(1);
            }
        }));
    }
    for sender in senders {
        sender.await.context("a sending task failed")?;
    }
    let mut elapsed = start.elapsed();
    let sent_ok = shared.ok.load(Ordering::Relaxed);
    if args.end_to_end {
        progress.set_message("waiting for the receivers to acknowledge");
        let grace = Instant::now() + Duration::from_secs(60);
        while shared.acked.load(Ordering::Relaxed) < sent_ok && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        elapsed = start.elapsed();
        for receiver in receivers {
            receiver.abort();
        }
    }
    progress.finish_and_clear();

    let (queue_after, queue_error) = match queue_depth(&args, &to).await {
        Ok(depth) => (Some(depth), None),
        Err(error) => (None, Some(format!("{error:#}"))),
    };
    let seconds = elapsed.as_secs_f64();
    let memory = match memory {
        Some(sampler) => Some(sampler.finish().await),
        None => None,
    };
    let errors = lock(&shared.errors).clone();
    let accept_latency = Latency::of(&lock(&shared.accept));
    let end_to_end_latency = args
        .end_to_end
        .then(|| Latency::of(&lock(&shared.end_to_end)));
    let results = Results {
        edxml: args.edxml,
        document_bytes: size,
        signatures: args.signatures,
        distinct: args.distinct.max(1),
        clients: args.clients,
        connections: args.connections,
        offered_rate: args.rate,
        end_to_end: args.end_to_end,
        seconds,
        sent_ok,
        errors,
        documents_per_second: sent_ok as f64 / seconds,
        mib_per_second: (sent_ok * size) as f64 / seconds / 1_048_576.0,
        accept_latency,
        end_to_end_latency,
        acknowledged: shared.acked.load(Ordering::Relaxed),
        queue_after,
        queue_error,
        memory,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_results(&results);
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn progress_bar(args: &BenchArgs) -> indicatif::ProgressBar {
    if args.json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match args.count {
        Some(count) => indicatif::ProgressBar::new(count),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = match args.count {
        Some(_) => "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} documents ({per_sec}) {msg}",
        None => "{spinner} {elapsed_precise} {pos} documents sent ({per_sec}) {msg}",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One receive stream: acknowledges everything, and times this run's
/// documents from when their send was due to when the ack was durable.
async fn receive_and_ack(channel: Channel, shared: Arc<Shared>, prefix: String) {
    let mut client = ExchangeClient::new(channel)
        .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
        .max_encoding_message_size(CLIENT_MESSAGE_LIMIT);
    loop {
        let stream = client
            .receive(proto::ReceiveRequest {
                max_in_flight: 512,
                drain: false,
            })
            .await;
        let Ok(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(delivery)) = stream.message().await {
            let message_id = match &delivery.payload {
                Some(proto::delivery::Payload::Envelope(envelope)) => envelope.message_id.clone(),
                _ => String::new(),
            };
            let mut acker = client.clone();
            let shared = shared.clone();
            let ours = message_id.starts_with(&prefix);
            tokio::spawn(async move {
                let acked = acker
                    .ack(proto::AckRequest {
                        delivery_id: delivery.delivery_id,
                    })
                    .await;
                if acked.is_ok() && ours {
                    let due = lock(&shared.due).remove(&message_id);
                    if let Some(due) = due {
                        let _ = lock(&shared.end_to_end).record(micros(due.elapsed()));
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
}

/// One edXML receive stream: each package read whole (its head, then its
/// bytes), then acknowledged; times it from when its send was due.
async fn receive_edxml_and_ack(channel: Channel, shared: Arc<Shared>) {
    use proto::edxml_delivery::Part;
    let exchange = ExchangeClient::new(channel.clone());
    let mut client = proto::edxml_client::EdxmlClient::new(channel)
        .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
        .max_encoding_message_size(CLIENT_MESSAGE_LIMIT);
    loop {
        let stream = client
            .receive(proto::EdxmlReceiveRequest {
                max_in_flight: 512,
                drain: false,
                sign: false,
            })
            .await;
        let Ok(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        // The package being read: delivery id, message id, bytes to come.
        let mut current: Option<(String, String, u64)> = None;
        while let Ok(Some(delivery)) = stream.message().await {
            let done = match delivery.part {
                Some(Part::Head(head)) => {
                    current = Some((delivery.delivery_id, head.message_id, head.size));
                    current.as_ref().is_some_and(|c| c.2 == 0)
                }
                Some(Part::Chunk(chunk)) => match current.as_mut() {
                    Some(open) => {
                        open.2 = open.2.saturating_sub(chunk.len() as u64);
                        open.2 == 0
                    }
                    None => false,
                },
                None => false,
            };
            if !done {
                continue;
            }
            let Some((delivery_id, message_id, _)) = current.take() else {
                continue;
            };
            let mut acker = exchange.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                let acked = acker.ack(proto::AckRequest { delivery_id }).await;
                if acked.is_ok() {
                    let due = lock(&shared.due).remove(&message_id);
                    if let Some(due) = due {
                        let _ = lock(&shared.end_to_end).record(micros(due.elapsed()));
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
}

async fn queue_depth(args: &BenchArgs, code: &str) -> anyhow::Result<Depth> {
    let admin = args.recipient_admin();
    let mut client = AdminClient::new(admin.channel().await?);
    let stats = client
        .queue_stats(proto::QueueStatsRequest {
            agency: code.to_owned(),
        })
        .await
        .map_err(super::status_error)?
        .into_inner();
    let mut depth = Depth::default();
    for agency in stats.agencies {
        depth.waiting += agency.depths.iter().map(|d| d.depth).sum::<u64>();
        depth.in_flight += agency.in_flight;
        depth.dead += agency.dead;
    }
    Ok(depth)
}

struct MemorySampler {
    samples: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn sample_memory(pid: u32) -> MemorySampler {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let into = samples.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            match rss_bytes(pid) {
                Some(bytes) => lock(&into).push(bytes),
                None => return,
            }
        }
    });
    MemorySampler { samples, task }
}

impl MemorySampler {
    async fn finish(self) -> Memory {
        self.task.abort();
        let _ = self.task.await;
        let samples = lock(&self.samples).clone();
        let mib = |bytes: f64| bytes / 1_048_576.0;
        let mean = |part: &[u64]| {
            if part.is_empty() {
                0.0
            } else {
                part.iter().sum::<u64>() as f64 / part.len() as f64
            }
        };
        let (first, second) = samples.split_at(samples.len() / 2);
        Memory {
            samples: samples.len(),
            first_mib: mib(samples.first().copied().unwrap_or(0) as f64),
            max_mib: mib(samples.iter().copied().max().unwrap_or(0) as f64),
            last_mib: mib(samples.last().copied().unwrap_or(0) as f64),
            second_half_growth_mib: mib(mean(second) - mean(first)),
            series_mib: if samples.is_empty() {
                Vec::new()
            } else {
                (0..=10)
                    .map(|tenth| {
                        let at = (samples.len() - 1) * tenth / 10;
                        (mib(samples[at] as f64) * 10.0).round() / 10.0
                    })
                    .collect()
            },
        }
    }
}

fn print_results(r: &Results) {
    let mode = if r.offered_rate > 0.0 {
        format!("offered {:.0} documents/s", r.offered_rate)
    } else {
        "closed loop".to_owned()
    };
    let kind = if r.edxml {
        "edXML packages, one XML signature each, every one distinct".to_owned()
    } else {
        format!(
            "documents, {} signature(s), {} distinct",
            r.signatures, r.distinct
        )
    };
    println!(
        "lienthong bench: {} B {kind}, {} clients over {} connections, {mode}{}",
        r.document_bytes,
        r.clients,
        r.connections,
        if r.end_to_end { ", end to end" } else { "" }
    );
    let errors: u64 = r.errors.values().sum();
    println!(
        "  {} accepted, {errors} refused or failed, in {:.1} s",
        r.sent_ok, r.seconds
    );
    println!(
        "  throughput: {:.0} documents/s, {:.2} MiB/s",
        r.documents_per_second, r.mib_per_second
    );
    let line = |name: &str, l: &Latency| {
        println!(
            "  {name}: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
        );
    };
    line("accept latency (Send → signed receipt)", &r.accept_latency);
    if let Some(e2e) = &r.end_to_end_latency {
        line("end to end (Send → recipient's ack durable)", e2e);
        println!("  acknowledged by the recipient: {}", r.acknowledged);
    }
    if r.errors.is_empty() {
        println!("  errors: none");
    } else {
        for (code, count) in &r.errors {
            println!("  errors: {code} × {count}");
        }
    }
    match (&r.queue_after, &r.queue_error) {
        (Some(d), _) => println!(
            "  recipient's queue after the run: {} waiting, {} in flight, {} dead",
            d.waiting, d.in_flight, d.dead
        ),
        (None, Some(error)) => println!("  recipient's queue: unavailable ({error})"),
        (None, None) => {}
    }
    if let Some(m) = &r.memory {
        println!(
            "  gateway RSS: first {:.1} MiB, max {:.1} MiB, last {:.1} MiB ({} samples; second half {:+.1} MiB vs first)",
            m.first_mib, m.max_mib, m.last_mib, m.samples, m.second_half_growth_mib
        );
    }
}

/// Full verification of the bench document's signature on every core, in
/// this process: the ceiling the gateway's end-to-end rate is compared with.
fn verify_ceiling(args: &BenchArgs, size: u64) -> anyhow::Result<()> {
    let certs = &args.certs;
    let file = |path: &str| read(&certs.join(path), "certs-test file");
    let trust = TrustStore::build(
        pki::certificates_from_pem(&[file("ca/root.crt")?])?,
        pki::certificates_from_pem(&[file("ca/agency-ca.crt")?])?,
        vec![
            pki::crl_from_bytes(&file("ca/agency-ca.crl")?)?,
            pki::crl_from_bytes(&file("ca/root.crl")?)?,
        ],
    )?;
    let verifier = Arc::new(Verifier::new(
        trust,
        CryptoRules::default(),
        Arc::new(SystemClock),
    ));
    let document = documents(&args.certs, &args.from, 1, 1, size, "-", "-")?
        .pop()
        .context("no document")?;
    let content = Arc::new(document.attachments[0].content.clone());
    let signature = Arc::new(document.signatures[0].cms_der.clone());
    let check = verifier.verify(&content, &signature, "bench.pdf", &|_| None);
    if check
        .iter()
        .any(|r| r.indication != Indication::TotalPassed)
    {
        bail!("the bench signature does not verify: {check:?}");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deadline = Instant::now() + Duration::from_secs(args.duration.max(1));
    let start = Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (verifier, content, signature, total) = (
                verifier.clone(),
                content.clone(),
                signature.clone(),
                total.clone(),
            );
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    let _ = verifier.verify(&content, &signature, "bench.pdf", &|_| None);
                    total.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let seconds = start.elapsed().as_secs_f64();
    let verifications = total.load(Ordering::Relaxed);
    let results = VerifyResults {
        document_bytes: size,
        threads,
        seconds,
        verifications,
        per_second: verifications as f64 / seconds,
        per_second_per_thread: verifications as f64 / seconds / threads as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!(
            "in-process full verification of {size} B, {threads} thread(s): {:.0} /s ({:.0} /s per thread; {} in {seconds:.1} s)",
            results.per_second, results.per_second_per_thread, verifications
        );
    }
    Ok(())
}
