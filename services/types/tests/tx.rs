//! Transactions: canonical encoding, field parsing, signatures, batch verification, and a
//! pinned wire format.

use prost::Message;
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{BeaconAction, Digest, ProposalKind, Signer, Tag, Transaction, TxError, pb};

const CHAIN: &str = "trellis-beacon-test";

fn signer(i: u8) -> Signer {
    Signer::from_seed([i; 32])
}

fn anchor(i: u8) -> BeaconAction {
    BeaconAction::Anchor {
        digest: Digest([i; 32]),
        tag: Tag::parse("invoice-2026-0042").expect("valid tag"),
    }
}

/// What the beacon admits: the envelope, then its action as a beacon action.
fn decode(bytes: &[u8]) -> Result<Transaction, TxError> {
    let tx = Transaction::decode(bytes, DEFAULT_MAX_TX_BYTES)?;
    BeaconAction::decode(tx.action())?;
    Ok(tx)
}

#[test]
fn a_signed_transaction_round_trips_and_verifies() {
    let tx = Transaction::sign(CHAIN, &signer(1), 7, anchor(9));
    let back = decode(tx.encoded()).expect("decodes");
    assert_eq!(back, tx);
    assert_eq!(back.hash(), tx.hash());
    assert_eq!(back.nonce(), 7);
    assert_eq!(back.sender(), signer(1).public_key());
    assert!(back.verify_signature().is_ok());
}

#[test]
fn every_flipped_byte_is_caught() {
    let tx = Transaction::sign(CHAIN, &signer(1), 7, anchor(9));
    let bytes = tx.encoded().to_vec();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            let accepted = decode(&b).and_then(|t| t.verify_signature().map(|()| t));
            assert!(
                accepted.is_err(),
                "byte {i} flipped by {bit:#x} was accepted"
            );
        }
    }
}

#[test]
fn non_canonical_encodings_are_refused() {
    let tx = Transaction::sign(CHAIN, &signer(1), 7, anchor(9));
    // An unknown field appended to the envelope, then to the body.
    let mut extra = tx.encoded().to_vec();
    extra.extend_from_slice(&[0x78, 0x01]); // field 15, varint 1
    assert_eq!(decode(&extra), Err(TxError::NonCanonical));
    let mut signed = pb::SignedTransaction::decode(tx.encoded()).expect("decodes");
    signed.body.extend_from_slice(&[0x78, 0x01]);
    assert_eq!(decode(&signed.encode_to_vec()), Err(TxError::NonCanonical));
    // Fields out of order: the signature before the body.
    let mut swapped = Vec::new();
    let s = pb::SignedTransaction::decode(tx.encoded()).expect("decodes");
    pb::SignedTransaction {
        body: Vec::new(),
        signature: s.signature.clone(),
    }
    .encode(&mut swapped)
    .expect("encode");
    pb::SignedTransaction {
        body: s.body.clone(),
        signature: Vec::new(),
    }
    .encode(&mut swapped)
    .expect("encode");
    assert_eq!(decode(&swapped), Err(TxError::NonCanonical));
}

#[test]
fn oversized_and_malformed_input_is_refused() {
    let tx = Transaction::sign(CHAIN, &signer(1), 0, anchor(1));
    assert!(matches!(
        Transaction::decode(tx.encoded(), 10),
        Err(TxError::TooLarge { max: 10, .. })
    ));
    assert!(matches!(
        decode(&[0xff, 0xff, 0xff]),
        Err(TxError::Malformed(_))
    ));
    // Deterministic garbage never panics.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 0..2_000usize {
        let buf: Vec<u8> = (0..len % 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = decode(&buf);
    }
}

fn with_body(edit: impl FnOnce(&mut pb::TransactionBody)) -> Vec<u8> {
    let tx = Transaction::sign(CHAIN, &signer(1), 0, anchor(1));
    let signed = pb::SignedTransaction::decode(tx.encoded()).expect("decodes");
    let mut body = pb::TransactionBody::decode(signed.body.as_slice()).expect("decodes");
    edit(&mut body);
    pb::SignedTransaction {
        body: body.encode_to_vec(),
        signature: signed.signature,
    }
    .encode_to_vec()
}

/// A body whose anchor action is edited.
fn with_anchor(edit: impl FnOnce(&mut pb::Anchor)) -> Vec<u8> {
    with_body(|b| {
        let mut action = pb::BeaconAction::decode(b.action.as_slice()).expect("decodes");
        match action.action.as_mut() {
            Some(pb::beacon_action::Action::Anchor(a)) => edit(a),
            _ => unreachable!("test bodies carry an anchor"),
        }
        b.action = action.encode_to_vec();
    })
}

#[test]
fn each_invalid_field_is_named() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("anchor.digest", with_anchor(|a| a.digest.truncate(31))),
        ("anchor.tag", with_anchor(|a| a.tag = "x".repeat(65))),
        ("anchor.tag", with_anchor(|a| a.tag = "bad\ntag".into())),
        ("sender", with_body(|b| b.sender.truncate(31))),
        ("chain_id", with_body(|b| b.chain_id.clear())),
        ("action", with_body(|b| b.action.clear())),
    ];
    for (name, bytes) in cases {
        match decode(&bytes) {
            Err(TxError::Field { field, .. }) => assert_eq!(field, name),
            other => panic!("{name}: expected a field error, got {other:?}"),
        }
    }
    let mut short_sig =
        pb::SignedTransaction::decode(Transaction::sign(CHAIN, &signer(1), 0, anchor(1)).encoded())
            .expect("decodes");
    short_sig.signature.pop();
    assert!(matches!(
        decode(&short_sig.encode_to_vec()),
        Err(TxError::Field {
            field: "signature",
            ..
        })
    ));
}

#[test]
fn a_signature_does_not_carry_over_to_another_chain_or_sender() {
    let tx = Transaction::sign(CHAIN, &signer(1), 0, anchor(1));
    let other_chain = with_body(|b| b.chain_id = "another-chain".into());
    assert_eq!(
        decode(&other_chain).and_then(|t| t.verify_signature()),
        Err(TxError::BadSignature)
    );
    let other_sender = with_body(|b| b.sender = signer(2).public_key().0.to_vec());
    assert_eq!(
        decode(&other_sender).and_then(|t| t.verify_signature()),
        Err(TxError::BadSignature)
    );
    assert!(tx.verify_signature().is_ok());
}

#[test]
fn batch_verification_finds_the_bad_signatures() {
    let mut txs: Vec<Transaction> = (0..20)
        .map(|i| Transaction::sign(CHAIN, &signer(i), u64::from(i), anchor(i)))
        .collect();
    assert!(Transaction::verify_batch(&txs).iter().all(Result::is_ok));
    // Transaction 5 carries transaction 6's signature.
    let mut signed = pb::SignedTransaction::decode(txs[5].encoded()).expect("decodes");
    signed.signature = pb::SignedTransaction::decode(txs[6].encoded())
        .expect("decodes")
        .signature;
    txs[5] = decode(&signed.encode_to_vec()).expect("well-formed");
    let results = Transaction::verify_batch(&txs);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.is_err(), i == 5, "transaction {i}");
    }
}

#[test]
fn the_wire_format_is_pinned() {
    let mut all = Vec::new();
    for i in 0..32u8 {
        let tag = Tag::parse(&"t".repeat(usize::from(i) * 2)).expect("valid tag");
        let tx = Transaction::sign(
            CHAIN,
            &signer(i),
            u64::from(i) << (i % 60),
            BeaconAction::Anchor {
                digest: Digest([i; 32]),
                tag,
            },
        );
        all.extend_from_slice(tx.encoded());
        all.extend_from_slice(&tx.hash().0);
    }
    assert_eq!(
        Digest::of(&all).to_hex(),
        "5e88f81949c12ad13707d60b225115f727607be3d456521a7cceedd2121d5bd2"
    );
}

fn governance_actions() -> Vec<BeaconAction> {
    use trellis_types::OrgId;
    let org = OrgId::parse("org-4", "org").expect("org");
    vec![
        BeaconAction::AttestIdentity {
            subject: signer(4).public_key(),
            commitment: Digest([4; 32]),
            level: 2,
        },
        BeaconAction::Propose(ProposalKind::AdmitMember {
            org: org.clone(),
            org_key: signer(4).public_key(),
        }),
        BeaconAction::Propose(ProposalKind::RemoveMember { org }),
        BeaconAction::Propose(ProposalKind::SetParameter {
            name: "approval_threshold".into(),
            value: "3/4".into(),
        }),
        BeaconAction::Vote {
            proposal_id: 3,
            approve: false,
        },
        BeaconAction::RevokeCertificate {
            serial: vec![0x4f, 0x01],
            reason: 1,
        },
    ]
}

#[test]
fn governance_actions_round_trip() {
    for action in governance_actions() {
        let tx = Transaction::sign(CHAIN, &signer(1), 1, action.clone());
        let back = decode(tx.encoded()).expect("decodes");
        assert_eq!(
            BeaconAction::decode(back.action()).expect("a beacon action"),
            action
        );
        assert!(back.verify_signature().is_ok());
    }
}

#[test]
fn invalid_governance_fields_are_named() {
    use pb::beacon_action::Action as A;
    let with_action = |a: A| {
        let body = pb::TransactionBody {
            chain_id: CHAIN.into(),
            sender: signer(1).public_key().0.to_vec(),
            nonce: 0,
            action: pb::BeaconAction { action: Some(a) }.encode_to_vec(),
        };
        pb::SignedTransaction {
            body: body.encode_to_vec(),
            signature: vec![0; 64],
        }
        .encode_to_vec()
    };
    let admit = |org: &str, key: Vec<u8>| {
        A::Propose(pb::Propose {
            kind: Some(pb::propose::Kind::AdmitMember(pb::AdmitMember {
                org: org.into(),
                org_key: key,
            })),
        })
    };
    let set = |name: &str, value: &str| {
        A::Propose(pb::Propose {
            kind: Some(pb::propose::Kind::SetParameter(pb::SetParameter {
                name: name.into(),
                value: value.into(),
            })),
        })
    };
    let revoke =
        |serial: Vec<u8>, reason| A::RevokeCertificate(pb::RevokeCertificate { serial, reason });
    let attest = |level| {
        A::AttestIdentity(pb::AttestIdentity {
            subject_key: vec![1; 32],
            commitment: vec![2; 32],
            level,
        })
    };
    let cases = vec![
        ("propose.admit_member.org", admit("", vec![1; 32])),
        ("propose.admit_member.org", admit("org 4", vec![1; 32])),
        ("propose.admit_member.org_key", admit("org-4", vec![1; 31])),
        // The identity point: anyone could sign as the org.
        (
            "propose.admit_member.org_key",
            admit("org-4", [vec![1], vec![0; 31]].concat()),
        ),
        ("propose.kind", A::Propose(pb::Propose { kind: None })),
        ("propose.set_parameter.name", set("max_tx_bytes", "1")),
        ("propose.set_parameter.value", set("approval_threshold", "")),
        (
            "vote.proposal_id",
            A::Vote(pb::GovernanceVote {
                proposal_id: 0,
                approve: true,
            }),
        ),
        ("revoke_certificate.serial", revoke(vec![], 1)),
        ("revoke_certificate.serial", revoke(vec![0, 1], 1)),
        ("revoke_certificate.serial", revoke(vec![1; 21], 1)),
        ("revoke_certificate.reason", revoke(vec![1], 7)),
        ("revoke_certificate.reason", revoke(vec![1], 11)),
        ("attest_identity.level", attest(0)),
        ("attest_identity.level", attest(4)),
    ];
    for (name, action) in cases {
        match decode(&with_action(action)) {
            Err(TxError::Field { field, .. }) => assert_eq!(field, name),
            other => panic!("{name}: expected a field error, got {other:?}"),
        }
    }
}

#[test]
fn the_peeked_hash_is_the_decoded_hash() {
    for i in 1..=5u8 {
        let tx = Transaction::sign("trellis-test", &signer(i), u64::from(i) * 1000, anchor(i));
        assert_eq!(Transaction::peek_hash(tx.encoded()), Some(tx.hash()));
        // A large body takes a multi-byte length varint.
        let long = Transaction::sign(
            "trellis-test",
            &signer(i),
            u64::MAX - u64::from(i),
            BeaconAction::Propose(ProposalKind::SetParameter {
                name: "approval_threshold".into(),
                value: "x".repeat(64),
            }),
        );
        assert!(long.encoded()[1] & 0x80 != 0, "length needs two bytes");
        assert_eq!(Transaction::peek_hash(long.encoded()), Some(long.hash()));
    }
    // Truncated, empty, another field first, an endless varint: no hash, no panic.
    let tx = Transaction::sign("trellis-test", &signer(1), 0, anchor(1));
    let bytes = tx.encoded();
    for cut in 0..20 {
        assert_eq!(Transaction::peek_hash(&bytes[..cut]), None, "cut at {cut}");
    }
    assert_eq!(Transaction::peek_hash(&[]), None);
    assert_eq!(Transaction::peek_hash(&[0x12, 0x00]), None);
    assert_eq!(
        Transaction::peek_hash(&[
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ]),
        None
    );
}

/// The worked example of docs/transactions.md, byte for byte.
#[test]
fn the_documented_example_is_exact() {
    let doc = include_str!("../../../docs/transactions.md");
    let tx = Transaction::sign(
        "example-chain",
        &Signer::from_seed([1; 32]),
        0,
        BeaconAction::Anchor {
            digest: Digest([0xab; 32]),
            tag: Tag::parse("invoice-42").expect("tag"),
        },
    );
    let signed = pb::SignedTransaction::decode(tx.encoded()).expect("decodes");
    let quoted = |label: &str| -> String {
        // The hex after `label` up to the closing backquote, lines joined.
        let start = doc
            .find(label)
            .unwrap_or_else(|| panic!("{label} is in the doc"))
            + label.len();
        let rest = &doc[start..];
        let body = &rest[rest.find("```").expect("a block") + 3..];
        let body = &body[body.find('\n').expect("a newline") + 1..];
        body[..body.find("```").expect("closed")]
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect()
    };
    println!("action {}", hex::encode(tx.action()));
    println!("body {}", hex::encode(&signed.body));
    println!("encoded {}", hex::encode(tx.encoded()));
    println!("hash {}", tx.hash().to_hex());
    assert_eq!(quoted("Action bytes:"), hex::encode(tx.action()));
    assert_eq!(quoted("Body bytes:"), hex::encode(&signed.body));
    assert_eq!(quoted("Signed transaction:"), hex::encode(tx.encoded()));
    assert_eq!(quoted("Transaction hash:"), tx.hash().to_hex());
}
