//! Command-line clients: they talk to a gateway over gRPC with mTLS, like
//! any agency system would; and the offline signature check.

mod bench;
mod edxml;
mod group;
mod inbox;
mod pdf;
mod pki;
mod trace;

pub use self::bench::{BenchArgs, bench};
pub use self::edxml::{EdxmlCommand, edxml};
pub use self::group::{GroupCommand, group};
pub use self::pdf::{PdfCommand, pdf};
pub use self::pki::{KeyCommand, SignArgs, SignerCommand, VerifyArgs, key, sign, signer, verify};
pub use self::trace::{StatusArgs, TraceArgs, status, trace};

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use lienthong_proto::{self as proto, admin_client::AdminClient, exchange_client::ExchangeClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A command that talks to a gateway (or, for `verify`, checks a signature
/// offline), as the binary parsed it.
pub enum ClientCommand {
    /// `lienthong agency ...`
    Agency(AgencyCommand, Connection),
    /// `lienthong send`
    Send(SendArgs),
    /// `lienthong receive`
    Receive(ReceiveArgs),
    /// `lienthong bench`
    Bench(BenchArgs),
    /// `lienthong signer ...`
    Signer(SignerCommand, Connection),
    /// `lienthong key ...`
    Key(KeyCommand, Connection),
    /// `lienthong sign`
    Sign(SignArgs),
    /// `lienthong verify`
    Verify(VerifyArgs),
    /// `lienthong group ...`
    Group(GroupCommand, Connection),
    /// `lienthong status`
    Status(StatusArgs),
    /// `lienthong trace`
    Trace(TraceArgs),
    /// `lienthong queue ...`
    Queue(QueueCommand, Connection),
    /// `lienthong peer ...`
    Peer(PeerCommand, Connection),
    /// `lienthong pdf ...`
    Pdf(PdfCommand),
    /// `lienthong edxml ...`
    Edxml(EdxmlCommand),
}

/// Runs a client command on an async runtime of its own. The futures are
/// polled here, in this crate: an async body is compiled where it is
/// polled, and polling them from the binary compiled them all again there.
pub fn run(command: ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            ClientCommand::Agency(command, connection) => agency(command, &connection).await,
            ClientCommand::Send(args) => send(args).await,
            ClientCommand::Receive(args) => receive(args).await,
            ClientCommand::Bench(args) => bench(args).await,
            ClientCommand::Signer(command, connection) => signer(command, &connection).await,
            ClientCommand::Key(command, connection) => key(command, &connection).await,
            ClientCommand::Sign(args) => sign(args).await,
            ClientCommand::Verify(args) => verify(args),
            ClientCommand::Group(command, connection) => group(command, &connection).await,
            ClientCommand::Status(args) => status(args).await,
            ClientCommand::Trace(args) => trace(args).await,
            ClientCommand::Queue(command, connection) => queue(command, &connection).await,
            ClientCommand::Peer(command, connection) => peer(command, &connection).await,
            ClientCommand::Pdf(command) => pdf(command).await,
            ClientCommand::Edxml(command) => edxml(command).await,
        }
    })
}

/// How to reach the gateway and who we are.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Gateway URL.
    #[arg(
        long,
        env = "LIENTHONG_SERVER",
        default_value = "https://localhost:50051",
        global = true
    )]
    server: String,
    /// Client certificate (PEM) identifying your agency or admin.
    #[arg(long = "tls-cert", env = "LIENTHONG_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long = "tls-key", env = "LIENTHONG_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that issued the gateway's certificate.
    #[arg(long = "tls-ca", env = "LIENTHONG_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
}

pub fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

impl Connection {
    pub(crate) async fn channel(&self) -> anyhow::Result<Channel> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            bail!(
                "--tls-cert, --tls-key and --tls-ca are required (or LIENTHONG_TLS_CERT, LIENTHONG_TLS_KEY, LIENTHONG_TLS_CA)"
            );
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?))
            .identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        Channel::from_shared(self.server.clone())
            .with_context(|| {
                format!(
                    "{:?} is not a URL like https://localhost:50051",
                    self.server
                )
            })?
            .tls_config(tls)?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.server))
    }

    /// The org code written in our certificate's OU, if it holds one.
    pub(crate) fn agency_from_certificate(&self) -> Option<String> {
        let pem = std::fs::read(self.tls_cert.as_ref()?).ok()?;
        let der = lienthong_pki::pem_certificates(&pem)
            .ok()?
            .into_iter()
            .next()?;
        let facts = lienthong_pki::certificate_facts(&der).ok()?;
        facts
            .subject
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("OU="))
            .find(|ou| lienthong_domain::envelope::OrgCode::parse(ou, "ou").is_ok())
            .map(str::to_owned)
    }
}

/// Larger than any limit a gateway enforces; the gateway judges size.
pub(crate) const CLIENT_MESSAGE_LIMIT: usize = 1 << 30;

pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// `lienthong agency ...`
#[derive(Subcommand, Debug)]
pub enum AgencyCommand {
    /// Register an agency bound to a client certificate.
    Add {
        /// Org code, e.g. 000.00.12.H56.
        #[arg(long)]
        code: String,
        /// Name, e.g. "Sở Tài chính".
        #[arg(long)]
        name: String,
        /// The agency's client certificate, PEM (repeat for several).
        #[arg(long = "cert", required = true)]
        certificates: Vec<PathBuf>,
        /// Parent agency's org code.
        #[arg(long, default_value = "")]
        parent: String,
    },
    /// List agencies.
    List,
    /// Disable an agency.
    Disable {
        /// Org code.
        code: String,
    },
    /// Enable a disabled agency.
    Enable {
        /// Org code.
        code: String,
    },
    /// Bind a renewed client certificate to an agency; the old one keeps
    /// working until removed.
    CertAdd {
        /// Org code.
        code: String,
        /// The new client certificate, PEM.
        #[arg(long = "cert")]
        certificate: PathBuf,
    },
    /// Unbind a client certificate (by SHA-256 fingerprint, as `agency list`
    /// shows it); an agency's last certificate cannot be removed.
    CertRemove {
        /// Org code.
        code: String,
        /// SHA-256 fingerprint, hex.
        #[arg(long)]
        fingerprint: String,
    },
}

fn print_agency(agency: &proto::Agency) {
    let state = if agency.disabled {
        "disabled"
    } else {
        "enabled"
    };
    let parent = if agency.parent.is_empty() {
        "-"
    } else {
        &agency.parent
    };
    println!(
        "{}  {:<8}  parent {:<13}  {}",
        agency.code, state, parent, agency.name
    );
    for fingerprint in &agency.certificate_fingerprints {
        println!("    certificate sha256 {fingerprint}");
    }
}

/// Runs an agency command.
pub async fn agency(command: AgencyCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        AgencyCommand::Add {
            code,
            name,
            certificates,
            parent,
        } => {
            let certificate_pem = certificates
                .iter()
                .map(|path| {
                    read(path, "agency certificate").and_then(|bytes| {
                        String::from_utf8(bytes).context("certificate is not PEM text")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let response = client
                .register_agency(proto::RegisterAgencyRequest {
                    code,
                    name,
                    parent,
                    certificate_pem,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if let Some(agency) = response.agency {
                println!("registered:");
                print_agency(&agency);
            }
        }
        AgencyCommand::List => {
            let response = client
                .list_agencies(proto::ListAgenciesRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if response.agencies.is_empty() {
                println!("no agencies registered");
            }
            for agency in &response.agencies {
                print_agency(agency);
            }
        }
        AgencyCommand::Disable { code } => {
            let response = client
                .disable_agency(proto::DisableAgencyRequest { code })
                .await
                .map_err(status_error)?
                .into_inner();
            response.agency.iter().for_each(print_agency);
        }
        AgencyCommand::Enable { code } => {
            let response = client
                .enable_agency(proto::EnableAgencyRequest { code })
                .await
                .map_err(status_error)?
                .into_inner();
            response.agency.iter().for_each(print_agency);
        }
        AgencyCommand::CertAdd { code, certificate } => {
            let certificate_pem = String::from_utf8(read(&certificate, "agency certificate")?)
                .context("certificate is not PEM text")?;
            let response = client
                .add_agency_certificate(proto::AddAgencyCertificateRequest {
                    code,
                    certificate_pem,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            response.agency.iter().for_each(print_agency);
        }
        AgencyCommand::CertRemove { code, fingerprint } => {
            let response = client
                .remove_agency_certificate(proto::RemoveAgencyCertificateRequest {
                    code,
                    fingerprint,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            response.agency.iter().for_each(print_agency);
        }
    }
    Ok(())
}

/// Document priority on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PriorityArg {
    /// Thường.
    Normal,
    /// Khẩn.
    Urgent,
    /// Thượng khẩn.
    VeryUrgent,
    /// Hỏa tốc.
    Flash,
    /// Hỏa tốc hẹn giờ.
    FlashScheduled,
}

impl PriorityArg {
    fn proto(self) -> proto::Priority {
        match self {
            PriorityArg::Normal => proto::Priority::Normal,
            PriorityArg::Urgent => proto::Priority::Urgent,
            PriorityArg::VeryUrgent => proto::Priority::VeryUrgent,
            PriorityArg::Flash => proto::Priority::Flash,
            PriorityArg::FlashScheduled => proto::Priority::FlashScheduled,
        }
    }
}

/// `lienthong send`
#[derive(Args, Debug)]
pub struct SendArgs {
    /// Send an edXML package (QCVN 102:2016) as it is: its header says who
    /// it is from and for, its attachments are inside it, and its XML
    /// signature is verified. No other document option applies.
    #[arg(long, conflicts_with_all = ["to", "code", "subject", "files", "signatures", "stream", "message_id"])]
    edxml: Option<PathBuf>,
    /// Recipients, comma-separated: org codes, children:CODE (the agencies
    /// under CODE), group:NAME.
    #[arg(long, value_delimiter = ',', required_unless_present = "edxml")]
    to: Vec<String>,
    /// Number and notation, e.g. "101/KH-UBND".
    #[arg(long, required_unless_present = "edxml")]
    code: Option<String>,
    /// Subject (trích yếu).
    #[arg(long, required_unless_present = "edxml")]
    subject: Option<String>,
    /// Document type that selects the signature policy.
    #[arg(long = "type", default_value = "official-letter")]
    doc_type: String,
    /// Priority.
    #[arg(long, value_enum, default_value = "normal")]
    priority: PriorityArg,
    /// Message id; a fresh UUID when omitted. Reuse it to retry safely.
    #[arg(long)]
    message_id: Option<String>,
    /// Your agency's org code; read from your certificate's OU when omitted.
    #[arg(long, env = "LIENTHONG_AGENCY")]
    from: Option<String>,
    /// Detached CMS signature for a file: NAME=SIGNATURE.p7s (repeatable).
    #[arg(long = "signature")]
    signatures: Vec<String>,
    /// Save the gateway's signed receipt here (check it with `lienthong receipt verify`).
    #[arg(long)]
    receipt_out: Option<PathBuf>,
    /// Stream the files with SendStream (memory bounded by the chunk size).
    /// Chosen by itself when the files total more than 8 MiB.
    #[arg(long)]
    stream: bool,
    /// Files of the document.
    #[arg(required_unless_present = "edxml")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

/// Files totalling more than this are sent with SendStream.
const STREAM_ABOVE: u64 = 8 * 1024 * 1024;
/// Chunk size of a streamed send.
const SEND_CHUNK: usize = 1024 * 1024;

fn media_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Sends a document.
pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.edxml {
        return edxml::send(path, &args.connection).await;
    }
    let code = args.code.clone().unwrap_or_default();
    let subject = args.subject.clone().unwrap_or_default();
    let from = match args
        .from
        .clone()
        .or_else(|| args.connection.agency_from_certificate())
    {
        Some(from) => from,
        None => bail!("--from is required: your certificate does not name your org code"),
    };
    let (number, notation) = code.split_once('/').unwrap_or((code.as_str(), ""));
    let mut sizes = Vec::new();
    for path in &args.files {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading the file {}", path.display()))?;
        sizes.push(meta.len());
    }
    let streamed = args.stream || sizes.iter().sum::<u64>() > STREAM_ABOVE;
    let mut attachments = Vec::new();
    for (path, size) in args.files.iter().zip(&sizes) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?
            .to_owned();
        attachments.push(proto::Attachment {
            media_type: media_type(path).to_owned(),
            content: if streamed {
                Vec::new()
            } else {
                read(path, "file")?
            },
            name,
            size: *size,
            sha256: String::new(),
        });
    }
    let mut signatures = Vec::new();
    for spec in &args.signatures {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--signature {spec:?} must be NAME=FILE, e.g. plan.pdf=plan.pdf.p7s");
        };
        signatures.push(proto::Signature {
            attachment: name.to_owned(),
            cms_der: read(Path::new(file), "signature")?,
        });
    }
    let message_id = args
        .message_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let envelope = proto::Envelope {
        message_id,
        from,
        to: args.to.clone(),
        document: Some(proto::Document {
            code: Some(proto::DocumentCode {
                number: number.to_owned(),
                notation: notation.to_owned(),
            }),
            r#type: args.doc_type.clone(),
            subject,
            priority: args.priority.proto() as i32,
            ..Default::default()
        }),
        attachments,
        signatures,
        edxml_header: Vec::new(),
    };
    let mut client = ExchangeClient::new(args.connection.channel().await?)
        .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
        .max_decoding_message_size(CLIENT_MESSAGE_LIMIT);
    let response = if streamed {
        send_streamed(&mut client, envelope, &args.files)
            .await
            .map_err(status_error)?
    } else {
        client
            .send(proto::SendRequest {
                envelope: Some(envelope),
            })
            .await
            .map_err(status_error)?
            .into_inner()
    };
    let receipt = response
        .receipt
        .context("gateway answered without a receipt")?;
    if let Some(path) = &args.receipt_out {
        use prost::Message;
        std::fs::write(path, receipt.encode_to_vec())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let accepted = receipt
        .accepted_at
        .map(format_timestamp)
        .unwrap_or_default();
    let kind = if receipt.duplicate {
        "already accepted"
    } else {
        "accepted"
    };
    println!(
        "{kind}: message {} from {} at {accepted}",
        receipt.message_id, receipt.from
    );
    for recipient in &receipt.recipients {
        if recipient.via.starts_with("forwarded to ") {
            println!("  {} {}", recipient.code, recipient.via);
        } else {
            println!("  queued for {}", recipient.code);
        }
    }
    for attachment in &receipt.attachments {
        println!(
            "  {}  {} bytes  sha256 {}",
            attachment.name, attachment.size, attachment.sha256
        );
    }
    Ok(())
}

/// SendStream: the envelope, then each file in 1 MiB chunks read as they
/// are sent, with a progress line on a terminal.
async fn send_streamed(
    client: &mut ExchangeClient<Channel>,
    envelope: proto::Envelope,
    files: &[PathBuf],
) -> Result<proto::SendResponse, tonic::Status> {
    use proto::send_stream_request::Part;
    use tokio::io::AsyncReadExt;
    let total: u64 = envelope.attachments.iter().map(|a| a.size).sum();
    let names: Vec<String> = envelope
        .attachments
        .iter()
        .map(|a| a.name.clone())
        .collect();
    let (parts, receiver) = tokio::sync::mpsc::channel(4);
    let files = files.to_vec();
    let reader = tokio::spawn(async move {
        let first = proto::SendStreamRequest {
            part: Some(Part::Envelope(envelope)),
        };
        if parts.send(first).await.is_err() {
            return Ok(());
        }
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut sent = 0u64;
        for (path, name) in files.iter().zip(names) {
            let mut file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            loop {
                let mut data = vec![0u8; SEND_CHUNK];
                let read = file
                    .read(&mut data)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                if read == 0 {
                    break;
                }
                data.truncate(read);
                sent += read as u64;
                let chunk = proto::ContentChunk {
                    attachment: name.clone(),
                    data,
                };
                let part = proto::SendStreamRequest {
                    part: Some(Part::Chunk(chunk)),
                };
                if parts.send(part).await.is_err() {
                    return Ok(());
                }
                if progress {
                    eprint!(
                        "\rsending {:>6.1} / {:.1} MiB",
                        sent as f64 / 1048576.0,
                        total as f64 / 1048576.0
                    );
                }
            }
        }
        if progress {
            eprintln!();
        }
        Ok::<_, anyhow::Error>(())
    });
    let answer = client
        .send_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await;
    match reader.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(tonic::Status::cancelled(format!("{error:#}"))),
        Err(error) => return Err(tonic::Status::internal(error.to_string())),
    }
    answer.map(tonic::Response::into_inner)
}

pub(crate) fn format_timestamp(timestamp: prost_types::Timestamp) -> String {
    let millis = timestamp.seconds.saturating_mul(1000) + i64::from(timestamp.nanos / 1_000_000);
    lienthong_domain::clock::format_rfc3339(millis)
}

/// `lienthong receive`
#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// Acknowledge each document once its files are saved (or printed).
    #[arg(long)]
    ack: bool,
    /// Save each document's files under DIR/SENDER/MESSAGE_ID/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Take what is waiting and exit, instead of waiting for new documents.
    #[arg(long)]
    once: bool,
    /// Most unacknowledged documents held at once.
    #[arg(long, default_value_t = 0)]
    max_in_flight: u32,
    /// How to take deliveries: the gateway's envelope (files saved one by
    /// one), or edxml: each document and status as an edXML package
    /// (OUT/SENDER/MESSAGE_ID.edxml; needs --out).
    #[arg(long, value_enum, default_value = "envelope")]
    format: ReceiveFormatArg,
    /// With --format edxml: have the gateway sign each package with its own
    /// key (the trace hop it adds breaks the sender's signature).
    #[arg(long, requires = "out")]
    sign: bool,
    #[command(flatten)]
    connection: Connection,
}

/// `--format` of `lienthong receive`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveFormatArg {
    /// The gateway's envelope.
    Envelope,
    /// edXML packages.
    Edxml,
}

/// Receives documents.
pub async fn receive(args: ReceiveArgs) -> anyhow::Result<()> {
    if args.format == ReceiveFormatArg::Edxml {
        let Some(out) = &args.out else {
            bail!("--format edxml needs --out DIR: packages are saved as files");
        };
        return edxml::receive(
            &args.connection,
            out,
            args.ack,
            args.once,
            args.sign,
            args.max_in_flight,
        )
        .await;
    }
    if args.sign {
        bail!("--sign applies to --format edxml only");
    }
    let mut client = ExchangeClient::new(args.connection.channel().await?)
        .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
        .max_decoding_message_size(CLIENT_MESSAGE_LIMIT);
    let mut stream = client
        .receive(proto::ReceiveRequest {
            max_in_flight: args.max_in_flight,
            drain: args.once,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut count = 0usize;
    if !args.once {
        eprintln!("waiting for documents (Ctrl-C to stop)...");
    }
    let mut statuses = 0usize;
    let mut incoming: Option<Incoming> = None;
    while let Some(delivery) = stream.message().await.map_err(status_error)? {
        let envelope = match &delivery.payload {
            Some(proto::delivery::Payload::Chunk(chunk)) => {
                let Some(current) = incoming.as_mut() else {
                    bail!(
                        "the gateway sent content for delivery {} without its envelope",
                        delivery.delivery_id
                    );
                };
                if current.delivery_id != delivery.delivery_id {
                    bail!(
                        "content for delivery {} arrived while {} was incomplete",
                        delivery.delivery_id,
                        current.delivery_id
                    );
                }
                current.write(chunk)?;
                if current.complete() {
                    if let Some(done) = incoming.take() {
                        finish_incoming(done, args.ack, &mut client).await?;
                    }
                }
                continue;
            }
            Some(proto::delivery::Payload::Envelope(envelope)) => envelope,
            Some(proto::delivery::Payload::Status(status)) => {
                statuses += 1;
                println!(
                    "status {:02} from {} on your message {}: {}",
                    status.code, status.reporter, status.message_id, status.description
                );
                if args.ack {
                    ack_delivery(&mut client, &delivery.delivery_id).await?;
                }
                continue;
            }
            None => {
                println!("delivery {} carries nothing; skipped", delivery.delivery_id);
                continue;
            }
        };
        count += 1;
        print_envelope(envelope, delivery.attempt);
        for report in &delivery.reports {
            print_delivery_report(report);
        }
        if delivery.content_follows {
            let started = Incoming::start(&delivery.delivery_id, envelope, args.out.as_deref())?;
            if started.complete() {
                finish_incoming(started, args.ack, &mut client).await?;
            } else {
                incoming = Some(started);
            }
            continue;
        }
        if let Some(out) = &args.out {
            let dir = save_envelope(out, envelope)?;
            println!("  saved to {}", dir.display());
        }
        if args.ack {
            ack_delivery(&mut client, &delivery.delivery_id).await?;
            println!("  acknowledged");
        }
    }
    if let Some(current) = incoming {
        bail!(
            "the stream ended before the content of delivery {} was complete; it will be delivered again",
            current.delivery_id
        );
    }
    if statuses > 0 {
        println!("{statuses} status report(s) received");
    }
    println!("{count} document(s) received");
    Ok(())
}

pub(crate) async fn ack_delivery(
    client: &mut ExchangeClient<Channel>,
    delivery_id: &str,
) -> anyhow::Result<()> {
    client
        .ack(proto::AckRequest {
            delivery_id: delivery_id.to_owned(),
        })
        .await
        .map_err(status_error)?;
    Ok(())
}

fn print_envelope(envelope: &proto::Envelope, attempt: u32) {
    let document = envelope.document.clone().unwrap_or_default();
    let code = document.code.unwrap_or_default();
    let notation = if code.notation.is_empty() {
        String::new()
    } else {
        format!("/{}", code.notation)
    };
    println!(
        "document {} from {}: {}{} \"{}\" (attempt {attempt})",
        envelope.message_id, envelope.from, code.number, notation, document.subject
    );
    for attachment in &envelope.attachments {
        println!(
            "  {}  {} bytes  sha256 {}",
            attachment.name,
            attachment.content.len(),
            attachment.sha256
        );
    }
    for signature in &envelope.signatures {
        println!(
            "  signature over {} ({} bytes)",
            signature.attachment,
            signature.cms_der.len()
        );
    }
}

pub(crate) fn print_delivery_report(report: &proto::VerificationReport) {
    let indication = proto::Indication::try_from(report.indication)
        .map(|i| i.as_str_name().trim_start_matches("INDICATION_").to_owned())
        .unwrap_or_default();
    let signer = report.signer.clone().unwrap_or_default();
    let registered = if signer.agency.is_empty() {
        "not registered".to_owned()
    } else {
        let role = proto::SignerRole::try_from(signer.role)
            .map(|r| {
                r.as_str_name()
                    .trim_start_matches("SIGNER_ROLE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        format!("{} as {role}", signer.agency)
    };
    let place = report.embedded.as_ref().map_or(String::new(), |place| {
        format!(" [revision {} of {}]", place.revision, place.revisions)
    });
    println!(
        "  verified {}: {indication} ({registered}) {}{place}",
        report.attachment, report.message
    );
}

/// A large document whose content is arriving in chunks: each attachment
/// is written straight to its file (with --out) and hashed as it comes.
struct Incoming {
    delivery_id: String,
    document: Option<inbox::SavedDocument>,
    files: Vec<IncomingFile>,
    current: usize,
}

struct IncomingFile {
    name: String,
    size: u64,
    sha256: String,
    received: u64,
    hasher: sha2::Sha256,
    file: Option<(PathBuf, std::fs::File)>,
}

impl Incoming {
    fn start(
        delivery_id: &str,
        envelope: &proto::Envelope,
        out: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut document = match out {
            Some(out) => {
                let mut document =
                    inbox::SavedDocument::create(out, &envelope.from, &envelope.message_id)?;
                for (index, signature) in envelope.signatures.iter().enumerate() {
                    document.save_signature(index, &signature.attachment, &signature.cms_der)?;
                }
                Some(document)
            }
            None => None,
        };
        let mut files = Vec::new();
        for attachment in &envelope.attachments {
            let file = match document.as_mut() {
                Some(document) => Some(document.attachment_file(&attachment.name)?),
                None => None,
            };
            files.push(IncomingFile {
                name: attachment.name.clone(),
                size: attachment.size,
                sha256: attachment.sha256.clone(),
                received: 0,
                hasher: sha2::Digest::new(),
                file,
            });
        }
        let mut incoming = Self {
            delivery_id: delivery_id.to_owned(),
            document,
            files,
            current: 0,
        };
        incoming.skip_full();
        Ok(incoming)
    }

    fn skip_full(&mut self) {
        while self
            .files
            .get(self.current)
            .is_some_and(|f| f.received >= f.size)
        {
            self.current += 1;
        }
    }

    fn complete(&self) -> bool {
        self.current >= self.files.len()
    }

    fn write(&mut self, chunk: &proto::ContentChunk) -> anyhow::Result<()> {
        use std::io::Write;
        let Some(file) = self.files.get_mut(self.current) else {
            bail!("delivery {}: more content than announced", self.delivery_id);
        };
        if chunk.attachment != file.name {
            bail!(
                "delivery {}: content of {:?} arrived while {:?} was incomplete",
                self.delivery_id,
                chunk.attachment,
                file.name
            );
        }
        if file.received + chunk.data.len() as u64 > file.size {
            bail!(
                "delivery {}: {:?} is longer than its announced {} bytes",
                self.delivery_id,
                file.name,
                file.size
            );
        }
        sha2::Digest::update(&mut file.hasher, &chunk.data);
        if let Some((_, out)) = file.file.as_mut() {
            out.write_all(&chunk.data)
                .with_context(|| format!("writing {}", file.name))?;
        }
        file.received += chunk.data.len() as u64;
        self.skip_full();
        Ok(())
    }
}

/// Checks each file of a complete large document against its SHA-256,
/// fsyncs it, and acknowledges it when asked.
async fn finish_incoming(
    incoming: Incoming,
    ack: bool,
    client: &mut ExchangeClient<Channel>,
) -> anyhow::Result<()> {
    let mut document = incoming.document;
    for file in incoming.files {
        let actual = hex::encode(sha2::Digest::finalize(file.hasher));
        if actual != file.sha256 {
            bail!(
                "delivery {}: {:?} does not match its SHA-256 (got {actual}, announced {}); not acknowledged",
                incoming.delivery_id,
                file.name,
                file.sha256
            );
        }
        if let (Some(document), Some((path, out))) = (document.as_mut(), file.file) {
            // Checked again as read back from disk, not only as streamed.
            document.attachment_done(&file.name, &path, out, &file.sha256)?;
        }
        println!("  {}: {} bytes, sha256 checked", file.name, file.size);
    }
    if let Some(document) = document {
        let dir = document.finish()?;
        println!("  saved to {}", dir.display());
    }
    if ack {
        ack_delivery(client, &incoming.delivery_id).await?;
        println!("  acknowledged");
    }
    Ok(())
}

/// Saves a document delivered whole; see [`inbox`].
fn save_envelope(out: &Path, envelope: &proto::Envelope) -> anyhow::Result<PathBuf> {
    let mut document = inbox::SavedDocument::create(out, &envelope.from, &envelope.message_id)?;
    for attachment in &envelope.attachments {
        document.save_attachment(&attachment.name, &attachment.content)?;
    }
    for (index, signature) in envelope.signatures.iter().enumerate() {
        document.save_signature(index, &signature.attachment, &signature.cms_der)?;
    }
    document.finish()
}

/// `lienthong queue ...`
#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Depth per agency and priority, in flight, dead letters, oldest age.
    Stats {
        /// Only this agency.
        #[arg(long, default_value = "")]
        agency: String,
    },
    /// List dead letters: deliveries that ran out of attempts.
    Dead {
        /// Only this agency.
        #[arg(long, default_value = "")]
        agency: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put a dead letter back into its queue, attempts reset.
    Replay {
        /// The id `queue dead` shows.
        dead_letter_id: String,
    },
    /// Delete every waiting document of an agency's queue.
    Purge {
        /// The agency.
        #[arg(long)]
        agency: String,
        /// Required: purged documents are gone for this agency.
        #[arg(long)]
        confirm: bool,
    },
}

/// Peer gateway commands (federation).
#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// Check the way to a peer step by step (TCP, TLS with its pinned
    /// certificate, a round trip) and its outbound queue; exits non-zero
    /// naming the failing step.
    Probe {
        /// The peer's gateway id, e.g. VN:GOV:HUB.
        id: String,
    },
}

/// Runs a peer command.
pub async fn peer(command: PeerCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        PeerCommand::Probe { id } => {
            let probe = client
                .probe_peer(proto::ProbePeerRequest { peer: id })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("peer {} at {}", probe.peer, probe.url);
            for step in &probe.steps {
                println!(
                    "  {:<12} {:<6} {:>9.1} ms  {}",
                    step.step,
                    if step.ok { "ok" } else { "FAILED" },
                    step.micros as f64 / 1000.0,
                    step.detail
                );
            }
            if let Some(queue) = &probe.queue {
                let waiting: u64 = queue.depths.iter().map(|d| d.depth).sum();
                println!(
                    "outbound queue {}: {waiting} waiting, {} in flight, {} dead, oldest {} s",
                    queue.agency, queue.in_flight, queue.dead, queue.oldest_age_seconds
                );
            }
            if !probe.ok {
                let failed = probe
                    .steps
                    .iter()
                    .find(|step| !step.ok)
                    .map_or("a step", |step| step.step.as_str());
                bail!("peer {} is not reachable: {failed} failed", probe.peer);
            }
        }
    }
    Ok(())
}

/// Runs a queue command.
pub async fn queue(command: QueueCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        QueueCommand::Stats { agency } => {
            let response = client
                .queue_stats(proto::QueueStatsRequest { agency })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{:<18} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>10}",
                "agency", "flash", "v.urg", "urgent", "normal", "in-flight", "dead", "oldest(s)"
            );
            for stats in &response.agencies {
                let depth = |p: proto::Priority| {
                    stats
                        .depths
                        .iter()
                        .find(|d| d.priority == p as i32)
                        .map_or(0, |d| d.depth)
                };
                println!(
                    "{:<18} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6} {:>10}",
                    stats.agency,
                    depth(proto::Priority::Flash),
                    depth(proto::Priority::VeryUrgent),
                    depth(proto::Priority::Urgent),
                    depth(proto::Priority::Normal),
                    stats.in_flight,
                    stats.dead,
                    stats.oldest_age_seconds
                );
            }
        }
        QueueCommand::Dead { agency, limit } => {
            let response = client
                .list_dead_letters(proto::ListDeadLettersRequest { agency, limit })
                .await
                .map_err(status_error)?
                .into_inner();
            if response.dead_letters.is_empty() {
                println!("no dead letters");
            }
            for dead in &response.dead_letters {
                let at = dead.dead_at.map(format_timestamp).unwrap_or_default();
                println!(
                    "{}  message {} from {} to {}, {} attempts, dead at {at}\n    {}",
                    dead.dead_letter_id,
                    dead.message_id,
                    dead.sender,
                    dead.agency,
                    dead.attempts,
                    dead.reason
                );
            }
        }
        QueueCommand::Replay { dead_letter_id } => {
            client
                .replay_dead_letter(proto::ReplayDeadLetterRequest {
                    dead_letter_id: dead_letter_id.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("replayed {dead_letter_id}: back in its queue with attempts reset");
        }
        QueueCommand::Purge { agency, confirm } => {
            if !confirm {
                bail!("purge deletes every waiting document of {agency}; add --confirm to do it");
            }
            let response = client
                .purge_queue(proto::PurgeQueueRequest {
                    agency: agency.clone(),
                    confirm,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "purged {} deliveries from the queue of {agency}",
                response.purged
            );
        }
    }
    Ok(())
}
