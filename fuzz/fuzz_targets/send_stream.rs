//! Bytes as the messages of one SendStream (length-delimited protobuf
//! frames), through the api's frame rules (envelope first, then only
//! chunks), the envelope's streamed validation and the chunk sequence the
//! gateway stages content by. Errors are fine; panics are not, nor a
//! sequence that gives an attachment more or fewer bytes than declared.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong::{
    api::{raw_envelope, stream_chunk, stream_envelope},
    chunks::ChunkSequence,
    envelope::Limits,
    proto,
};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data;
    let mut frames = Vec::new();
    while !bytes.is_empty() && frames.len() < 256 {
        match proto::SendStreamRequest::decode_length_delimited(&mut bytes) {
            Ok(frame) => frames.push(frame),
            Err(_) => break,
        }
    }
    let mut frames = frames.into_iter();
    let Ok(envelope) = stream_envelope(frames.next()) else {
        return;
    };
    // Small chunks, so that short inputs reach every state.
    let limits = Limits {
        max_chunk_bytes: 64,
        ..Limits::default()
    };
    let sizes: Vec<u64> = envelope.attachments.iter().map(|a| a.size).collect();
    let Ok(envelope) = raw_envelope(envelope).validate_streamed(&limits, &sizes) else {
        return;
    };
    let mut sequence = ChunkSequence::new(&envelope, &sizes, &limits);
    let mut received = vec![0u64; sizes.len()];
    let mut last = 0;
    for frame in frames {
        let Ok((name, data)) = stream_chunk(frame) else {
            return;
        };
        if sequence.is_complete() {
            assert!(sequence.accept(&name, data.len() as u64).is_err());
            return;
        }
        let Ok(index) = sequence.accept(&name, data.len() as u64) else {
            return;
        };
        assert!(index >= last, "the sequence went back");
        assert_eq!(envelope.attachments[index].name, name);
        last = index;
        received[index] += data.len() as u64;
        assert!(received[index] <= sizes[index], "more than declared");
    }
    if sequence.is_complete() {
        assert_eq!(received, sizes, "complete with bytes missing");
    } else {
        let _ = sequence.ended_early();
    }
});
