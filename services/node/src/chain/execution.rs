//! Execution against the committed state: reads of one version of it ([`StateAt`]), the record
//! the transaction index keeps of each executed transaction ([`TxLocation`]), and the replay of
//! committed blocks that rebuilds the state tree above its last flush after a restart. (The
//! driver executes each block it commits; see `Driver::commit`.)

use super::error::ChainError;
use crate::mempool::Accounts;
use crate::payload;
use crate::state_tree::StateTree;
use crate::store::{NodeStore, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use trellis_consensus::{Block, Height};
use trellis_ledger::beacon::execute_block_checked;
use trellis_ledger::state::{StateKey, StateView, WriteSet};
use trellis_types::wire;
use trellis_types::{PublicKey, Transaction};

/// Where a transaction ended up, as kept in the store's transaction index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
    /// `None` when applied; the rejection reason otherwise.
    pub rejected: Option<String>,
    /// The rejection's stable code (`trellis_ledger::beacon::Rejection::code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_code: Option<String>,
    /// The governance proposal the transaction opened or voted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<u64>,
}

/// Reads committed state at one version of the tree. The ledger's `StateView` has no error
/// path, so a read the store fails is answered as absent and remembered; whoever acts on what
/// was read calls [`StateAt::finish`] first. A failed read must never pass for an absent key:
/// executed as one, it would commit a state root that the other validators do not have.
pub struct StateAt<'a> {
    store: &'a NodeStore,
    pub version: u64,
    failed: OnceLock<StoreError>,
}

impl<'a> StateAt<'a> {
    pub fn new(store: &'a NodeStore, version: u64) -> StateAt<'a> {
        StateAt {
            store,
            version,
            failed: OnceLock::new(),
        }
    }

    /// The first read that failed, if any: then nothing read here is to be trusted.
    pub fn finish(self) -> Result<(), StoreError> {
        self.failed.into_inner().map_or(Ok(()), Err)
    }
}

impl StateView for StateAt<'_> {
    fn get(&self, key: &StateKey) -> Option<Vec<u8>> {
        match self.store.value_at(
            self.version,
            trellis_types::state_proof::key_hash(key.as_bytes()),
        ) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, version = self.version, "state read failed");
                // Only the first is kept; it is the one `finish` reports.
                let _ = self.failed.set(e);
                None
            }
        }
    }
}

impl Accounts for StateAt<'_> {
    fn next_nonce(&self, account: &PublicKey) -> Option<u64> {
        trellis_ledger::beacon::read_account(self, account).map(|a| a.next_nonce)
    }
}

/// A committed block's transactions as execution takes them. Validators checked the payload
/// before voting; a payload that still fails to decode executes as empty, the same on every
/// node.
pub(super) fn committed_txs(block: &Block) -> Vec<Transaction> {
    payload::decode(&block.payload, usize::MAX)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| Transaction::decode(r, usize::MAX).ok())
        .collect()
}

/// Rebuilds the state tree above its last flush (after a crash; see the store's "Write-behind
/// tree") by executing the committed blocks there again. Execution is deterministic, and the
/// store checks each rebuilt root against the committed one. A crash before the first flush
/// (of the genesis state) landed leaves no tree at all: it is rebuilt from the genesis writes.
pub(super) fn replay_tree(
    chain_id: &str,
    store: &NodeStore,
    genesis_writes: &WriteSet,
) -> Result<(), ChainError> {
    let Some(last) = store.last_committed_height()? else {
        return Ok(());
    };
    let mut at = match store.tree_version() {
        Some(at) => at,
        None => {
            let (_, batch) = StateTree::new(store.clone()).prepare(0, genesis_writes)?;
            store.replay_tree(0, batch)?;
            tracing::info!("genesis state tree rebuilt");
            0
        }
    };
    let from = at;
    while at < last {
        let height = at + 1;
        let bytes = store
            .block(height)?
            .ok_or(ChainError::Corrupt("committed block"))?;
        let block =
            wire::decode_block(&bytes).map_err(|_| ChainError::Corrupt("committed block"))?;
        let txs = committed_txs(&block);
        let view = StateAt::new(store, at);
        // Nothing was admitted in this process: every signature is checked.
        let outcome = execute_block_checked(chain_id, height, &view, &txs, |_| false);
        view.finish()?;
        let (_, batch) = StateTree::resume(store.clone(), at).prepare(height, &outcome.writes)?;
        store.replay_tree(height, batch)?;
        at = height;
    }
    if last > from {
        tracing::info!(from, to = last, "state tree rebuilt from committed blocks");
    }
    Ok(())
}
