//! Queue hot paths on real sled in a temp dir: durable enqueue at several
//! concurrencies (group commit), lease + ack, and the disk's raw fdatasync
//! rate measured in the same run as the ceiling.

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong::{
    clock::SystemClock,
    config::QueueConfig,
    envelope::{DocumentInfo, MessageId, OrgCode},
    messages::MessageRecord,
    queue::Queue,
    store::{ContentHash, Store},
};

const SENDER: &str = "000.00.12.H56";
const RECIPIENT: &str = "000.00.31.H56";

fn record(index: u64) -> MessageRecord {
    let code = |text| OrgCode::parse(text, "bench").expect("code");
    MessageRecord {
        message_id: MessageId::parse(&format!("m{index}"), "bench").expect("id"),
        sender: code(SENDER),
        to: vec![lienthong::envelope::Address::Agency(code(RECIPIENT))],
        document: DocumentInfo {
            subject: "Kế hoạch".to_owned(),
            ..Default::default()
        },
        attachments: Vec::new(),
        signatures: Vec::new(),
        recipients: vec![lienthong::routing::Recipient {
            code: code(RECIPIENT),
            via: RECIPIENT.to_owned(),
        }],
        reports: Vec::new(),
        content_digest: ContentHash::of(&index.to_be_bytes()),
        accepted_at: 0,
        audit_head: [0; 32],
    }
}

struct Bench {
    queue: Arc<Queue>,
    next: std::sync::atomic::AtomicU64,
    _dir: tempfile::TempDir,
}

fn bench_queue() -> Bench {
    let dir =
        tempfile::tempdir_in(std::env::var("LIENTHONG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let store = Store::open(dir.path(), 256).expect("store");
    Bench {
        queue: Arc::new(Queue::new(
            store,
            Arc::new(SystemClock),
            QueueConfig::default(),
        )),
        next: std::sync::atomic::AtomicU64::new(0),
        _dir: dir,
    }
}

/// Enqueues `count` messages with `concurrency` senders; returns the time taken.
async fn enqueue_many(bench: &Bench, count: u64, concurrency: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let share = count / concurrency + u64::from(worker < count % concurrency);
        let queue = bench.queue.clone();
        let first = bench
            .next
            .fetch_add(share, std::sync::atomic::Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            for index in first..first + share {
                queue.enqueue(record(index)).await.expect("enqueue");
            }
        }));
    }
    for task in tasks {
        task.await.expect("join");
    }
    start.elapsed()
}

fn enqueue(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("enqueue_durable");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    for concurrency in [1u64, 8, 64] {
        let bench = bench_queue();
        group.bench_function(format!("concurrency_{concurrency}"), |b| {
            b.to_async(&runtime)
                .iter_custom(|iters| enqueue_many(&bench, iters, concurrency.min(iters.max(1))));
        });
    }
    group.finish();
}

fn lease_ack(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let bench = bench_queue();
    let recipient = OrgCode::parse(RECIPIENT, "bench").expect("code");
    let mut group = c.benchmark_group("lease_ack");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("one_at_a_time", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let bench = &bench;
            let recipient = recipient.clone();
            async move {
                enqueue_many(bench, iters, 64).await;
                let stream = bench.queue.open_stream();
                let start = Instant::now();
                for _ in 0..iters {
                    let batch = bench
                        .queue
                        .lease_next(&recipient, stream, 1, false)
                        .await
                        .expect("lease");
                    let delivery = batch.leased.first().expect("a waiting message");
                    bench
                        .queue
                        .ack(&recipient, &delivery.delivery_id.to_string())
                        .await
                        .expect("ack");
                }
                start.elapsed()
            }
        });
    });
    group.bench_function("batch_32_concurrent_acks", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let bench = &bench;
            let recipient = recipient.clone();
            async move {
                enqueue_many(bench, iters, 64).await;
                let stream = bench.queue.open_stream();
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let batch = bench
                        .queue
                        .lease_next(&recipient, stream, left.min(32) as usize, false)
                        .await
                        .expect("lease");
                    left -= batch.leased.len() as u64;
                    let mut acks = tokio::task::JoinSet::new();
                    for leased in batch.leased {
                        let queue = bench.queue.clone();
                        let recipient = recipient.clone();
                        acks.spawn(async move {
                            queue
                                .ack(&recipient, &leased.delivery_id.to_string())
                                .await
                                .expect("ack")
                        });
                    }
                    acks.join_all().await;
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

/// The ceiling: one 4 KiB write + fdatasync after another on the same disk.
fn fdatasync(c: &mut Criterion) {
    let dir =
        tempfile::tempdir_in(std::env::var("LIENTHONG_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("sync-probe")).expect("file");
    let block = vec![0x5au8; 4096];
    let mut group = c.benchmark_group("disk");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("write_4k_fdatasync", |b| {
        b.iter(|| {
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });
    group.finish();
}

criterion_group!(benches, fdatasync, enqueue, lease_ack);
criterion_main!(benches);
