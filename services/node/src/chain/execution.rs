//! Execution against the committed state: reads of one version of it ([`StateAt`]), the record
//! the transaction index keeps of each executed transaction ([`TxLocation`]), and the replay of
//! committed blocks that rebuilds the state tree above its last flush after a restart. (The
//! driver executes each block it commits; see `Driver::commit`.)

use super::error::ChainError;
use crate::payload;
use crate::state_tree::StateTree;
use crate::store::NodeStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use trellis_consensus::{Block, Height};
use trellis_ledger::app::{Application, BlockInput, TxReceipt};
use trellis_ledger::state::{StateError, StateKey, StateView, WriteSet};
use trellis_types::Transaction;
use trellis_types::wire;

/// Where a transaction ended up, as kept in the store's transaction index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
    /// `None` when applied; the rejection reason otherwise.
    pub rejected: Option<String>,
    /// The rejection's stable code (`trellis_ledger::app::Refusal::code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_code: Option<String>,
    /// What the application reported of an applied transaction (`proposal_id`, ...).
    #[serde(flatten)]
    pub facts: BTreeMap<String, u64>,
}

impl TxLocation {
    pub fn of(height: Height, index: u32, receipt: &TxReceipt) -> TxLocation {
        let (rejected, rejected_code, facts) = match &receipt.outcome {
            Ok(applied) => (
                None,
                None,
                applied
                    .facts
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
            ),
            Err(r) => (
                Some(r.reason.clone()),
                Some(r.code.to_string()),
                BTreeMap::new(),
            ),
        };
        TxLocation {
            height,
            index,
            rejected,
            rejected_code,
            facts,
        }
    }
}

/// Reads committed state at one version of the tree. A read the store fails is an error, never
/// an absent key: executed as one, it would commit a state root the other validators do not
/// have.
pub struct StateAt<'a> {
    store: &'a NodeStore,
    pub version: u64,
}

impl<'a> StateAt<'a> {
    pub fn new(store: &'a NodeStore, version: u64) -> StateAt<'a> {
        StateAt { store, version }
    }
}

impl StateView for StateAt<'_> {
    fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        self.store
            .value_at(
                self.version,
                trellis_types::state_proof::key_hash(key.as_bytes()),
            )
            .map_err(|e| {
                tracing::error!(error = %e, version = self.version, "state read failed");
                StateError::Store(e.to_string())
            })
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
    app: &dyn Application,
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
        let txs: Vec<Arc<Transaction>> = committed_txs(&block).into_iter().map(Arc::new).collect();
        let view = StateAt::new(store, at);
        // Nothing was admitted in this process: every signature is checked.
        let outcome = app.execute(
            BlockInput {
                height,
                txs: &txs,
                verified: &[],
            },
            &view,
        )?;
        let (_, batch) = StateTree::resume(store.clone(), at).prepare(height, &outcome.writes)?;
        store.replay_tree(height, batch)?;
        at = height;
    }
    if last > from {
        tracing::info!(from, to = last, "state tree rebuilt from committed blocks");
    }
    Ok(())
}
