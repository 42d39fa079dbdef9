//! The committed proof-format vectors (`testdata/proofs/`) are what the generator writes today,
//! and this crate's verifier gives each the verdict and first broken link its manifest states.

mod common;

use serde_json::{Value, json};
use std::path::PathBuf;
use trellis_types::{AnchorBundle, BrokenLink, Genesis};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/proofs")
}

#[test]
fn the_committed_vectors_are_the_generated_ones() {
    let files = common::vectors::files();
    for (path, text) in &files {
        let committed = std::fs::read_to_string(dir().join(path)).unwrap_or_default();
        assert!(
            committed == *text,
            "testdata/proofs/{path} differs from the generator's; regenerate with `cargo run -p \
             trellis-types --example proof-vectors -- testdata/proofs` and review the diff"
        );
    }
    let mut on_disk = 0;
    for entry in walk(&dir()) {
        if entry.extension().is_some_and(|e| e == "json") {
            on_disk += 1;
        }
    }
    assert_eq!(on_disk, files.len(), "stale files in testdata/proofs");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// What this crate's verifier answers, in the manifest's terms.
fn verdict(genesis: &str, bundle: &str) -> Value {
    let refused =
        |link: &str, index: Option<usize>| json!({"valid": false, "link": link, "index": index});
    let Ok(genesis) = Genesis::from_json(genesis) else {
        return refused("genesis-file", None);
    };
    let Ok(bundle) = AnchorBundle::from_json(bundle) else {
        return refused("malformed", None);
    };
    match bundle.verify(&genesis) {
        Ok(_) => json!({"valid": true}),
        Err(e @ BrokenLink::GenesisFile(_)) => refused(e.code(), None),
        Err(e) => refused(e.code(), e.index()),
    }
}

#[test]
fn each_vector_gets_its_stated_verdict() {
    let w = common::World::new();
    let genesis: std::collections::BTreeMap<_, _> =
        common::vectors::genesis_files(&w).into_iter().collect();
    let vectors = common::vectors::vectors(&w);
    assert!(vectors.len() >= 30, "{} vectors", vectors.len());
    let links: std::collections::BTreeSet<String> = vectors
        .iter()
        .filter_map(|v| v.expect["link"].as_str().map(String::from))
        .collect();
    // Every link of the verification order has a vector.
    for link in [
        "genesis-file",
        "malformed",
        "chain-id",
        "genesis",
        "state-proof",
        "genesis-proof",
        "no-headers",
        "state-not-committed",
        "other-chain",
        "unlinked",
        "height",
        "round",
        "not-committed",
        "epoch-mismatch",
        "epoch-changes",
        "epoch-change",
        "commit-cert",
    ] {
        assert!(links.contains(link), "no vector breaks {link}");
    }
    for v in &vectors {
        assert_eq!(
            verdict(genesis[v.genesis].as_str(), &v.bundle),
            v.expect,
            "{}",
            v.name
        );
    }
}
