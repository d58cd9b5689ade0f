//! What idle, slow and unlucky clients cannot do any more: hold TCP
//! connections without TLS, hold SendStreams (and their staging files)
//! without sending, stage more than the bound across streams, grow the
//! gateway's memory by not reading, or leave it claiming SERVING on a full
//! disk.

mod common;

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;
use lienthong::proto::{self, exchange_client::ExchangeClient, send_stream_request::Part};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn streamed_envelope(id: &str, size: u64) -> proto::SendStreamRequest {
    let mut envelope = unsigned_envelope(id, DEPARTMENT, &[DISTRICT], b"");
    envelope.attachments[0].size = size;
    proto::SendStreamRequest {
        part: Some(Part::Envelope(envelope)),
    }
}

fn staging_files(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs/tmp"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_and_streams_are_closed_and_staging_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.flow.tls_handshake_timeout = Duration::from_secs(1);
    config.flow.stream_idle_timeout = Duration::from_secs(1);
    config.flow.max_staged_bytes = 20 << 20;
    let server = TestServer::start_with(config).await;

    // TCP connections that never start TLS are closed after the timeout.
    let mut idle: Vec<std::net::TcpStream> = (0..50)
        .map(|_| std::net::TcpStream::connect(server.addr).expect("tcp"))
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (index, stream) in idle.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut),
            "connection {index} without a TLS handshake is still open: {read:?}"
        );
    }

    // A SendStream that announces 12 MiB and holds it...
    let mut first = server.exchange("department").await;
    let (hold, held) = tokio::sync::mpsc::channel(4);
    hold.send(streamed_envelope("held", 12 << 20))
        .await
        .expect("queue envelope");
    let holding = tokio::spawn(async move { first.send_stream(ReceiverStream::new(held)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...leaves no room for another 12 MiB under the 20 MiB bound.
    let mut second = server.exchange("department").await;
    let (more, rest) = tokio::sync::mpsc::channel(4);
    more.send(streamed_envelope("second", 12 << 20))
        .await
        .expect("queue envelope");
    let refused = second
        .send_stream(ReceiverStream::new(rest))
        .await
        .expect_err("staging bound");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // The held stream sends nothing more: it is ended by the idle timeout
    // and its staging file is deleted.
    let outcome = tokio::time::timeout(Duration::from_secs(10), holding)
        .await
        .expect("the idle stream is ended by the gateway")
        .expect("task");
    let status = outcome.expect_err("idle stream");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(hold);
    drop(more);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(staging_files(dir.path()), 0, "staging files left behind");
    // Room is given back: a small streamed document goes through now.
    let mut third = server.exchange("department").await;
    let content = b"small".to_vec();
    let mut envelope = envelope("third", DEPARTMENT, &[DISTRICT], &content);
    envelope.attachments[0].size = content.len() as u64;
    envelope.attachments[0].content.clear();
    let parts = vec![
        proto::SendStreamRequest {
            part: Some(Part::Envelope(envelope)),
        },
        proto::SendStreamRequest {
            part: Some(Part::Chunk(proto::ContentChunk {
                attachment: "ke-hoach.pdf".into(),
                data: content,
            })),
        },
    ];
    third
        .send_stream(tokio_stream::iter(parts))
        .await
        .expect("room was given back");
    server.stop().await;
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The shipped config with absolute paths and `flow` changed, in `dir`.
fn config_file(dir: &Path, flow: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("lienthong.toml")).expect("config");
    let repo = repo().display().to_string();
    let mut out = String::new();
    let mut in_flow = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_flow = line == "[flow]";
            out.push_str(line);
            out.push('\n');
            if in_flow {
                out.push_str(flow);
                out.push('\n');
            }
            continue;
        }
        if in_flow && !line.starts_with('#') && line.contains('=') {
            continue;
        }
        out.push_str(&line.replace("\"certs-test/", &format!("\"{repo}/certs-test/")));
        out.push('\n');
    }
    let path = dir.join("lienthong.toml");
    std::fs::write(&path, out).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_slow_readers_cannot_grow_the_gateways_memory_without_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(dir.path(), "receive_buffer_bytes = 4194304");
    let (gateway, addr) = spawn_gateway_with(
        &dir.path().join("data"),
        &["--config".as_ref(), config.as_os_str()],
    );
    let pid = gateway.0.id();
    // Forty 900 KiB documents (delivered whole) wait for the district.
    let mut department = ExchangeClient::new(connect(addr, Some("department")).await.expect("c"))
        .max_encoding_message_size(64 << 20);
    let content = vec![7u8; 900 * 1024];
    for index in 0..40 {
        let id = format!("slow-{index}");
        send(
            &mut department,
            envelope(&id, DEPARTMENT, &[DISTRICT], &content),
        )
        .await
        .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = vm_rss_kib(pid);
    // Fifty Receive streams that never read a message.
    let mut readers = Vec::new();
    for _ in 0..50 {
        let mut district = ExchangeClient::new(connect(addr, Some("district")).await.expect("c"))
            .max_decoding_message_size(64 << 20);
        let stream = district
            .receive(proto::ReceiveRequest {
                max_in_flight: 32,
                drain: false,
            })
            .await
            .expect("receive")
            .into_inner();
        readers.push((district, stream));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = vm_rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "gateway RSS {before} KiB before, {after} KiB with 50 slow readers (+{grown_mib} MiB)"
    );
    // Unbounded, each stream held ~4 documents (channel, pending send,
    // transport): ~175 MiB. Bounded: the 4 MiB buffer plus about one
    // document per connection in the transport.
    assert!(
        grown_mib < 100,
        "50 slow readers grew the gateway by {grown_mib} MiB"
    );
    // The readers still get everything once they read.
    let (_, mut stream) = readers.remove(0);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a delivery")
        .expect("stream")
        .expect("message");
    assert!(!first.delivery_id.is_empty());
    drop(readers);
    drop(gateway);
}

/// Runs `command` and says whether it succeeded.
fn sh(command: &str) -> bool {
    Command::new("sh")
        .args(["-c", command])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_reports_not_serving_exits_and_recovers_after_restart() {
    let mount = tempfile::tempdir().expect("tempdir");
    let path = mount.path().display().to_string();
    if !sh(&format!("mount -t tmpfs -o size=48m tmpfs {path}")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount a tmpfs (run as root)"
        );
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(path.clone());
    let data = mount.path().join("data");
    let (mut gateway, addr) = spawn_gateway(&data);
    let mut department =
        ExchangeClient::new(connect(addr, Some("department")).await.expect("connect"))
            .max_encoding_message_size(64 << 20);
    // One signed document, stored before the disk fills: every later send
    // reuses its content and signature (stored once), so what fills up is
    // sled's own log, the case that used to leave the store failed for good.
    let template = envelope("before-full", DEPARTMENT, &[DISTRICT], &[b'x'; 4000]);
    send(&mut department, template.clone())
        .await
        .expect("send before the disk is full");
    // Fill the disk, leaving nothing.
    let _ = sh(&format!(
        "dd if=/dev/zero of={path}/filler bs=1M status=none"
    ));
    let mut accepted = vec!["before-full".to_owned()];
    let mut full = None;
    for index in 0..50_000 {
        let id = format!("full-{index}");
        let mut message = template.clone();
        message.message_id = id.clone();
        match send(&mut department, message).await {
            Ok(_) => accepted.push(id),
            Err(status) => {
                full = Some(status);
                break;
            }
        }
    }
    let refusal = full.expect("the full disk refused a send");
    eprintln!("{} accepted, then: {refusal:?}", accepted.len());
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(
        refusal.message().contains("disk is full"),
        "the refusal does not say the disk is full: {}",
        refusal.message()
    );
    // The gateway does not go on claiming to serve: it exits non-zero so
    // that its service manager restarts it.
    let exited = tokio::task::spawn_blocking(move || {
        for _ in 0..200 {
            if let Ok(Some(status)) = gateway.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .expect("wait");
    let status = exited.expect("the gateway exits once its store cannot write");
    assert!(!status.success(), "a failed store must exit non-zero");

    // Space is freed; the restarted gateway serves and lost nothing acked.
    std::fs::remove_file(mount.path().join("filler")).expect("free space");
    let (_gateway, addr) = spawn_gateway(&data);
    let mut district = ExchangeClient::new(connect(addr, Some("district")).await.expect("c"))
        .max_decoding_message_size(64 << 20);
    let delivered: Vec<String> = drain(&mut district)
        .await
        .iter()
        .map(|d| envelope_of(d).message_id.clone())
        .collect();
    for id in &accepted {
        assert!(delivered.contains(id), "{id} was accepted but is gone");
    }
    let mut department = ExchangeClient::new(connect(addr, Some("department")).await.expect("c"));
    send(
        &mut department,
        envelope("after-full", DEPARTMENT, &[DISTRICT], b"y"),
    )
    .await
    .expect("serving again");
}
