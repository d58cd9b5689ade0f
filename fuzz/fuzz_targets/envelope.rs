//! Bytes as a SendRequest off the wire, through the api's conversion and
//! the envelope's validation: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong::{api::raw_envelope, envelope::Limits, proto};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = proto::SendRequest::decode(data) else {
        return;
    };
    let Some(envelope) = request.envelope else {
        return;
    };
    let limits = Limits::default();
    let sizes: Vec<u64> = envelope.attachments.iter().map(|a| a.size).collect();
    let raw = raw_envelope(envelope);
    let _ = raw.clone().validate(&limits);
    let _ = raw.validate_streamed(&limits, &sizes);
});
