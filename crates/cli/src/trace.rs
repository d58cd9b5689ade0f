//! `lienthong trace` and `lienthong status`: a message's life and the
//! statuses its recipients report.

use anyhow::Context;
use clap::Args;
use lienthong_proto::{self as proto, exchange_client::ExchangeClient};

use super::{Connection, status_error};

/// `lienthong trace`: a message's whole life, for its sender and recipients.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The sender's message id.
    message_id: String,
    /// The sender's org code; you, when omitted.
    #[arg(long, default_value = "")]
    sender: String,
    /// Check the signed hops of a document that crossed gateways: each
    /// signature, each link of the chain, and (with --gateway-cert) that
    /// each hop is signed by one of the given gateway certificates. Exits
    /// non-zero naming the first broken hop.
    #[arg(long)]
    verify: bool,
    /// A gateway's receipt certificate (PEM) that hops may be signed with
    /// (repeatable).
    #[arg(long = "gateway-cert")]
    gateway_certs: Vec<std::path::PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

/// A hop record as the domain checks it.
fn signed_hop(
    record: &proto::HopRecord,
) -> anyhow::Result<lienthong_domain::federation::SignedHop> {
    use lienthong_domain::federation::{GatewayId, Hop, SignedHop};
    let digest = |bytes: &[u8]| <[u8; 32]>::try_from(bytes).context("a hop digest is not 32 bytes");
    Ok(SignedHop {
        hop: Hop {
            gateway: GatewayId::parse(&record.gateway, "gateway")?,
            from: record.from.clone(),
            to: record.to.clone(),
            received_at: record.received_at,
            forwarded_at: record.forwarded_at,
            content_sha256: digest(&record.content_sha256)?,
            envelope_sha256: digest(&record.envelope_sha256)?,
            previous_sha256: digest(&record.previous_sha256)?,
        },
        signature: record.signature.clone(),
        certificate: record.certificate.clone(),
    })
}

/// Prints the hops and, with `verify`, checks them.
fn hops(response: &proto::TraceResponse, args: &TraceArgs) -> anyhow::Result<()> {
    if response.hops.is_empty() {
        if args.verify {
            anyhow::bail!("this message crossed no gateway: there are no hops to verify");
        }
        return Ok(());
    }
    println!("route ({} hops):", response.hops.len());
    for (index, hop) in response.hops.iter().enumerate() {
        let forwarded = if hop.forwarded_at == 0 {
            "delivered here".to_owned()
        } else {
            format!(
                "forwarded {} ms after it arrived",
                hop.forwarded_at - hop.received_at
            )
        };
        println!(
            "  {}. {:<12} from {} to {} ({forwarded})",
            index + 1,
            hop.gateway,
            hop.from,
            hop.to
        );
    }
    if !args.verify {
        return Ok(());
    }
    let mut trusted = Vec::new();
    for path in &args.gateway_certs {
        let pem = super::read(path, "gateway certificate")?;
        trusted.push(
            lienthong_pki::pem_fingerprint(&pem)
                .context("a --gateway-cert is not a certificate")?,
        );
    }
    let chain = response
        .hops
        .iter()
        .map(signed_hop)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let checked = lienthong_domain::federation::check_chain(&chain, |signed| {
        lienthong_pki::verify_plain(
            &signed.hop.canonical(),
            &signed.signature,
            &signed.certificate,
        )
        .map_err(|error| format!("its signature does not verify: {error}"))?;
        if trusted.is_empty() {
            return Ok(());
        }
        let fingerprint = lienthong_pki::pem_fingerprint(&signed.certificate)
            .map_err(|error| format!("its certificate does not parse: {error}"))?;
        if trusted.contains(&fingerprint) {
            Ok(())
        } else {
            Err(format!(
                "it is signed by certificate {fingerprint}, not one of the --gateway-cert files"
            ))
        }
    });
    match checked {
        Ok(()) => {
            let last = &response.hops[response.hops.len() - 1];
            let whole = if last.forwarded_at == 0 {
                "delivered"
            } else {
                "not yet delivered further on"
            };
            let pinned = if trusted.is_empty() {
                " (signers not pinned: pass --gateway-cert)"
            } else {
                ""
            };
            println!(
                "verified: {} hops, every signature and link holds, {whole}{pinned}",
                chain.len()
            );
            Ok(())
        }
        Err((index, why)) => anyhow::bail!(
            "hop {} ({}) is broken: {why}",
            index + 1,
            response.hops[index].gateway
        ),
    }
}

/// Prints a message's trace.
pub async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let mut client = ExchangeClient::new(args.connection.channel().await?);
    let response = client
        .trace(proto::TraceRequest {
            message_id: args.message_id.clone(),
            sender: args.sender.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    for event in &response.events {
        let at = event.at.map(super::format_timestamp).unwrap_or_default();
        let kind = proto::TraceEventKind::try_from(event.kind)
            .map(|k| {
                k.as_str_name()
                    .trim_start_matches("TRACE_EVENT_KIND_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let agency = if event.agency.is_empty() {
            "-"
        } else {
            &event.agency
        };
        println!("{at}  {kind:<13} {agency:<14} {}", event.detail);
    }
    hops(&response, &args)
}

/// `lienthong status`: report where a received document stands.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The message id of the document.
    message_id: String,
    /// Its sender's org code.
    #[arg(long)]
    sender: String,
    /// edXML status: 1 arrived, 2 refused, 3 accepted, 4 assigned, 5 in
    /// progress, 6 done, 13 recall requested, 15/16 recall accepted/refused.
    #[arg(long)]
    code: u8,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    connection: Connection,
}

/// Reports a status.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = ExchangeClient::new(args.connection.channel().await?);
    let receipt = client
        .report_status(proto::ReportStatusRequest {
            status: Some(proto::StatusReport {
                message_id: args.message_id.clone(),
                sender: args.sender.clone(),
                code: i32::from(args.code),
                description: args.description.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .receipt
        .context("gateway answered without a receipt")?;
    println!(
        "status {:02} on {} of {} recorded; audit head {}",
        args.code, args.message_id, args.sender, receipt.audit_head
    );
    Ok(())
}
