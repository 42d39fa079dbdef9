//! Writes the proof-format test vectors: `cargo run -p trellis-types --example proof-vectors --
//! testdata/proofs` (the directory is created; existing files are replaced).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: proof-vectors DIR");
        return ExitCode::from(2);
    };
    for (path, text) in common::vectors::files() {
        let path = dir.join(path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, text));
        if let Err(e) = written {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("wrote the proof vectors to {}", dir.display());
    ExitCode::SUCCESS
}
