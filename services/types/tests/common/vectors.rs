//! The proof-format test vectors (`testdata/proofs/`): valid bundles with their genesis files,
//! and tampered ones, each with the verdict and first broken link every verifier must give.
//! Deterministic (fixed keys, fixed times, deterministic signatures): regenerating gives the same
//! bytes, which `tests/vectors.rs` checks.
//!
//! Regenerate with `cargo run -p trellis-types --example proof-vectors -- testdata/proofs`.

use super::*;
use prost::Message as _;
use serde_json::{Value, json};
use trellis_types::{AnchorBundle, Genesis, anchor_state_key};

/// One vector: a genesis file, a bundle and what a verifier must answer.
pub struct Vector {
    pub name: String,
    pub what: String,
    pub genesis: &'static str,
    pub bundle: String,
    /// `{"valid": true}` or `{"valid": false, "link": .., "index": ..}`.
    pub expect: Value,
}

/// The genesis files the vectors use, by file name.
pub fn genesis_files(w: &World) -> Vec<(&'static str, String)> {
    let identity = {
        let mut k = [0u8; 32];
        k[0] = 1;
        hex::encode(k)
    };
    let mut other_role = w.genesis_file.clone();
    other_role.accounts[1].role = "regulator".into();
    let mut weak_validator = w.genesis_file.clone();
    weak_validator.validators[3].consensus_key = identity.clone();
    let mut weak_account = w.genesis_file.clone();
    weak_account.accounts[0].public_key = identity;
    vec![
        ("genesis.json", w.genesis_file.to_json_pretty()),
        ("genesis-other-role.json", other_role.to_json_pretty()),
        (
            "genesis-weak-validator-key.json",
            weak_validator.to_json_pretty(),
        ),
        (
            "genesis-weak-account-key.json",
            weak_account.to_json_pretty(),
        ),
    ]
}

fn valid() -> Value {
    json!({ "valid": true })
}

fn refused(link: &str, index: Option<usize>) -> Value {
    json!({ "valid": false, "link": link, "index": index })
}

fn text(b: &AnchorBundle) -> String {
    pretty(&b.to_json())
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// Every vector, in manifest order.
pub fn vectors(w: &World) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut add = |name: &str, what: &str, genesis: &'static str, bundle: String, expect: Value| {
        out.push(Vector {
            name: name.into(),
            what: what.into(),
            genesis,
            bundle,
            expect,
        })
    };
    let g = "genesis.json";
    let b = || w.bundle(0);

    // Valid bundles.
    add(
        "valid-after-epoch-change",
        "epoch 1, one epoch-change proof from the genesis committee",
        g,
        text(&b()),
        valid(),
    );
    let epoch0 = AnchorBundle {
        headers: w.epoch0[1..=2].iter().map(|b| b.header.clone()).collect(),
        commit_qc: w.epoch0_qcs[4].clone(),
        epoch_changes: vec![],
        ..b()
    };
    add(
        "valid-in-epoch-0",
        "epoch 0: certified by the genesis committee, no epoch-change proof; header 0 ends the epoch",
        g,
        text(&epoch0),
        valid(),
    );
    let across = AnchorBundle {
        headers: std::iter::once(&w.epoch0[1])
            .chain(&w.epoch1[..3])
            .map(|b| b.header.clone())
            .collect(),
        ..b()
    };
    add(
        "valid-headers-across-an-epoch-change",
        "headers from the block ending epoch 0 into epoch 1 (rounds start again)",
        g,
        text(&across),
        valid(),
    );

    // Signatures the ZIP-215 rule accepts and a strict RFC 8032 verifier refuses.
    let mut x = b();
    x.commit_qc.signatures[0] =
        zip215_only_signature(&w.commit_message(&x), 0x03, NonceKind::TorsionR);
    add(
        "valid-zip215-signature-r-with-torsion",
        "the first commit signature's R has an order-8 component (only the cofactored check accepts it)",
        g,
        text(&x),
        valid(),
    );
    let mut x = b();
    x.commit_qc.signatures[2] = zip215_only_signature(
        &w.commit_message(&x),
        0x06,
        NonceKind::NonCanonicalIdentityR,
    );
    add(
        "valid-zip215-signature-r-non-canonical",
        "the last commit signature's R is the identity encoded as y = p + 1 (not canonical)",
        g,
        text(&x),
        valid(),
    );

    // The genesis file.
    add(
        "genesis-file-weak-validator-key",
        "a validator key is the identity point, for which anyone can sign",
        "genesis-weak-validator-key.json",
        text(&b()),
        refused("genesis-file", None),
    );
    add(
        "genesis-file-weak-account-key",
        "an account key is the identity point",
        "genesis-weak-account-key.json",
        text(&b()),
        refused("genesis-file", None),
    );

    // Parsing.
    let j = b().to_json();
    let mut v1 = j.clone();
    v1["format"] = json!("trellis.anchor-bundle/v1");
    if let Some(o) = v1.as_object_mut() {
        o.remove("genesis_digest");
        o.remove("genesis_proof");
    }
    add(
        "malformed-format-v1",
        "a version 1 bundle (no genesis digest or proof)",
        g,
        pretty(&v1),
        refused("malformed", None),
    );
    // Strict JSON (docs/proof-format.md §2.1), each a change of the valid bundle's text.
    let valid_text = pretty(&j);
    let digest_member = format!(
        "\"digest\": \"{}\"",
        j["digest"].as_str().unwrap_or_default()
    );
    let height_member = format!("\"height\": {}", j["state"]["height"]);
    let mut null_member = j.clone();
    null_member["epoch_changes"] = Value::Null;
    let strict: [(&str, &str, String); 7] = [
        (
            "malformed-json-duplicate-member",
            "the digest member twice",
            valid_text.replacen(
                &digest_member,
                &format!("{digest_member},\n  {digest_member}"),
                1,
            ),
        ),
        (
            "malformed-json-byte-order-mark",
            "a leading U+FEFF",
            format!("\u{feff}{valid_text}"),
        ),
        (
            "malformed-json-trailing-data",
            "a second value after the bundle",
            format!("{valid_text}{{}}\n"),
        ),
        (
            "malformed-json-fraction",
            "state.height written as 1.0",
            valid_text.replacen(&height_member, "\"height\": 1.0", 1),
        ),
        (
            "malformed-json-leading-zero",
            "state.height written as 01",
            valid_text.replacen(&height_member, "\"height\": 01", 1),
        ),
        (
            "malformed-json-null-member",
            "epoch_changes is null",
            pretty(&null_member),
        ),
        (
            "malformed-json-lone-surrogate",
            "the record's tag holds an unpaired UTF-16 surrogate escape",
            valid_text.replacen("\"tag\": \"invoice", "\"tag\": \"\\ud800invoice", 1),
        ),
    ];
    for (name, what, text) in strict {
        assert_ne!(text, valid_text, "{name} changed nothing");
        add(name, what, g, text, refused("malformed", None));
    }
    let mut unknown = j.clone();
    unknown["note"] = json!("extra");
    add(
        "malformed-unknown-field",
        "an unknown field",
        g,
        pretty(&unknown),
        refused("malformed", None),
    );
    let mut upper = j.clone();
    upper["digest"] = json!(j["digest"].as_str().unwrap_or_default().to_uppercase());
    add(
        "malformed-uppercase-hex",
        "uppercase hex",
        g,
        pretty(&upper),
        refused("malformed", None),
    );
    let mut weak_next = j.clone();
    let ec_hex = j["epoch_changes"][0].as_str().unwrap_or_default();
    let mut ec = trellis_types::pb::EpochChangeProof::decode(
        hex::decode(ec_hex).unwrap_or_default().as_slice(),
    )
    .unwrap_or_default();
    if let Some(c) = ec.ending.as_mut().and_then(|h| h.next_committee.as_mut()) {
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        c.members[3] = identity;
    }
    weak_next["epoch_changes"][0] = json!(hex::encode(ec.encode_to_vec()));
    add(
        "malformed-weak-key-in-next-committee",
        "the epoch-ending header names the identity point as a member",
        g,
        pretty(&weak_next),
        refused("malformed", None),
    );
    let mut non_canonical = j.clone();
    let qc_hex = j["commit_qc"].as_str().unwrap_or_default();
    // A field repeated: protobuf parsers take the last, the canonical form has one.
    non_canonical["commit_qc"] = json!(format!("{qc_hex}1200"));
    add(
        "malformed-non-canonical-protobuf",
        "commit_qc with its field 2 (signers) repeated, empty, at the end (a parser keeping the last value reads no signers)",
        g,
        pretty(&non_canonical),
        refused("malformed", None),
    );

    // Each link, in verification order.
    let mut x = b();
    x.chain_id = "trellis-tesu".into();
    add(
        "chain-id",
        "the bundle's chain id differs",
        g,
        text(&x),
        refused("chain-id", None),
    );
    add(
        "genesis-other-role",
        "a genesis file whose account 1 is a regulator: same chain id and committee",
        "genesis-other-role.json",
        text(&b()),
        refused("genesis", None),
    );
    let other_role = genesis_files(w)
        .into_iter()
        .find(|(n, _)| *n == "genesis-other-role.json")
        .and_then(|(_, t)| Genesis::from_json(&t).ok())
        .and_then(|g| g.digest().ok())
        .unwrap_or(Digest::ZERO);
    let x = AnchorBundle {
        genesis_digest: other_role,
        ..b()
    };
    add(
        "genesis-proof-claims-another-genesis",
        "the bundle names the other genesis file's digest; the state holds the real one",
        "genesis-other-role.json",
        text(&x),
        refused("genesis-proof", None),
    );
    let mut x = b();
    x.record.tag.push('!');
    add(
        "state-proof-tag",
        "the record's tag changed",
        g,
        text(&x),
        refused("state-proof", None),
    );
    let mut x = b();
    x.state_proof = w.smt.prove(&anchor_state_key(&w.anchored[1].0));
    add(
        "state-proof-of-another-anchor",
        "the proof of another anchor",
        g,
        text(&x),
        refused("state-proof", None),
    );
    let mut x = b();
    x.genesis_proof = x.state_proof.clone();
    add(
        "genesis-proof-of-another-key",
        "the genesis proof is the anchor's proof",
        g,
        text(&x),
        refused("genesis-proof", None),
    );
    let mut x = b();
    x.headers.clear();
    add(
        "no-headers",
        "no headers",
        g,
        text(&x),
        refused("no-headers", None),
    );
    let mut x = b();
    x.state.height = 0;
    add(
        "state-not-committed",
        "the bundle's state height differs from header 0's",
        g,
        text(&x),
        refused("state-not-committed", None),
    );
    let mut x = b();
    x.headers[1].chain_id = "trellis-tesu".into();
    add(
        "other-chain",
        "header 1 of another chain",
        g,
        text(&x),
        refused("other-chain", Some(1)),
    );
    let mut x = b();
    x.headers.remove(1);
    add(
        "unlinked",
        "header 1 removed",
        g,
        text(&x),
        refused("unlinked", Some(1)),
    );
    let hand = |spec: &[(u64, u64, u64)]| text(&w.hand_bundle(0, spec));
    add(
        "height-skips",
        "linked and certified, but header 1 is two heights above header 0",
        g,
        hand(&[(1, 1, 3), (1, 2, 5), (1, 3, 6)]),
        refused("height", Some(1)),
    );
    add(
        "height-state-not-below",
        "header 0 commits to the state of its own height",
        g,
        hand(&[(1, 1, 1), (1, 2, 2)]),
        refused("height", Some(0)),
    );
    add(
        "round-repeats",
        "header 1 at header 0's round, same epoch",
        g,
        hand(&[(1, 1, 3), (1, 1, 4), (1, 2, 5)]),
        refused("round", Some(1)),
    );
    add(
        "round-zero",
        "header 0 at round 0 (only an epoch's root is)",
        g,
        hand(&[(1, 0, 3), (1, 2, 4)]),
        refused("round", Some(0)),
    );
    let mut x = b();
    x.headers.pop();
    add(
        "not-committed",
        "the last header is not the one the certificate commits",
        g,
        text(&x),
        refused("not-committed", None),
    );
    let (headers, qc) = w.hand_chain(&[(1, 1, 3), (1, 2, 4)]);
    let mut vd = qc.vote_data;
    vd.height += 1;
    let x = AnchorBundle {
        headers: headers.clone(),
        commit_qc: w.sign(vd, &w.new, &[0, 2, 3]),
        ..b()
    };
    add(
        "not-committed-height",
        "the certified block is two heights above the last header",
        g,
        text(&x),
        refused("not-committed", None),
    );
    let mut vd = qc.vote_data;
    vd.epoch = 2;
    let x = AnchorBundle {
        headers,
        commit_qc: w.sign(vd, &w.new, &[0, 2, 3]),
        ..b()
    };
    add(
        "epoch-mismatch",
        "the certificate is of epoch 2, the last header of epoch 1",
        g,
        text(&x),
        refused("epoch-mismatch", None),
    );
    let mut x = b();
    x.epoch_changes.clear();
    add(
        "epoch-changes-missing",
        "the epoch-change proof is missing",
        g,
        text(&x),
        refused("epoch-changes", None),
    );
    let mut x = b();
    x.epoch_changes[0].commit_qc = certify(&w.epoch0[2], &w.old, &[0, 1, 3]);
    add(
        "epoch-change-does-not-commit",
        "the epoch-change certificate commits the block before the suffix's last",
        g,
        text(&x),
        refused("epoch-change", Some(0)),
    );
    let mut x = b();
    x.epoch_changes[0].commit_qc.signatures[1].0[40] ^= 1;
    add(
        "epoch-change-bad-signature",
        "one signature of the epoch-change certificate altered",
        g,
        text(&x),
        refused("epoch-change", Some(0)),
    );
    let mut x = b();
    x.commit_qc = certify(&w.epoch1[3], &w.new, &[0, 2]);
    add(
        "commit-cert-below-quorum",
        "two signers of four",
        g,
        text(&x),
        refused("commit-cert", None),
    );
    let mut x = b();
    x.commit_qc = certify(&w.epoch1[3], &w.old, &[0, 1, 2]);
    add(
        "commit-cert-wrong-committee",
        "signed by three of the epoch-0 committee",
        g,
        text(&x),
        refused("commit-cert", None),
    );
    let mut x = b();
    x.commit_qc.signatures[2].0[5] ^= 0x20;
    add(
        "commit-cert-bad-signature",
        "one signature altered (its R)",
        g,
        text(&x),
        refused("commit-cert", None),
    );
    out
}

/// The manifest, `vectors.json`.
pub fn manifest(vectors: &[Vector]) -> String {
    let list: Vec<Value> = vectors
        .iter()
        .map(|v| {
            json!({
                "name": v.name,
                "what": v.what,
                "genesis": v.genesis,
                "bundle": format!("bundles/{}.json", v.name),
                "expect": v.expect,
            })
        })
        .collect();
    pretty(&json!({
        "format": "trellis.proof-vectors/v1",
        "regenerate": "cargo run -p trellis-types --example proof-vectors -- testdata/proofs",
        "vectors": list,
    }))
}

/// Every file of the vector directory: relative path and contents.
pub fn files() -> Vec<(String, String)> {
    let w = World::new();
    let vectors = vectors(&w);
    let mut files: Vec<(String, String)> = genesis_files(&w)
        .into_iter()
        .map(|(n, t)| (n.to_string(), format!("{t}\n")))
        .collect();
    for v in &vectors {
        files.push((format!("bundles/{}.json", v.name), v.bundle.clone()));
    }
    files.push(("vectors.json".into(), manifest(&vectors)));
    files
}

/// How [`zip215_only_signature`] makes its R.
pub enum NonceKind {
    /// R = rB + T, T of order 8.
    TorsionR,
    /// R = the identity, encoded as y = p + 1.
    NonCanonicalIdentityR,
}

/// A signature by the key of `signer(seed)` on `msg` that the ZIP-215 rule accepts
/// ([8]SB = [8]R + [8]kA) and RFC 8032's strict rule refuses: its R is not `rB` for the nonce.
pub fn zip215_only_signature(msg: &[u8], seed: u8, kind: NonceKind) -> trellis_types::Signature {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest as _, Sha512};
    let expanded: [u8; 64] = Sha512::digest([seed; 32]).into();
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&expanded[..32]);
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let public = (ED25519_BASEPOINT_POINT * a).compress().0;
    assert_eq!(
        public,
        signer(seed).public_key().0,
        "RFC 8032 key expansion"
    );
    let (r, r_bytes) = match kind {
        NonceKind::TorsionR => {
            let r = Scalar::from_bytes_mod_order_wide(
                &Sha512::digest([b"trellis vector nonce".as_slice(), msg].concat()).into(),
            );
            (
                r,
                (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1])
                    .compress()
                    .0,
            )
        }
        NonceKind::NonCanonicalIdentityR => {
            let mut y = [0xff; 32];
            y[0] = 0xee;
            y[31] = 0x7f;
            (Scalar::ZERO, y)
        }
    };
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::digest([r_bytes.as_slice(), &public, msg].concat()).into(),
    );
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    trellis_types::Signature(sig)
}
