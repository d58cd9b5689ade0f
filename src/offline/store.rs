//! `lienthong store check`: an offline check of a stopped gateway's data
//! directory against its durability record, and `--reseal` to accept a
//! store as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use lienthong::{
    audit, queue,
    store::{self, Engine, offline::OfflineStore, watermark},
};

/// `lienthong store ...`
#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Check a stopped gateway's store: the database against its durability
    /// record, the audit chain, every record, and every content file still in
    /// use. Works on a copy, so a damaged database is left as it is. Exits 1
    /// when anything is wrong.
    Check {
        /// The gateway's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Accept the store as it is now: write a new durability record.
        /// Only after a check, for a store you have decided to keep (one
        /// written before the record existed, or salvaged by hand).
        #[arg(long)]
        reseal: bool,
    },
}

/// Opens a stopped gateway's store for the offline commands: read-only (on
/// a copy) unless it is to be resealed.
pub fn open_offline(data_dir: &Path, read_only: bool) -> anyhow::Result<OfflineStore> {
    let opened = if read_only {
        OfflineStore::open_read_only(data_dir, Engine::default())
    } else {
        OfflineStore::open_for_reseal(data_dir, Engine::default())
    };
    opened.with_context(|| {
        format!(
            "opening the store in {} (stop the gateway first: it holds the database lock)",
            data_dir.display()
        )
    })
}

/// Runs a store command.
pub fn store(command: StoreCommand) -> anyhow::Result<()> {
    let StoreCommand::Check { data_dir, reseal } = command;
    let offline = open_offline(&data_dir, !reseal)?;
    let mut failures = 0u64;
    let mut fail = |text: String| {
        failures += 1;
        println!("FAIL  {text}");
    };
    let found = store::engine_state(offline.kv())?;
    println!(
        "database: write group {}, sequence number {}",
        found.generation, found.seq
    );
    let recorded = match offline.durability_record() {
        Ok(Some(recorded)) => {
            match watermark::compare(&found, &recorded) {
                Ok(_) => println!(
                    "ok    durability record: write group {} (the database is not behind it)",
                    recorded.generation
                ),
                Err(error) => fail(format!("durability record: {error}")),
            }
            Some(recorded)
        }
        Ok(None) => {
            fail(format!(
                "durability record: none ({} is missing)",
                watermark::FILE_NAME
            ));
            None
        }
        Err(error) => {
            fail(format!("durability record: {error}"));
            None
        }
    };
    match audit::verify(offline.kv()) {
        Ok((entries, head)) => {
            println!(
                "ok    audit chain: {entries} entries, head {}",
                hex::encode(head)
            );
            if let Some(recorded) = &recorded
                && let Err(error) =
                    audit::check_recorded_head(offline.kv(), (entries, head), &recorded.audit_head)
            {
                fail(format!("audit chain: {error}"));
            }
        }
        Err(error) => fail(format!("audit chain: {error}")),
    }
    let report = queue::check(offline.kv(), offline.blobs())?;
    println!(
        "      {} messages, {} queued deliveries, {} dead letters, {} content files in use",
        report.messages, report.queued, report.dead_letters, report.files
    );
    for problem in &report.problems {
        fail(problem.clone());
    }
    if report.problem_count > report.problems.len() as u64 {
        println!(
            "      ... and {} more problems",
            report.problem_count - report.problems.len() as u64
        );
        failures += report.problem_count - report.problems.len() as u64;
    }
    if reseal {
        let mark = offline.reseal()?;
        println!(
            "resealed: the durability record now names write group {} (sequence number {})",
            mark.generation, mark.seq
        );
        return Ok(());
    }
    if failures > 0 {
        bail!(
            "store check found {failures} problem(s); the gateway will not serve this store as it is"
        );
    }
    println!("store check passed");
    Ok(())
}
