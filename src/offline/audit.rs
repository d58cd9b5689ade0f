//! `lienthong audit verify`: the audit chain of a stopped gateway, checked
//! against its durability record.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use lienthong::audit;

/// `lienthong audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Walk the hash chain of a stopped gateway's data dir and name the
    /// first entry that was altered or removed.
    Verify {
        /// The gateway's data directory.
        #[arg(long, required_unless_present = "postgres")]
        data_dir: Option<PathBuf>,
        /// Or the gateway's PostgreSQL database (connection string).
        #[arg(long, value_name = "URL", conflicts_with = "data_dir")]
        postgres: Option<String>,
    },
}

/// Runs an audit command.
pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { data_dir, postgres } = command;
    let location = super::store::Location::of(data_dir, postgres)?;
    let offline = location.open(true)?;
    let (entries, head) = match audit::verify(offline.kv()) {
        Ok(verified) => verified,
        Err(error) => bail!("audit chain broken: {error}"),
    };
    // The chain's head lives in the same database as the chain: a database
    // cut short looks intact, only shorter. The durability record does not.
    match offline.durability_record()? {
        // The database's own durability keeps the head with the chain.
        _ if matches!(location, super::store::Location::Postgres(_)) => {}
        Some(recorded) => {
            if let Err(error) =
                audit::check_recorded_head(offline.kv(), (entries, head), &recorded.audit_head)
            {
                bail!("audit chain broken: {error}");
            }
        }
        None => bail!(
            "the store has no durability record: the chain cannot be checked for lost entries"
        ),
    }
    println!(
        "audit chain intact: {entries} entries, head {}",
        hex::encode(head)
    );
    Ok(())
}
