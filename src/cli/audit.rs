//! `lienthong trace` and `lienthong audit verify`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lienthong::{
    audit,
    proto::{self, exchange_client::ExchangeClient},
};

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

/// `lienthong audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain of a stopped gateway's data dir and name the
    /// first entry that was altered or removed.
    Verify {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs an audit command.
pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { data_dir } = command;
    let offline = super::store::open_offline(&data_dir, true)?;
    let (entries, head) = match audit::verify(offline.kv()) {
        Ok(verified) => verified,
        Err(error) => bail!("audit chain broken: {error}"),
    };
    // The chain's head lives in the same database as the chain: a database
    // cut short looks intact, only shorter. The durability record does not.
    match offline.durability_record()? {
        Some(recorded) => {
            if let Err(error) =
                audit::check_recorded_head(offline.kv(), (entries, head), &recorded.audit_head)
            {
                bail!("audit chain broken: {error}");
            }
        }
        None => bail!(
            "{} has no durability record: the chain cannot be checked for lost entries",
            data_dir.display()
        ),
    }
    println!(
        "audit chain intact: {entries} entries, head {}",
        hex::encode(head)
    );
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
