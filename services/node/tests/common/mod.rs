//! The beacon chain the store and tree tests build on: three member accounts at genesis, and
//! anchors signed by them.

use trellis_ledger::beacon::{BeaconGenesis, GenesisAccount};
use trellis_types::pb::Role;
use trellis_types::{BeaconAction, Digest, Signer, Tag, Transaction};

pub const CHAIN: &str = "trellis-beacon-test";

pub fn signer(i: u8) -> Signer {
    Signer::from_seed([i; 32])
}

pub fn genesis() -> BeaconGenesis {
    BeaconGenesis {
        chain_id: CHAIN.into(),
        nodes: vec![],
        shards: vec![],
        committee: vec![signer(100).public_key()],
        accounts: (1..=3)
            .map(|i| GenesisAccount {
                key: signer(i).public_key(),
                org: format!("org-{i}"),
                role: Role::Member,
            })
            .collect(),
        governance: Default::default(),
    }
}

pub fn anchor(i: u8, nonce: u64, d: u8) -> Transaction {
    let action = BeaconAction::Anchor {
        digest: Digest([d; 32]),
        tag: Tag::parse("bill-of-lading").expect("tag"),
    };
    Transaction::sign(CHAIN, &signer(i), nonce, action)
}
