//! The chain's beginning and the record of where it is: the genesis epoch and its state (version
//! 0 of the tree), and the head record the store keeps with every commit, from which a restart
//! recovers the epoch and the committed head ([`CommittedHead`]).

use super::error::ChainError;
use crate::state_tree::{MemoryTreeStore, StateTree};
use serde::{Deserialize, Serialize};
use trellis_consensus::{CommittedHead, Committee, EpochState, StateCommitment};
use trellis_ledger::app::Application;
use trellis_ledger::state::{StateKey, WriteSet};
use trellis_types::genesis::ChainParams;
use trellis_types::{Digest, PublicKey};

/// What the store's head record holds: enough to rebuild [`Recovery`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct HeadRecord {
    chain_id: String,
    epoch: u64,
    committee: Vec<String>,
    root_id: String,
    root_height: u64,
    root_timestamp_ms: u64,
    root_state_height: u64,
    root_state_root: String,
    committed_id: String,
    committed_round: u64,
    committed_height: u64,
    committed_timestamp_ms: u64,
    committed_state_height: u64,
    committed_state_root: String,
}

pub(super) fn digest_hex(d: &Digest) -> String {
    hex::encode(d.0)
}

fn parse_digest(s: &str) -> Result<Digest, ChainError> {
    let bytes = hex::decode(s).map_err(|_| ChainError::Corrupt("head record digest"))?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| ChainError::Corrupt("head record digest length"))?;
    Ok(Digest(arr))
}

impl HeadRecord {
    pub(super) fn new(state: &EpochState, head: &CommittedHead) -> HeadRecord {
        HeadRecord {
            chain_id: state.chain_id.clone(),
            epoch: state.epoch,
            committee: state
                .committee
                .members()
                .iter()
                .map(|k| hex::encode(k.0))
                .collect(),
            root_id: digest_hex(&state.root_id),
            root_height: state.root_height,
            root_timestamp_ms: state.root_timestamp_ms,
            root_state_height: state.root_state.height,
            root_state_root: digest_hex(&state.root_state.root),
            committed_id: digest_hex(&head.id),
            committed_round: head.round,
            committed_height: head.height,
            committed_timestamp_ms: head.timestamp_ms,
            committed_state_height: head.state.height,
            committed_state_root: digest_hex(&head.state.root),
        }
    }

    pub(super) fn parts(&self) -> Result<(EpochState, CommittedHead), ChainError> {
        let mut members = Vec::new();
        for k in &self.committee {
            members.push(PublicKey(parse_digest(k)?.0));
        }
        let committee =
            Committee::new(members).map_err(|_| ChainError::Corrupt("head record committee"))?;
        let state = EpochState {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch,
            committee,
            root_id: parse_digest(&self.root_id)?,
            root_height: self.root_height,
            root_timestamp_ms: self.root_timestamp_ms,
            root_state: StateCommitment {
                height: self.root_state_height,
                root: parse_digest(&self.root_state_root)?,
            },
        };
        let head = CommittedHead {
            id: parse_digest(&self.committed_id)?,
            round: self.committed_round,
            height: self.committed_height,
            timestamp_ms: self.committed_timestamp_ms,
            state: StateCommitment {
                height: self.committed_state_height,
                root: parse_digest(&self.committed_state_root)?,
            },
        };
        Ok((state, head))
    }
}

/// The genesis epoch, whose root commits to the genesis state root (version 0): the
/// application's genesis writes and the digest of what the chain was made from (the beacon's
/// genesis file), which binds every later state root (and so every proof) to it.
pub fn genesis_epoch(
    app: &dyn Application,
) -> Result<(EpochState, WriteSet, ChainParams), ChainError> {
    let genesis = app
        .genesis()
        .map_err(|e| ChainError::Genesis(e.to_string()))?;
    let mut writes = genesis.writes;
    writes.insert(StateKey::genesis_digest(), Some(genesis.digest.0.to_vec()));
    let mut tree = StateTree::new(MemoryTreeStore::default());
    let root = tree.apply(0, &writes)?;
    let state = EpochState::genesis_with_state(
        &genesis.chain_id,
        genesis.committee,
        genesis.genesis_time_ms,
        StateCommitment { height: 0, root },
    );
    Ok((state, writes, genesis.params))
}
