//! Pins the canonical encodings: block ids, vote-data digests and signed bytes of many generated
//! values hash to one fixed digest, so an accidental change of what validators sign fails here.
//! A deliberate change updates the pinned value and is a protocol version change.

use trellis_consensus::crypto::{MessageKind, signing_bytes};
use trellis_consensus::sim::testkit::{CHAIN, Keys};
use trellis_consensus::types::Encoder;
use trellis_consensus::{TimeoutVote, Vote};

// Changed deliberately when block headers gained the application state commitment.
const PINNED: &str = "676f52782efaa1b54efa14e9c22ff23c279903b813479feb5edee2d5ecc74d38";

#[test]
fn encodings_are_pinned() {
    let keys = Keys::new(7);
    let mut all = Encoder::new("conformance");
    let mut qc = keys.genesis.root_qc();
    all.digest(&keys.genesis.root_id);
    for round in 1..=40u64 {
        let payload: Vec<u8> = (0..round as u8).collect();
        let next = (round % 13 == 0).then(|| Keys::with_seed(4, round as u8).committee);
        let block = keys.block_with(&qc, round, (round % 7) as usize, &payload, next);
        all.digest(&block.id());
        all.digest(&block.vote_data().digest());
        all.fixed(&Vote::signing_bytes(CHAIN, &block.vote_data()));
        all.fixed(&TimeoutVote::signing_bytes(CHAIN, 0, round, round / 2));
        all.fixed(&signing_bytes(
            CHAIN,
            MessageKind::Proposal,
            0,
            round,
            &block.id(),
            &block.header.payload_digest,
        ));
        qc = keys.qc(&block, &[0, 1, 2, 3, 4]);
        all.bytes(&qc.signers.0);
        for s in &qc.signatures {
            all.fixed(&s.0);
        }
    }
    assert_eq!(all.hash().to_hex(), PINNED);
}
