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
