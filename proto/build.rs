//! Compiles the `.proto` contract with `protox` (pure Rust; no system `protoc`)
//! and generates prost messages and tonic clients/servers from the descriptors.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/darter/common/v1/common.proto",
        "proto/darter/dfdaemon/v1/dfdaemon.proto",
        "proto/darter/scheduler/v1/scheduler.proto",
        "proto/darter/manager/v1/manager.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(descriptors)?;
    Ok(())
}
