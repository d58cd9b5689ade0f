//! edXML from the command line: `send --edxml`, `receive --format edxml`,
//! `edxml verify` (offline) and `edxml sign` (with a key the gateway holds
//! for your agency).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lienthong_proto::{self as proto, edxml_client::EdxmlClient};
use tonic::transport::Channel;

use super::{
    CLIENT_MESSAGE_LIMIT, Connection, ack_delivery, format_timestamp,
    pki::{Answered, OfflineTrust, file_stream, parse_role, print_reports, save_signed},
    print_delivery_report, status_error,
};

/// `lienthong edxml ...`
#[derive(Subcommand, Debug)]
pub enum EdxmlCommand {
    /// Verify an edXML package's XML signature offline and print the report
    /// (its namespace, algorithms, what the reference covers, the chain).
    Verify(EdxmlVerifyArgs),
    /// Sign an edXML package with your agency's key held by the gateway: an
    /// enveloped ds:Signature (exclusive C14N, SHA-256) over the whole
    /// package, attachments included.
    Sign(EdxmlSignArgs),
}

/// `lienthong edxml verify`
#[derive(Args, Debug)]
pub struct EdxmlVerifyArgs {
    /// The package.
    file: PathBuf,
    #[command(flatten)]
    trust: OfflineTrust,
    /// Accept SHA-1 signatures (reported as weak), as `[edxml] accept_sha1`.
    #[arg(long)]
    accept_sha1: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `lienthong edxml sign`
#[derive(Args, Debug)]
pub struct EdxmlSignArgs {
    /// The role of your agency's key to sign with (head, organization...).
    #[arg(long)]
    role: String,
    /// The package to sign (without a signature).
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the signed package.
    #[arg(long)]
    out: PathBuf,
    /// Your agency's org code; read from your certificate's OU when omitted.
    #[arg(long, env = "LIENTHONG_AGENCY")]
    agency: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Runs an edxml command.
pub async fn edxml(command: EdxmlCommand) -> anyhow::Result<()> {
    match command {
        EdxmlCommand::Verify(args) => verify(args),
        EdxmlCommand::Sign(args) => sign(args).await,
    }
}

fn verify(args: EdxmlVerifyArgs) -> anyhow::Result<()> {
    let verifier = args.trust.verifier()?;
    let mapped = lienthong_edxml::Mapped::open(&args.file)?;
    let package = lienthong_edxml::read(
        mapped.bytes(),
        &lienthong_edxml::Limits::default(),
        &mut lienthong_edxml::Discard,
    )
    .with_context(|| format!("reading {}", args.file.display()))?;
    let Some(report) = lienthong_edxml::verify_signature(
        mapped.bytes(),
        &package,
        &verifier,
        &|_| None,
        args.accept_sha1,
    ) else {
        bail!("{} carries no XML signature", args.file.display());
    };
    print_reports(&[report], args.json)
}

async fn client(connection: &Connection) -> anyhow::Result<EdxmlClient<Channel>> {
    Ok(EdxmlClient::new(connection.channel().await?)
        .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
        .max_decoding_message_size(CLIENT_MESSAGE_LIMIT))
}

/// `lienthong send --edxml FILE`: the package as it is.
pub async fn send(path: &Path, connection: &Connection) -> anyhow::Result<()> {
    use proto::edxml_send_request::Part;
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let stream = file_stream(
        path,
        proto::EdxmlSendRequest {
            part: Some(Part::Options(proto::EdxmlSendOptions { size })),
        },
        |chunk| proto::EdxmlSendRequest {
            part: Some(Part::Chunk(chunk)),
        },
        &failed,
    )?;
    let answer = client(connection)
        .await?
        .send(stream)
        .await
        .map_err(status_error)?
        .into_inner();
    if let Some(error) = failed.lock().ok().and_then(|mut f| f.take()) {
        bail!("reading {} failed part way: {error}", path.display());
    }
    let receipt = answer
        .receipt
        .context("the gateway answered without a receipt")?;
    let accepted = receipt
        .accepted_at
        .map(format_timestamp)
        .unwrap_or_default();
    if answer.status {
        println!(
            "status accepted: on message {} at {accepted}",
            receipt.message_id
        );
        return Ok(());
    }
    let kind = if receipt.duplicate {
        "already accepted"
    } else {
        "accepted"
    };
    println!(
        "{kind}: edXML document as message {} from {} at {accepted}",
        receipt.message_id, receipt.from
    );
    for recipient in &receipt.recipients {
        println!("  queued for {}", recipient.code);
    }
    for attachment in &receipt.attachments {
        println!(
            "  {}  {} bytes  sha256 {}",
            attachment.name, attachment.size, attachment.sha256
        );
    }
    for report in &answer.reports {
        print_delivery_report(report);
    }
    Ok(())
}

/// Where a received package is written: `OUT/SENDER/MESSAGE_ID.edxml` for
/// a document, `OUT/SENDER/MESSAGE_ID.status-N.edxml` for the N-th status
/// about a document you sent.
fn package_path(out: &Path, head: &proto::EdxmlHead) -> anyhow::Result<PathBuf> {
    let dir = out.join(super::inbox::safe_component(&head.sender));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let id = super::inbox::safe_component(&head.message_id);
    if !head.status {
        return Ok(dir.join(format!("{id}.edxml")));
    }
    let mut n = 1;
    loop {
        let path = dir.join(format!("{id}.status-{n}.edxml"));
        if !path.exists() {
            return Ok(path);
        }
        n += 1;
    }
}

/// `lienthong receive --format edxml`: each delivery saved as a package.
pub async fn receive(
    connection: &Connection,
    out: &Path,
    ack: bool,
    once: bool,
    sign: bool,
    max_in_flight: u32,
) -> anyhow::Result<()> {
    use proto::edxml_delivery::Part;
    use std::io::Write;
    let mut exchange = proto::exchange_client::ExchangeClient::new(connection.channel().await?);
    let mut stream = client(connection)
        .await?
        .receive(proto::EdxmlReceiveRequest {
            max_in_flight,
            drain: once,
            sign,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if !once {
        eprintln!("waiting for documents (Ctrl-C to stop)...");
    }
    struct Open {
        delivery_id: String,
        head: proto::EdxmlHead,
        path: PathBuf,
        partial: PathBuf,
        file: std::fs::File,
        written: u64,
    }
    let (mut documents, mut statuses) = (0usize, 0usize);
    let mut open: Option<Open> = None;
    let finish = |current: Open| -> anyhow::Result<(String, bool, PathBuf)> {
        current.file.sync_all()?;
        std::fs::rename(&current.partial, &current.path)
            .with_context(|| format!("writing {}", current.path.display()))?;
        Ok((current.delivery_id, current.head.status, current.path))
    };
    while let Some(delivery) = stream.message().await.map_err(status_error)? {
        let done = match delivery.part {
            Some(Part::Head(head)) => {
                if let Some(current) = &open {
                    bail!(
                        "delivery {} began while {} was incomplete",
                        delivery.delivery_id,
                        current.delivery_id
                    );
                }
                let path = package_path(out, &head)?;
                let partial = path.with_extension("edxml.partial");
                let file = std::fs::File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?;
                if head.status {
                    println!(
                        "status on your message {} (attempt {})",
                        head.message_id, delivery.attempt
                    );
                } else {
                    println!(
                        "document {} from {} (attempt {}), {} bytes of edXML",
                        head.message_id, head.sender, delivery.attempt, head.size
                    );
                    for report in &head.reports {
                        print_delivery_report(report);
                    }
                }
                let current = Open {
                    delivery_id: delivery.delivery_id,
                    head,
                    path,
                    partial,
                    file,
                    written: 0,
                };
                if current.head.size == 0 {
                    Some(finish(current)?)
                } else {
                    open = Some(current);
                    None
                }
            }
            Some(Part::Chunk(chunk)) => {
                let Some(current) = open.as_mut() else {
                    bail!(
                        "the gateway sent bytes for delivery {} without its head",
                        delivery.delivery_id
                    );
                };
                current.file.write_all(&chunk)?;
                current.written += chunk.len() as u64;
                if current.written > current.head.size {
                    bail!("delivery {} is longer than announced", current.delivery_id);
                }
                if current.written == current.head.size {
                    open.take().map(finish).transpose()?
                } else {
                    None
                }
            }
            None => None,
        };
        if let Some((delivery_id, status, path)) = done {
            println!("  saved to {}", path.display());
            if status {
                statuses += 1;
            } else {
                documents += 1;
            }
            if ack {
                ack_delivery(&mut exchange, &delivery_id).await?;
                println!("  acknowledged");
            }
        }
    }
    if let Some(current) = open {
        let _ = std::fs::remove_file(&current.partial);
        bail!(
            "the stream ended before delivery {} was complete; it will be delivered again",
            current.delivery_id
        );
    }
    if statuses > 0 {
        println!("{statuses} status message(s) received");
    }
    println!("{documents} document(s) received as edXML");
    Ok(())
}

async fn sign(args: EdxmlSignArgs) -> anyhow::Result<()> {
    use proto::{edxml_sign_request::Part as In, edxml_sign_response::Part as Out};
    let role = parse_role(&args.role)?;
    let Some(agency) = args
        .agency
        .clone()
        .or_else(|| args.connection.agency_from_certificate())
    else {
        bail!("--agency is required: your certificate does not name your org code");
    };
    let size = std::fs::metadata(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?
        .len();
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let stream = file_stream(
        &args.input,
        proto::EdxmlSignRequest {
            part: Some(In::Options(proto::EdxmlSignOptions {
                key: Some(proto::KeyRef {
                    agency,
                    role: role as i32,
                }),
                size,
            })),
        },
        |chunk| proto::EdxmlSignRequest {
            part: Some(In::Chunk(chunk)),
        },
        &failed,
    )?;
    let answer = client(&args.connection)
        .await?
        .sign(stream)
        .await
        .map_err(status_error)?
        .into_inner();
    let (signed, written) = save_signed(
        answer,
        &args.out,
        &args.input,
        &failed,
        |message: proto::EdxmlSignResponse| match message.part? {
            Out::Signed(signed) => Some(Answered::Summary(signed)),
            Out::Chunk(chunk) => Some(Answered::Chunk(chunk)),
        },
        |signed| signed.size,
    )
    .await?;
    let signer = signed.signer.unwrap_or_default();
    println!("signed as {} by {}", args.role, signer.subject);
    println!(
        "signed package written to {} ({written} bytes)",
        args.out.display()
    );
    Ok(())
}
