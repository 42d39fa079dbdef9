//! Application state as ordered key → bytes, the shape the node's Merkle tree authenticates.
//!
//! Keys are namespaced; values are canonical protobuf records of `trellis.v1`:
//!
//! | key | record |
//! |---|---|
//! | `acct/` ‖ 32-byte account key | `Account` |
//! | `anchor/` ‖ 32-byte digest ([`trellis_types::anchor_state_key`], shared with offline verifiers) | `AnchorRecord` |
//! | `member/` ‖ org id | `Member` |
//! | `members` | `MemberIndex` (every org ever admitted, sorted) |
//! | `attestation/` ‖ 32-byte org key | `Attestation` |
//! | `params/governance` | `GovernanceParams` |
//! | `proposal/` ‖ 8-byte big-endian id | `GovernanceProposal` |
//! | `proposals/last` | `ProposalCounter` |
//! | `proposal-open/` ‖ org id | `ProposalCounter` holding the id of the org's open proposal |
//! | `revocations` | `RevocationList` (sorted by serial) |
//! | `committee/` ‖ chain id | `ChainCommittee`: the committee the beacon decided for that chain |
//! | `shard/` ‖ shard id | `ShardRecord`: its member orgs and status |
//! | `shards` | `ShardIndex` (every shard ever created, sorted) |
//! | `node/` ‖ 32-byte consensus key | `NodeRecord`: the org the node belongs to |
//! | `chain/genesis` ([`trellis_types::genesis::GENESIS_STATE_KEY`]) | the 32-byte genesis digest, written by the node at genesis and never again |
//!
//! A shard's state ([`crate::shard`]) reuses `acct/`, `anchor/` and `chain/genesis`, and adds:
//!
//! | key | record |
//! |---|---|
//! | `shard-members` | `ShardMembership`: the shard's status and member orgs with their writing keys |
//! | `beacon/trust` | `BeaconTrust`: the beacon committee the shard trusts, the beacon state height last applied |
//! | `beacon/next-committee` | `ChainCommittee`: the shard's next committee, as the beacon decided it |
//! | `record/` ‖ collection ‖ 0x00 ‖ key | `RecordVersion`: the record's latest version |
//! | `record-version/` ‖ collection ‖ 0x00 ‖ key ‖ 0x00 ‖ 8-byte big-endian version | `RecordVersion`: every version, from 1, never overwritten |
//!
//! Collections hold no 0x00 and record keys no control character, so the separators are
//! unambiguous.

use std::collections::BTreeMap;
use trellis_types::{Digest, PublicKey};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKey(Vec<u8>);

impl StateKey {
    pub fn account(key: &PublicKey) -> StateKey {
        StateKey([b"acct/".as_slice(), &key.0].concat())
    }
    pub fn anchor(digest: &Digest) -> StateKey {
        StateKey(trellis_types::anchor_state_key(digest))
    }
    pub fn member(org: &str) -> StateKey {
        StateKey([b"member/".as_slice(), org.as_bytes()].concat())
    }
    pub fn member_index() -> StateKey {
        StateKey(b"members".to_vec())
    }
    pub fn attestation(key: &PublicKey) -> StateKey {
        StateKey([b"attestation/".as_slice(), &key.0].concat())
    }
    pub fn governance_params() -> StateKey {
        StateKey(b"params/governance".to_vec())
    }
    pub fn proposal(id: u64) -> StateKey {
        StateKey([b"proposal/".as_slice(), &id.to_be_bytes()].concat())
    }
    pub fn proposal_counter() -> StateKey {
        StateKey(b"proposals/last".to_vec())
    }
    pub fn open_proposal(org: &str) -> StateKey {
        StateKey([b"proposal-open/".as_slice(), org.as_bytes()].concat())
    }
    /// Written once, by the node, into the genesis state; no transaction writes under `chain/`.
    pub fn genesis_digest() -> StateKey {
        StateKey(trellis_types::genesis::GENESIS_STATE_KEY.to_vec())
    }
    pub fn committee(chain_id: &str) -> StateKey {
        StateKey([b"committee/".as_slice(), chain_id.as_bytes()].concat())
    }
    pub fn shard(shard_id: &str) -> StateKey {
        StateKey([b"shard/".as_slice(), shard_id.as_bytes()].concat())
    }
    pub fn shard_index() -> StateKey {
        StateKey(b"shards".to_vec())
    }
    pub fn node(key: &PublicKey) -> StateKey {
        StateKey([b"node/".as_slice(), &key.0].concat())
    }
    pub fn revocations() -> StateKey {
        StateKey(b"revocations".to_vec())
    }
    pub fn shard_members() -> StateKey {
        StateKey(b"shard-members".to_vec())
    }
    pub fn beacon_trust() -> StateKey {
        StateKey(b"beacon/trust".to_vec())
    }
    pub fn next_committee() -> StateKey {
        StateKey(b"beacon/next-committee".to_vec())
    }
    /// A record's latest version.
    pub fn record(collection: &str, key: &str) -> StateKey {
        StateKey([b"record/", collection.as_bytes(), &[0], key.as_bytes()].concat())
    }
    /// One version of a record.
    pub fn record_version(collection: &str, key: &str, version: u64) -> StateKey {
        StateKey(
            [
                b"record-version/",
                collection.as_bytes(),
                &[0],
                key.as_bytes(),
                &[0],
                &version.to_be_bytes(),
            ]
            .concat(),
        )
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn from_bytes(bytes: Vec<u8>) -> StateKey {
        StateKey(bytes)
    }
}

impl std::fmt::Display for StateKey {
    /// Printable bytes as they are, the rest as `\xNN`: keys are a readable prefix and binary ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", *b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Why state could not be read. A failed read is never an absent key: executed as one, it would
/// commit a state root the other validators do not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store under the view failed (IO, a damaged file): local to this node.
    #[error("state store: {0}")]
    Store(String),
    /// The record under a key does not decode. Every replica holds the same bytes, so execution
    /// may answer it deterministically (a `corrupt-state` receipt); a read outside execution
    /// reports it.
    #[error("the record under `{0}` does not decode")]
    Corrupt(String),
}

/// Read access to committed state.
pub trait StateView {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError>;
}

impl<V: StateView + ?Sized> StateView for &V {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get(key)
    }
}

/// The record under `key`, decoded; a record that does not decode is [`StateError::Corrupt`].
pub fn decode_at<M: prost::Message + Default>(
    view: &(impl StateView + ?Sized),
    key: &StateKey,
) -> Result<Option<M>, StateError> {
    match view.get(key)? {
        None => Ok(None),
        Some(v) => M::decode(v.as_slice())
            .map(Some)
            .map_err(|_| StateError::Corrupt(key.to_string())),
    }
}

/// Writes of a block, in key order; `None` deletes.
pub type WriteSet = BTreeMap<StateKey, Option<Vec<u8>>>;

/// Plain in-memory state, for genesis, tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryState(pub BTreeMap<StateKey, Vec<u8>>);

impl StateView for MemoryState {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.get(key).cloned())
    }
}

impl MemoryState {
    pub fn apply(&mut self, writes: &WriteSet) {
        for (k, v) in writes {
            match v {
                Some(v) => self.0.insert(k.clone(), v.clone()),
                None => self.0.remove(k),
            };
        }
    }
}

/// Committed state with a block's pending writes on top: reads see earlier transactions of the
/// same block.
pub(crate) struct Overlay<'a, V: StateView + ?Sized> {
    base: &'a V,
    pub(crate) writes: WriteSet,
}

impl<V: StateView + ?Sized> StateView for Overlay<'_, V> {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        Overlay::get(self, key)
    }
}

impl<'a, V: StateView + ?Sized> Overlay<'a, V> {
    pub(crate) fn new(base: &'a V) -> Self {
        Overlay {
            base,
            writes: WriteSet::new(),
        }
    }
    pub(crate) fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }
    pub(crate) fn put(&mut self, key: StateKey, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }
    pub(crate) fn delete(&mut self, key: StateKey) {
        self.writes.insert(key, None);
    }
}
