//! Compiles `proto/` at build time with protox (pure Rust: no system protoc)
//! and writes the descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/gdpr/intake/v1/data_subject_request.proto",
    "proto/gdpr/intake/v1/data_subject_request_service.proto",
    "proto/gdpr/intake/v1/routing.proto",
    "proto/gdpr/intake/v1/routing_service.proto",
    "proto/gdpr/intake/v1/task.proto",
    "proto/gdpr/intake/v1/processor_task_service.proto",
    "proto/gdpr/intake/v1/access_service.proto",
    "proto/gdpr/intake/v1/reporting_service.proto",
    "proto/gdpr/bench/v1/echo.proto",
];

/// Compiled for the load generator but never served by gdpr-intake, so kept
/// out of the descriptor set that reflection advertises.
const BENCH_PACKAGE: &str = "gdpr.bench.v1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds migrations/ at compile time.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut served = fds.clone();
    served
        .file
        .retain(|file| file.package.as_deref() != Some(BENCH_PACKAGE));
    fs::write(
        out_dir.join("gdpr_intake_descriptor.bin"),
        served.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages that carry personal data get a redacting Debug, written by
        // hand in src/proto.rs, so they cannot leak into a log line.
        .skip_debug([".gdpr.intake.v1.Subject", ".gdpr.intake.v1.Guardian"])
        // prost, but an undecodable request is INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::api::codec::IntakeCodec")
        .compile_fds(fds)?;
    Ok(())
}
