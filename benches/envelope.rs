//! The envelope on the wire and into the domain: prost encode and decode of
//! a SendRequest carrying a 10 KB attachment and one RSA-2048 CAdES
//! signature, and the conversion plus validation the gateway does next.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong::{api::raw_envelope, envelope::Limits, proto};
use prost::Message;

fn request(size: usize) -> proto::SendRequest {
    proto::SendRequest {
        envelope: Some(proto::Envelope {
            message_id: "bench-000001".into(),
            from: "000.00.12.H56".into(),
            to: vec!["000.00.31.H56".into(), "children:000.00.31.H56".into()],
            document: Some(proto::Document {
                code: Some(proto::DocumentCode {
                    number: "101".into(),
                    notation: "KH-UBND".into(),
                }),
                r#type: "official-letter".into(),
                subject: "Kế hoạch triển khai chuyển đổi số năm 2027".into(),
                ..Default::default()
            }),
            attachments: vec![proto::Attachment {
                name: "ke-hoach.pdf".into(),
                media_type: "application/pdf".into(),
                content: (0..size).map(|i| (i % 251) as u8).collect(),
                ..Default::default()
            }],
            // The size of a CAdES signature with its chain embedded.
            signatures: vec![proto::Signature {
                attachment: "ke-hoach.pdf".into(),
                cms_der: vec![0x30; 3300],
            }],
            edxml_header: Vec::new(),
        }),
    }
}

fn envelope(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    let message = request(10 * 1024);
    let bytes = message.encode_to_vec();
    group.bench_function("encode_10KB", |b| b.iter(|| message.encode_to_vec()));
    group.bench_function("decode_10KB", |b| {
        b.iter(|| proto::SendRequest::decode(bytes.as_slice()).expect("decodes"))
    });
    group.bench_function("decode_convert_validate_10KB", |b| {
        b.iter(|| {
            let decoded = proto::SendRequest::decode(bytes.as_slice()).expect("decodes");
            raw_envelope(decoded.envelope.expect("envelope"))
                .validate(&limits)
                .expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
