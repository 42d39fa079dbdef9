//! Sealing secrets at rest: round trip, tampering, unknown keys, rotation, key files.

use trellis_servicekit::{Keyring, SealError};

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

#[test]
fn round_trip_and_layout() {
    let ring = Keyring::from_hex_keys("k1", &[("k1", K1)]).unwrap();
    let sealed = ring
        .seal(b"id number 110101199003077777", b"row-7")
        .unwrap();
    // kid_len ‖ kid ‖ nonce ‖ ciphertext ‖ tag
    assert_eq!(sealed[0], 2);
    assert_eq!(&sealed[1..3], b"k1");
    assert_eq!(sealed.len(), 1 + 2 + 12 + 28 + 16);
    assert_eq!(
        ring.open(&sealed, b"row-7").unwrap(),
        b"id number 110101199003077777"
    );
    // Random nonces: the same plaintext seals differently each time.
    assert_ne!(
        sealed,
        ring.seal(b"id number 110101199003077777", b"row-7")
            .unwrap()
    );
    // Empty plaintext works too.
    let empty = ring.seal(b"", b"").unwrap();
    assert_eq!(ring.open(&empty, b"").unwrap(), b"");
}

#[test]
fn every_flipped_byte_is_refused() {
    let ring = Keyring::from_hex_keys("k1", &[("k1", K1)]).unwrap();
    let sealed = ring.seal(b"secret", b"aad").unwrap();
    for i in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= bit;
            assert!(
                ring.open(&bad, b"aad").is_err(),
                "flipping bit {bit:#x} of byte {i} went unnoticed"
            );
        }
    }
    // Wrong associated data: the value was moved to another row.
    assert_eq!(ring.open(&sealed, b"other"), Err(SealError::Tampered));
}

#[test]
fn truncated_values_are_refused_cleanly() {
    let ring = Keyring::from_hex_keys("k1", &[("k1", K1)]).unwrap();
    let sealed = ring.seal(b"secret", b"").unwrap();
    for len in 0..sealed.len() {
        assert!(ring.open(&sealed[..len], b"").is_err(), "length {len}");
    }
    assert_eq!(ring.open(&[], b""), Err(SealError::Malformed));
    assert_eq!(ring.open(&[0, 1, 2], b""), Err(SealError::Malformed));
    assert_eq!(ring.open(&[255; 40], b""), Err(SealError::Malformed));
}

#[test]
fn unknown_key_is_an_error() {
    let a = Keyring::from_hex_keys("k1", &[("k1", K1)]).unwrap();
    let b = Keyring::from_hex_keys("k2", &[("k2", K2)]).unwrap();
    let sealed = a.seal(b"secret", b"").unwrap();
    assert_eq!(
        b.open(&sealed, b""),
        Err(SealError::UnknownKey("k1".into()))
    );
    // Same id, different key material: authentication fails.
    let impostor = Keyring::from_hex_keys("k1", &[("k1", K2)]).unwrap();
    assert_eq!(impostor.open(&sealed, b""), Err(SealError::Tampered));
}

#[test]
fn rotation_keeps_old_values_open() {
    let v1 = Keyring::generate("2026-01").unwrap();
    let old = v1.seal(b"old secret", b"x").unwrap();
    let v2 = v1.rotate("2026-02").unwrap();
    assert_eq!(v2.current_kid(), "2026-02");
    assert_eq!(v2.kids(), vec!["2026-01", "2026-02"]);
    let new = v2.seal(b"new secret", b"x").unwrap();
    assert_eq!(&new[1..8], b"2026-02");
    assert_eq!(v2.open(&old, b"x").unwrap(), b"old secret");
    assert_eq!(v2.open(&new, b"x").unwrap(), b"new secret");
    // The old keyring cannot read what the new key sealed.
    assert_eq!(
        v1.open(&new, b"x"),
        Err(SealError::UnknownKey("2026-02".into()))
    );
    // Rotation through the key file works the same.
    let reloaded = Keyring::from_json(&v2.to_json()).unwrap();
    assert_eq!(reloaded.open(&old, b"x").unwrap(), b"old secret");
    assert_eq!(reloaded.current_kid(), "2026-02");
}

#[test]
fn key_files() {
    let json = format!(r#"{{"current":"k2","keys":{{"k1":"{K1}","k2":"{K2}"}}}}"#);
    let ring = Keyring::from_json(&json).unwrap();
    assert_eq!(ring.current_kid(), "k2");
    let back: serde_json::Value = serde_json::from_str(&ring.to_json()).unwrap();
    assert_eq!(back["current"], "k2");
    assert_eq!(back["keys"]["k1"], K1);
    assert_eq!(back["keys"]["k2"], K2);

    for bad in [
        r#"{"current":"k9","keys":{"k1":"00"}}"#.to_string(),
        format!(r#"{{"current":"k9","keys":{{"k1":"{K1}"}}}}"#),
        format!(r#"{{"current":"","keys":{{"":"{K1}"}}}}"#),
        format!(r#"{{"current":"k1","keys":{{"k1":"{K1}"}},"extra":1}}"#),
        r#"{"current":"k1","keys":{"k1":"zz"}}"#.to_string(),
        "not json".to_string(),
    ] {
        let err = Keyring::from_json(&bad).unwrap_err();
        // Error messages never carry key material.
        assert!(!err.to_string().contains(K1), "{err}");
    }
}

#[test]
fn debug_never_prints_keys() {
    let ring = Keyring::from_hex_keys("k1", &[("k1", K1), ("k2", K2)]).unwrap();
    let shown = format!("{ring:?} {ring:#?}");
    assert!(shown.contains("k1") && shown.contains("k2"));
    for key in [K1, K2] {
        assert!(!shown.contains(key));
        assert!(!shown.contains(&key[..16]));
    }
    // Nor as the decimal bytes a derived Debug would print.
    assert!(!shown.contains("[0, 1, 2, 3"));
}

#[test]
fn invalid_key_ids_and_keys() {
    assert!(matches!(
        Keyring::from_hex_keys("k1", &[("k1", "0011")]),
        Err(SealError::InvalidKey(_))
    ));
    assert!(matches!(
        Keyring::generate(""),
        Err(SealError::InvalidKeyId(_))
    ));
    assert!(matches!(
        Keyring::generate(&"x".repeat(256)),
        Err(SealError::InvalidKeyId(_))
    ));
    assert!(matches!(
        Keyring::generate("has space"),
        Err(SealError::InvalidKeyId(_))
    ));
    assert!(Keyring::generate(&"x".repeat(255)).is_ok());
}
