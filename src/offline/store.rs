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
        #[arg(long, required_unless_present = "postgres")]
        data_dir: Option<PathBuf>,
        /// Or the gateway's PostgreSQL database (connection string).
        #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "reseal"])]
        postgres: Option<String>,
        /// Accept the store as it is now: write a new durability record.
        /// Only after a check, for a store you have decided to keep (one
        /// written before the record existed, or salvaged by hand).
        #[arg(long)]
        reseal: bool,
    },
    /// Copy a stopped gateway's whole state (records, queues, audit chain,
    /// sealed keys, content) from its sled data directory into an empty
    /// PostgreSQL database, then verify the copy: every record equal, the
    /// same content, the audit chain intact with the same head. The source
    /// is read on a copy and never changed. Exits 1 when the copy differs.
    Migrate {
        /// `sled:DIR`: the stopped gateway's data directory.
        #[arg(long, value_name = "sled:DIR")]
        from: String,
        /// `postgres:URL`: an empty database (e.g.
        /// "postgres:host=/run/postgresql user=lienthong dbname=lienthong").
        #[arg(long, value_name = "postgres:URL")]
        to: String,
    },
}

/// Where a stopped gateway's store is: a data directory (sled) or a
/// PostgreSQL database.
pub enum Location {
    /// `--data-dir`.
    Dir(PathBuf),
    /// `--postgres URL`.
    Postgres(String),
}

impl Location {
    /// From the two mutually exclusive options.
    pub fn of(data_dir: Option<PathBuf>, postgres: Option<String>) -> anyhow::Result<Self> {
        match (data_dir, postgres) {
            (_, Some(url)) => Ok(Self::Postgres(url)),
            (Some(dir), None) => Ok(Self::Dir(dir)),
            (None, None) => bail!("give --data-dir DIR or --postgres URL"),
        }
    }

    /// Opens the store for an offline command: read-only (a copy) unless
    /// it is to be resealed.
    pub fn open(&self, read_only: bool) -> anyhow::Result<OfflineStore> {
        match self {
            Self::Dir(dir) => open_offline(dir, read_only),
            Self::Postgres(url) => {
                let options = store::PgOptions {
                    url: url.clone(),
                    ..store::PgOptions::default()
                };
                OfflineStore::open_postgres(&options)
                    .context("opening the gateway's PostgreSQL database")
            }
        }
    }
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
    let (data_dir, postgres, reseal) = match command {
        StoreCommand::Check {
            data_dir,
            postgres,
            reseal,
        } => (data_dir, postgres, reseal),
        StoreCommand::Migrate { from, to } => return super::migrate::migrate(&from, &to),
    };
    let location = Location::of(data_dir, postgres)?;
    let offline = location.open(!reseal)?;
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
        _ if matches!(location, Location::Postgres(_)) => {
            println!("ok    PostgreSQL keeps its own durability (no durability record)");
            None
        }
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
