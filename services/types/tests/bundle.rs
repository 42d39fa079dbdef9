//! Anchor proof bundles: a real bundle verifies against its genesis, every single-bit change of
//! its JSON is caught, and each broken link is named.

mod common;

use common::*;
use trellis_consensus::{CertError, VoteData};
use trellis_types::{AnchorBundle, BrokenLink, Digest, Genesis, GenesisTrust, anchor_state_key};

fn json(b: &AnchorBundle) -> String {
    b.to_json().to_string()
}

#[test]
fn anchor_key_layout_is_the_ledgers() {
    let d = Digest([7; 32]);
    assert_eq!(
        anchor_state_key(&d),
        [b"anchor/".as_slice(), &[7; 32]].concat()
    );
}

#[test]
fn a_real_bundle_verifies_and_round_trips_through_json() {
    let w = World::new();
    for i in 0..w.anchored.len() {
        let bundle = w.bundle(i);
        let verdict = bundle.verify(&w.genesis_file).expect("verifies");
        assert_eq!(verdict.digest, w.anchored[i].0);
        assert_eq!(verdict.tag, format!("invoice-2026-{i:04}"));
        assert_eq!((verdict.epoch, verdict.state_height), (1, 1));
        assert_eq!((verdict.signers, verdict.committee_size), (3, 4));
        let text = json(&bundle);
        assert_eq!(AnchorBundle::from_json(&text), Ok(bundle));
    }
    let line = w
        .bundle(0)
        .verify(&w.genesis_file)
        .expect("verifies")
        .to_string();
    assert!(line.contains(&Digest([0xd0; 32]).to_hex()), "{line}");
    assert!(line.contains("certified by 3 of 4 validators"), "{line}");
    assert!(!line.contains('\n'));
}

/// Every bit of every byte of the JSON text: the result must not parse, or must not verify.
#[test]
fn every_flipped_bit_of_the_json_is_caught() {
    let w = World::new();
    let text = json(&w.bundle(2));
    let trust = GenesisTrust::new(&w.genesis_file).expect("a valid genesis");
    let (mut unparsed, mut refused) = (0, 0);
    for i in 0..text.len() {
        for bit in 0..8 {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 1 << bit;
            let Ok(s) = String::from_utf8(bytes) else {
                unparsed += 1;
                continue;
            };
            match AnchorBundle::from_json(&s) {
                Err(_) => unparsed += 1,
                Ok(b) => {
                    assert!(
                        b.verify_against(&trust).is_err(),
                        "byte {i} ({:?}) with bit {bit} flipped still verifies",
                        &text[i.saturating_sub(20)..(i + 20).min(text.len())]
                    );
                    refused += 1;
                }
            }
        }
    }
    eprintln!(
        "{} bytes: {unparsed} flips unparsed, {refused} refused by verify",
        text.len()
    );
    assert_eq!(unparsed + refused, text.len() * 8);
    assert!(refused > 1_000, "{refused} reached verification");
}

/// A genesis file is bound whole: other accounts, roles, parameters or names are another chain's
/// genesis, even with the same chain id and committee. (Before the genesis digest was in the
/// state, every one of these verified.)
#[test]
fn a_genesis_with_other_accounts_roles_or_parameters_is_refused() {
    let w = World::new();
    let bundle = w.bundle(0);
    type Edit = (&'static str, fn(&mut Genesis));
    let edits: [Edit; 7] = [
        ("a role", |g| g.accounts[1].role = "regulator".into()),
        ("an account less", |g| {
            g.accounts.pop();
        }),
        ("an org", |g| g.accounts[0].org = "org-9".into()),
        ("a parameter", |g| g.params.max_block_txs += 1),
        ("epoch length", |g| g.params.epoch_length_blocks = Some(100)),
        ("genesis time", |g| g.genesis_time_ms += 1),
        ("a validator's name", |g| {
            g.validators[0].name = "v-one".into()
        }),
    ];
    for (what, edit) in edits {
        let mut other = w.genesis_file.clone();
        edit(&mut other);
        other.validate().expect("still a valid genesis");
        assert!(
            matches!(bundle.verify(&other), Err(BrokenLink::Genesis { .. })),
            "{what}"
        );
        // Naming the other file's digest does not help: the state holds the real one.
        let claimed = AnchorBundle {
            genesis_digest: other.digest().expect("valid"),
            ..bundle.clone()
        };
        let err = claimed.verify(&other).expect_err(what);
        assert_eq!(err.code(), "genesis-proof", "{what}: {err}");
    }
    // The same meaning spelled otherwise (uppercase hex keys, defaults written out) is the same
    // genesis.
    let mut respelled = w.genesis_file.clone();
    for v in &mut respelled.validators {
        v.consensus_key = v.consensus_key.to_uppercase();
    }
    let text = respelled.to_json_pretty();
    let reparsed = Genesis::from_json(&text).expect("parses");
    assert!(bundle.verify(&reparsed).is_ok());

    let mut other_chain = w.genesis_file.clone();
    other_chain.chain_id = "another-chain".into();
    assert_eq!(bundle.verify(&other_chain), Err(BrokenLink::ChainId));
    let mut strangers = w.genesis_file.clone();
    for (i, v) in strangers.validators.iter_mut().enumerate() {
        v.consensus_key = hex::encode(signer(10 + i as u8).public_key().0);
    }
    assert_eq!(
        bundle.verify(&strangers).map_err(|e| e.code()),
        Err("genesis")
    );
}

/// Headers linked by id and certified by a quorum must still follow the height and round rules.
/// (Before these checks, each of these bundles verified.)
#[test]
fn heights_and_rounds_are_checked_along_the_headers_and_to_the_certified_block() {
    let w = World::new();
    let good = w.hand_bundle(0, &[(1, 1, 3), (1, 2, 4), (1, 3, 5)]);
    assert!(good.verify(&w.genesis_file).is_ok(), "the positive control");
    /// Headers as `(epoch, round, height)`, and the link they break.
    type Case = (&'static [(u64, u64, u64)], BrokenLink);
    let cases: [Case; 6] = [
        (&[(1, 1, 3), (1, 2, 5), (1, 3, 6)], BrokenLink::Height(1)),
        (&[(1, 1, 3), (1, 2, 3)], BrokenLink::Height(1)),
        (&[(1, 1, 1), (1, 2, 2)], BrokenLink::Height(0)),
        (&[(1, 1, 3), (1, 1, 4), (1, 2, 5)], BrokenLink::Round(1)),
        (&[(1, 0, 3), (1, 2, 4)], BrokenLink::Round(0)),
        (&[(1, 5, 3), (1, 4, 4)], BrokenLink::Round(1)),
    ];
    for (spec, want) in cases {
        let got = w.hand_bundle(0, spec).verify(&w.genesis_file);
        assert_eq!(got, Err(want), "{spec:?}");
    }
    // The certified block: one height above the last header, its recorded parent round the last
    // header's round.
    let (headers, _) = w.hand_chain(&[(1, 1, 3), (1, 2, 4)]);
    let last = headers.last().expect("two headers");
    let vd = |height: u64, parent_round: u64| VoteData {
        epoch: 1,
        round: parent_round + 1,
        height,
        block_id: Digest::of(b"child"),
        parent_id: last.id(),
        parent_round,
        ends_epoch: false,
    };
    for (data, ok) in [(vd(5, 2), true), (vd(6, 2), false), (vd(5, 7), false)] {
        let bundle = AnchorBundle {
            headers: headers.clone(),
            commit_qc: w.sign(data, &w.new, &[0, 2, 3]),
            ..w.bundle(0)
        };
        let got = bundle.verify(&w.genesis_file);
        if ok {
            assert!(got.is_ok(), "{data:?}");
        } else {
            assert_eq!(got, Err(BrokenLink::NotCommitted), "{data:?}");
        }
    }
}

/// A committee holding a key anyone can sign for: two honest signatures and one forged make a
/// quorum of four. (Before weak keys were refused, this genesis parsed and the bundle verified.)
#[test]
fn a_genesis_with_a_weak_consensus_key_is_refused() {
    let w = World::new();
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut weak = w.genesis_file.clone();
    weak.validators[3].consensus_key = hex::encode(identity);
    let err = Genesis::from_json(&weak.to_json_pretty()).expect_err("weak key");
    assert!(
        err.to_string()
            .starts_with("validators[3].consensus_key: not a strong ed25519 key"),
        "{err}"
    );
    assert!(matches!(
        w.bundle(0).verify(&weak),
        Err(BrokenLink::GenesisFile(_))
    ));
    // Account keys are checked with the same signature rule: refused too.
    let mut weak_account = w.genesis_file.clone();
    weak_account.accounts[0].public_key = hex::encode(identity);
    assert!(weak_account.validate().is_err());
}

#[test]
fn a_certificate_below_quorum_is_refused() {
    let w = World::new();
    let mut bundle = w.bundle(0);
    bundle.commit_qc = certify(&w.epoch1[3], &w.new, &[0, 2]);
    let err = bundle.verify(&w.genesis_file).expect_err("two of four");
    assert_eq!(
        err,
        BrokenLink::CommitCert(CertError::NoQuorum { got: 2, want: 3 })
    );
    assert_eq!(
        err.to_string(),
        "commit certificate: 2 signers, quorum is 3"
    );
    // Signed by the right number of the wrong committee (the old one).
    bundle.commit_qc = certify(&w.epoch1[3], &w.old, &[0, 1, 2]);
    assert_eq!(
        bundle.verify(&w.genesis_file),
        Err(BrokenLink::CommitCert(CertError::BadSignature))
    );
}

#[test]
fn a_missing_epoch_change_is_refused() {
    let w = World::new();
    let mut bundle = w.bundle(0);
    bundle.epoch_changes.clear();
    let err = bundle.verify(&w.genesis_file).expect_err("missing");
    assert!(
        matches!(err, BrokenLink::EpochChanges { got: 0, .. }),
        "{err}"
    );
    // The proof of another epoch in its place.
    let mut wrong = w.epoch_change.clone();
    wrong.commit_qc = certify(&w.epoch0[2], &w.old, &[0, 1, 3]);
    bundle.epoch_changes = vec![wrong];
    assert_eq!(
        bundle.verify(&w.genesis_file).map_err(|e| e.to_string()),
        Err("epoch change 0: epoch-change proof: certificate does not commit the chain".into())
    );
}

#[test]
fn each_broken_link_is_named() {
    let w = World::new();
    let check = |b: AnchorBundle, want: &str| {
        let got = b.verify(&w.genesis_file).map_err(|e| e.to_string());
        assert_eq!(got, Err(want.to_string()));
    };

    let mut b = w.bundle(0);
    b.record.tag.push('!');
    check(b, "state proof does not match the state root");

    let mut b = w.bundle(0);
    b.state_proof = w.smt.prove(&anchor_state_key(&w.anchored[1].0));
    check(b, "state proof does not match the state root");

    // Every epoch-1 header commits to the same state: dropping header 0 still proves it.
    let mut b = w.bundle(0);
    b.headers.remove(0);
    assert!(b.verify(&w.genesis_file).is_ok());
    let mut b = w.bundle(0);
    b.state.height = 0;
    check(b, "header 0 does not commit to the bundle's state");

    let mut b = w.bundle(0);
    b.headers.remove(1);
    check(b, "header 1 does not link to header 0");

    let mut b = w.bundle(0);
    b.headers.pop();
    check(b, "commit certificate does not commit the last header");

    let mut b = w.bundle(0);
    b.headers.clear();
    check(b, "the bundle has no headers");

    let mut b = w.bundle(0);
    b.record.sender.pop();
    check(b, "record: sender is not 32 bytes");
}

/// A bundle of another version is reported by its format, not by a member its version lacks.
#[test]
fn a_version_1_bundle_is_refused_by_its_format() {
    let w = World::new();
    let mut v1 = w.bundle(0).to_json();
    v1["format"] = "trellis.anchor-bundle/v1".into();
    let o = v1.as_object_mut().expect("an object");
    o.remove("genesis_digest");
    o.remove("genesis_proof");
    let err = AnchorBundle::from_json(&v1.to_string()).expect_err("v1");
    assert_eq!(err.field(), Some("format"), "{err}");
    assert!(
        err.to_string().contains("trellis.anchor-bundle/v1"),
        "{err}"
    );
}
