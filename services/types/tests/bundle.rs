//! Anchor proof bundles: a real bundle verifies against its genesis, every single-bit change of
//! its JSON is caught, and each broken link is named.

mod common;

use common::*;
use trellis_consensus::{CertError, EpochState};
use trellis_types::{AnchorBundle, BrokenLink, Digest, anchor_state_key};

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
        let verdict = bundle.verify(&w.genesis).expect("verifies");
        assert_eq!(verdict.digest, w.anchored[i].0);
        assert_eq!(verdict.tag, format!("invoice-2026-{i:04}"));
        assert_eq!((verdict.epoch, verdict.state_height), (1, 1));
        assert_eq!((verdict.signers, verdict.committee_size), (3, 4));
        let text = json(&bundle);
        assert_eq!(AnchorBundle::from_json(&text), Ok(bundle));
    }
    let line = w
        .bundle(0)
        .verify(&w.genesis)
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
                        b.verify(&w.genesis).is_err(),
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

#[test]
fn another_genesis_is_refused() {
    let w = World::new();
    let bundle = w.bundle(0);
    let strangers: Vec<_> = (10..14).map(signer).collect();
    let other = EpochState::genesis(CHAIN, committee(&strangers), 1_000);
    assert!(matches!(
        bundle.verify(&other),
        Err(BrokenLink::EpochChange {
            index: 0,
            error: CertError::BadSignature
        })
    ));
    let other_chain = EpochState::genesis("another-chain", committee(&w.old), 1_000);
    assert_eq!(bundle.verify(&other_chain), Err(BrokenLink::ChainId));
}

#[test]
fn a_certificate_below_quorum_is_refused() {
    let w = World::new();
    let mut bundle = w.bundle(0);
    bundle.commit_qc = certify(&w.epoch1[3], &w.new, &[0, 2]);
    let err = bundle.verify(&w.genesis).expect_err("two of four");
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
        bundle.verify(&w.genesis),
        Err(BrokenLink::CommitCert(CertError::BadSignature))
    );
}

#[test]
fn a_missing_epoch_change_is_refused() {
    let w = World::new();
    let mut bundle = w.bundle(0);
    bundle.epoch_changes.clear();
    let err = bundle.verify(&w.genesis).expect_err("missing");
    assert!(
        matches!(err, BrokenLink::EpochChanges { got: 0, .. }),
        "{err}"
    );
    // The proof of another epoch in its place.
    let mut wrong = w.epoch_change.clone();
    wrong.commit_qc = certify(&w.epoch0[2], &w.old, &[0, 1, 3]);
    bundle.epoch_changes = vec![wrong];
    assert_eq!(
        bundle.verify(&w.genesis).map_err(|e| e.to_string()),
        Err("epoch change 0: epoch-change proof: certificate does not commit the chain".into())
    );
}

#[test]
fn each_broken_link_is_named() {
    let w = World::new();
    let check = |b: AnchorBundle, want: &str| {
        let got = b.verify(&w.genesis).map_err(|e| e.to_string());
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
    assert!(b.verify(&w.genesis).is_ok());
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
