//! Weak consensus keys: ZIP-215 accepts signatures for them that their holder never made, so a
//! committee refuses them.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use trellis_consensus::crypto::{is_strong_key, verify};
use trellis_consensus::{Committee, CommitteeError, PublicKey, Signature, Signer};

fn honest(seed: u8) -> PublicKey {
    Signer::from_seed([seed; 32]).public_key()
}

/// The identity point: y = 1.
fn identity() -> PublicKey {
    let mut k = [0u8; 32];
    k[0] = 1;
    PublicKey(k)
}

#[test]
fn anyone_can_sign_for_the_identity_key_so_it_is_weak() {
    // R = identity, S = 0: the cofactored equation [8]SB = [8]R + [8]kA holds for every message.
    let mut forged = [0u8; 64];
    forged[..32].copy_from_slice(&identity().0);
    let sig = Signature(forged);
    assert_eq!(verify(&identity(), &sig, b"any message at all"), Ok(()));
    assert_eq!(verify(&identity(), &sig, b"and another"), Ok(()));
    assert!(!is_strong_key(&identity()));
}

#[test]
fn small_order_torsioned_and_non_canonical_keys_are_weak() {
    for t in EIGHT_TORSION {
        assert!(!is_strong_key(&PublicKey(t.compress().0)), "{t:?}");
    }
    // An honest key plus a torsion point verifies the same cofactored signatures as the key.
    let a = CompressedEdwardsY(honest(1).0)
        .decompress()
        .expect("a signer's key decodes");
    let torsioned = PublicKey((a + EIGHT_TORSION[1]).compress().0);
    assert!(!is_strong_key(&torsioned));
    // y = p + 1 decodes as the identity's y = 1, but is not its canonical encoding.
    let mut non_canonical = [0xff; 32];
    non_canonical[0] = 0xee;
    non_canonical[31] = 0x7f;
    assert!(CompressedEdwardsY(non_canonical).decompress().is_some());
    assert!(!is_strong_key(&PublicKey(non_canonical)));
    // Not a point at all: about half of all y have no x on the curve.
    let off_curve = (2u8..=255)
        .map(|y| {
            let mut k = [0u8; 32];
            k[0] = y;
            k
        })
        .find(|k| CompressedEdwardsY(*k).decompress().is_none())
        .expect("some small y is off the curve");
    assert!(!is_strong_key(&PublicKey(off_curve)));
}

#[test]
fn signer_keys_and_the_base_point_are_strong() {
    for seed in 0..=255u8 {
        assert!(is_strong_key(&honest(seed)));
    }
    assert!(is_strong_key(&PublicKey(
        ED25519_BASEPOINT_POINT.compress().0
    )));
}

#[test]
fn a_committee_refuses_a_weak_member_by_its_index() {
    let members = vec![honest(1), honest(2), identity(), honest(3)];
    assert_eq!(
        Committee::new(members),
        Err(CommitteeError::WeakKey { index: 2 })
    );
    assert!(Committee::new(vec![honest(1), honest(2), honest(3), honest(4)]).is_ok());
}
