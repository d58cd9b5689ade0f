//! Generates the gRPC code from the workspace's `proto/` with a vendored
//! protoc, so a machine without protoc installed builds the crate.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../../proto/lienthong/v1/exchange.proto",
        "../../proto/lienthong/v1/signing.proto",
        "../../proto/lienthong/v1/admin.proto",
        "../../proto/lienthong/v1/federation.proto",
        "../../proto/lienthong/v1/edxml.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("lienthong_descriptor.bin"))
        .compile_with_config(
            config,
            &protos.map(PathBuf::from),
            &[PathBuf::from("../../proto"), well_known],
        )?;
    Ok(())
}
