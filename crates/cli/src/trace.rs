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
    #[command(flatten)]
    connection: Connection,
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
    Ok(())
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
