//! `lienthong store check`: an offline check of a stopped gateway's data
//! directory against its durability record, and `--reseal` to accept a
//! store as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use lienthong::{
    audit, queue,
    store::{self, BlobStore, SledKv, watermark},
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

/// A stopped gateway's store opened for reading; with `copy`, sled's files
/// are copied to a scratch directory first (sled's recovery rewrites a torn
/// log on open).
pub struct OfflineStore {
    /// The engine.
    pub kv: SledKv,
    /// The content files.
    pub blobs: BlobStore,
    _scratch: Option<tempfile::TempDir>,
}

impl OfflineStore {
    /// Opens `data_dir`'s store.
    pub fn open(data_dir: &Path, copy: bool) -> anyhow::Result<Self> {
        let sled_dir = data_dir.join("sled");
        if !sled_dir.is_dir() {
            bail!(
                "{} holds no gateway data (no sled directory)",
                data_dir.display()
            );
        }
        let (path, scratch) = if copy {
            let scratch = tempfile::tempdir().context("creating a scratch directory")?;
            let path = scratch.path().join("sled");
            store::copy_tree(&sled_dir, &path)
                .with_context(|| format!("copying {} to check it", sled_dir.display()))?;
            (path, Some(scratch))
        } else {
            (sled_dir.clone(), None)
        };
        let kv = store::open_sled(&path, 64 * 1024 * 1024).with_context(|| {
            format!(
                "opening {} (stop the gateway first: it holds the database lock)",
                sled_dir.display()
            )
        })?;
        let blobs = BlobStore::at(&data_dir.join("blobs"));
        Ok(Self {
            kv,
            blobs,
            _scratch: scratch,
        })
    }
}

/// The durability record's audit head, if there is a readable record.
pub fn recorded_audit_head(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    Ok(watermark::WatermarkFile::open(data_dir)?.map(|(_, mark)| mark.audit_head))
}

/// Runs a store command.
pub fn store(command: StoreCommand) -> anyhow::Result<()> {
    let StoreCommand::Check { data_dir, reseal } = command;
    let offline = OfflineStore::open(&data_dir, !reseal)?;
    let mut failures = 0u64;
    let mut fail = |text: String| {
        failures += 1;
        println!("FAIL  {text}");
    };
    let found = store::engine_state(&offline.kv)?;
    println!(
        "database: write group {}, sequence number {}",
        found.generation, found.seq
    );
    let recorded = match watermark::WatermarkFile::open(&data_dir) {
        Ok(Some((_, recorded))) => {
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
    match audit::verify(&offline.kv) {
        Ok((entries, head)) => {
            println!(
                "ok    audit chain: {entries} entries, head {}",
                hex::encode(head)
            );
            if let Some(recorded) = &recorded
                && let Err(error) =
                    audit::check_recorded_head(&offline.kv, (entries, head), &recorded.audit_head)
            {
                fail(format!("audit chain: {error}"));
            }
        }
        Err(error) => fail(format!("audit chain: {error}")),
    }
    let report = queue::check(&offline.kv, &offline.blobs)?;
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
        let mark = store::reseal(&data_dir, &offline.kv)?;
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
