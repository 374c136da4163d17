//! Compiles the .proto files with protox (a protobuf compiler written in Rust), so building
//! needs no `protoc` on the machine, and derives the proto3 JSON mapping (pbjson) for the
//! `sparkscope.v1` messages that travel as JSON over WebSocket.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["sparkscope/v1/model.proto", "spark/connect/interrupt.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    std::fs::write(&descriptors, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".sparkscope.v1"])?;
    Ok(())
}
