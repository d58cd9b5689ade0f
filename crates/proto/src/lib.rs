//! Generated gRPC types and services for `lienthong.v1`. Only `api` and the CLI use them.

#![allow(
    missing_docs,
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation
)]

tonic::include_proto!("lienthong.v1");

/// The encoded descriptor set of every proto file, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lienthong_descriptor");
