//! The second verifier (`verifiers/python/trellis_verify.py`, written from docs/proof-format.md
//! with Python's standard library only) and `trellis verify` must agree: on every test vector,
//! and on every single-bit flip of the valid vectors' fields, both refuse with the same first
//! broken link. A disagreement is a bug in one of them or a gap in the document.

use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors_dir() -> PathBuf {
    repo().join("testdata/proofs")
}

fn python_verifier() -> PathBuf {
    repo().join("verifiers/python/trellis_verify.py")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(vectors_dir().join("vectors.json")).expect("manifest");
    serde_json::from_str(&text).expect("manifest is JSON")
}

/// The part of a verdict both verifiers must agree on: valid, or the link and its index.
fn essence(v: &Value) -> Value {
    if v["valid"] == json!(true) {
        json!({"valid": true})
    } else {
        json!({"valid": false, "link": v["link"], "index": v["index"]})
    }
}

fn run_json(mut cmd: Command) -> (i32, Value) {
    let out = cmd.output().expect("the verifier runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON verdict ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn trellis_verify(bundle: &Path, genesis: &Path) -> (i32, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(["verify", "--json", "--bundle"])
        .arg(bundle)
        .arg("--genesis")
        .arg(genesis);
    run_json(cmd)
}

fn python_verify(bundle: &Path, genesis: &Path) -> (i32, Value) {
    let mut cmd = Command::new("python3");
    cmd.arg(python_verifier())
        .args(["--json", "--bundle"])
        .arg(bundle)
        .arg("--genesis")
        .arg(genesis);
    run_json(cmd)
}

#[test]
fn both_verifiers_give_every_vector_its_stated_verdict() {
    let m = manifest();
    let vectors = m["vectors"].as_array().expect("vectors");
    for v in vectors {
        let bundle = vectors_dir().join(v["bundle"].as_str().expect("bundle"));
        let genesis = vectors_dir().join(v["genesis"].as_str().expect("genesis"));
        let (rust_code, rust) = trellis_verify(&bundle, &genesis);
        let (py_code, py) = python_verify(&bundle, &genesis);
        let name = &v["name"];
        assert_eq!(
            essence(&rust),
            v["expect"],
            "trellis verify on {name}: {rust}"
        );
        assert_eq!(
            essence(&py),
            v["expect"],
            "the Python verifier on {name}: {py}"
        );
        assert_eq!(rust_code, py_code, "exit codes on {name}");
        if v["expect"]["valid"] == json!(true) {
            assert_eq!(rust, py, "the verdicts on {name} differ");
        }
    }
}

/// One flipped copy of a bundle: where the bit was, and the bundle's text.
struct Flip {
    at: String,
    text: String,
}

fn flip_bit(bytes: &[u8], i: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[i / 8] ^= 1 << (i % 8);
    b
}

/// Every single-bit flip of a bundle's fields: of the decoded bytes of every hex field (the
/// binary parts whole, framing included), of the UTF-8 bytes of every string that stays UTF-8,
/// and of every bit of the integers.
fn flips(bundle: &Value) -> Vec<Flip> {
    let mut out = Vec::new();
    let mut visit = |path: &str, value: &Value, set: &dyn Fn(Value) -> Value| match value {
        Value::String(s) => {
            let hex_field = !s.is_empty()
                && s.len() % 2 == 0
                && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                && path != "/chain_id"
                && path != "/record/tag";
            let bytes = if hex_field {
                hex::decode(s).expect("hex")
            } else {
                s.as_bytes().to_vec()
            };
            for i in 0..bytes.len() * 8 {
                let flipped = flip_bit(&bytes, i);
                let new = if hex_field {
                    hex::encode(&flipped)
                } else {
                    match String::from_utf8(flipped) {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                };
                out.push(Flip {
                    at: format!("{path} bit {i}"),
                    text: set(Value::String(new)).to_string(),
                });
            }
        }
        Value::Number(n) => {
            let n = n.as_u64().expect("u64");
            for i in 0..64 {
                out.push(Flip {
                    at: format!("{path} bit {i}"),
                    text: set(json!(n ^ (1u64 << i))).to_string(),
                });
            }
        }
        _ => {}
    };
    let mut leaves = Vec::new();
    collect(bundle, String::new(), &mut leaves);
    for path in leaves {
        if path == "/format" {
            continue;
        }
        let value = bundle.pointer(&path).expect("leaf").clone();
        let set = |v: Value| {
            let mut b = bundle.clone();
            *b.pointer_mut(&path).expect("leaf") = v;
            b
        };
        visit(&path, &value, &set);
    }
    out
}

fn collect(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                collect(v, format!("{path}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect(v, format!("{path}/{i}"), out);
            }
        }
        _ => out.push(path),
    }
}

/// The verifier's library, as `trellis verify` runs it, in the manifest's terms.
fn rust_verdict(genesis: &trellis_types::GenesisTrust, text: &str) -> Value {
    match trellis_types::AnchorBundle::from_json(text) {
        Err(_) => json!({"valid": false, "link": "malformed", "index": null}),
        Ok(b) => match b.verify_against(genesis) {
            Ok(_) => json!({"valid": true}),
            Err(e) => json!({"valid": false, "link": e.code(), "index": e.index()}),
        },
    }
}

#[test]
fn every_bit_flip_of_the_valid_vectors_is_refused_by_both_with_the_same_first_broken_link() {
    let m = manifest();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for v in m["vectors"].as_array().expect("vectors") {
        if v["expect"]["valid"] != json!(true) {
            continue;
        }
        let genesis_path = vectors_dir().join(v["genesis"].as_str().expect("genesis"));
        let genesis = trellis_types::Genesis::from_json(
            &std::fs::read_to_string(&genesis_path).expect("genesis"),
        )
        .expect("a valid genesis");
        let genesis = trellis_types::GenesisTrust::new(&genesis).expect("a valid genesis");
        let text =
            std::fs::read_to_string(vectors_dir().join(v["bundle"].as_str().expect("bundle")))
                .expect("bundle");
        let bundle: Value = serde_json::from_str(&text).expect("bundle JSON");
        // The ZIP-215 vectors differ from another valid one only in a signature: flipping the
        // certificate that holds it covers what they add.
        let name = v["name"].as_str().unwrap_or_default();
        let only_commit_qc = name.starts_with("valid-zip215");
        for flip in flips(&bundle) {
            if only_commit_qc && !flip.at.starts_with("/commit_qc ") {
                continue;
            }
            let verdict = rust_verdict(&genesis, &flip.text);
            assert_eq!(
                verdict["valid"],
                json!(false),
                "{} with {} flipped verifies",
                v["name"],
                flip.at
            );
            batch.push(json!({"genesis": genesis_path, "bundle": flip.text}).to_string());
            expected.push((format!("{} {}", v["name"], flip.at), verdict));
        }
    }
    assert!(expected.len() > 10_000, "{} flips", expected.len());

    let mut child = Command::new("python3")
        .arg(python_verifier())
        .arg("--batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = batch.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("batch output");
    writer.join().expect("writer").expect("batch written");
    assert!(out.status.success(), "the Python batch failed");
    let answers: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    assert_eq!(answers.len(), expected.len(), "one answer per flip");
    let mut disagreements = Vec::new();
    for ((at, rust), answer) in expected.iter().zip(answers) {
        let py: Value = serde_json::from_str(answer).expect("a JSON verdict");
        if essence(&py) != *rust {
            disagreements.push(format!("{at}: trellis {rust}, python {py}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} flips disagree, e.g.:\n{}",
        disagreements.len(),
        expected.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
}
