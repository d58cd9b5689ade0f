//! `lienthong store migrate --from sled:DIR --to postgres:URL`: a stopped
//! gateway's whole state copied into an empty PostgreSQL database, then
//! verified against the source.

use std::path::PathBuf;

use anyhow::{Context, bail};
use lienthong::{
    audit, queue,
    store::{self, Kv, PgOptions, StoreError, offline::OfflineStore},
};

/// Records written to the database per transaction.
const BATCH: usize = 512;

/// The sources and targets `store migrate` knows.
fn parse(from: &str, to: &str) -> anyhow::Result<(PathBuf, String)> {
    let Some(dir) = from.strip_prefix("sled:").filter(|d| !d.is_empty()) else {
        bail!("--from must be sled:DIR (the stopped gateway's data directory), not {from:?}");
    };
    let Some(url) = to.strip_prefix("postgres:").filter(|u| !u.is_empty()) else {
        bail!("--to must be postgres:URL (an empty database's connection string), not {to:?}");
    };
    Ok((PathBuf::from(dir), url.to_owned()))
}

/// Every record of `kv`, a page at a time, handed to `visit` in batches.
fn for_each_batch(
    kv: &dyn Kv,
    mut visit: impl FnMut(Vec<store::Pair>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = kv.scan_prefix(b"", after.as_deref(), BATCH)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        visit(page)?;
    }
}

/// The record count per key prefix (up to its first NUL), for the report.
fn counts(kv: &dyn Kv) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let mut counts = std::collections::BTreeMap::new();
    for_each_batch(kv, |page| {
        for (key, _) in page {
            let prefix = key.split(|b| *b == 0).next().unwrap_or_default();
            *counts
                .entry(String::from_utf8_lossy(prefix).into_owned())
                .or_insert(0) += 1;
        }
        Ok(())
    })?;
    Ok(counts)
}

/// Runs `store migrate`.
pub fn migrate(from: &str, to: &str) -> anyhow::Result<()> {
    let (dir, url) = parse(from, to)?;
    let source = super::store::open_offline(&dir, true)?;
    let options = PgOptions {
        url,
        ..PgOptions::default()
    };
    let target =
        OfflineStore::open_postgres(&options).context("opening the target PostgreSQL database")?;
    if !target.kv().scan_prefix(b"", None, 1)?.is_empty() || !target.blobs().list()?.is_empty() {
        bail!(
            "the target database already holds lienthong data: migrate into an empty database \
             (nothing was written)"
        );
    }
    let (entries, head) = audit::verify(source.kv())
        .map_err(|e| anyhow::anyhow!("the source's audit chain is broken: {e}; check it with `lienthong store check` first (nothing was written)"))?;
    println!(
        "source: {} (audit chain intact: {entries} entries)",
        dir.display()
    );

    // Content first: a record must never name content the database lacks.
    let hashes = source.blobs().list()?;
    let mut bytes = 0u64;
    for (index, hash) in hashes.iter().enumerate() {
        let mut reader = source.blobs().open_reader(hash)?;
        let mut staged = target.blobs().stage()?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buffer)? {
                0 => break,
                read => staged.write(&buffer[..read])?,
            }
        }
        bytes += staged.size();
        let stored = target.blobs().commit(staged)?;
        if stored != *hash {
            bail!("content {hash} was copied as {stored}");
        }
        if (index + 1) % 100 == 0 || index + 1 == hashes.len() {
            println!(
                "content: {}/{} files, {:.1} MiB",
                index + 1,
                hashes.len(),
                bytes as f64 / f64::from(1 << 20)
            );
        }
    }
    let (mut copied, mut next_report) = (0u64, 10_000u64);
    for_each_batch(source.kv(), |page| {
        copied += page.len() as u64;
        target
            .kv()
            .apply(page.into_iter().map(|(k, v)| (k, Some(v))).collect())?;
        if copied >= next_report {
            println!("records: {copied}");
            next_report += 10_000;
        }
        Ok(())
    })?;
    println!("records: {copied} copied");

    // Verify: the same records, the same content, the same chain.
    let mut different = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mine = source.kv().scan_prefix(b"", after.as_deref(), BATCH)?;
        let theirs = target.kv().scan_prefix(b"", after.as_deref(), BATCH)?;
        if mine != theirs {
            different += 1;
        }
        let Some((last, _)) = mine.last() else {
            break;
        };
        after = Some(last.clone());
    }
    let (source_counts, target_counts) = (counts(source.kv())?, counts(target.kv())?);
    for (prefix, count) in &source_counts {
        println!(
            "      {prefix}: {count} in the source, {} in the database",
            target_counts.get(prefix).copied().unwrap_or(0)
        );
    }
    if different > 0 || source_counts != target_counts {
        bail!("the copy differs from the source ({different} pages of records differ)");
    }
    if target.blobs().list()? != hashes {
        bail!("the database's content differs from the source's files");
    }
    let copied_chain = audit::verify(target.kv())
        .map_err(|e| anyhow::anyhow!("the copied audit chain is broken: {e}"))?;
    if copied_chain != (entries, head) {
        bail!("the copied audit chain ends elsewhere than the source's");
    }
    let report = queue::check(target.kv(), target.blobs())?;
    if report.problem_count > 0 {
        bail!(
            "the copy has {} problem(s), the first: {}",
            report.problem_count,
            report.problems.first().cloned().unwrap_or_default()
        );
    }
    println!(
        "verified: {copied} records, {} content files, audit chain of {entries} entries with head {}; \
         {} messages, {} queued deliveries, {} dead letters",
        hashes.len(),
        hex::encode(head),
        report.messages,
        report.queued,
        report.dead_letters
    );
    println!(
        "start the gateway with [store] engine = \"postgres\" and this url (or serve --postgres URL)"
    );
    Ok(())
}
