//! Writes the seed corpus of `decode_requests` into the directory given
//! (`fuzz/corpus/decode_requests` by default), where `cargo fuzz run`
//! starts from. The seeds are code, not files, so they follow the protos.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from("fuzz/corpus/decode_requests"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let seeds = gdpr_intake_fuzz::seeds();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
    }
    eprintln!("wrote {} seeds to {}", seeds.len(), dir.display());
    Ok(())
}
