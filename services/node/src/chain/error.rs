//! The errors of opening a chain and committing its blocks.

use crate::state_tree::StateTreeError;
use crate::store::StoreError;

/// Why a chain did not open from its store, or a block did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("state tree: {0}")]
    Tree(#[from] StateTreeError),
    #[error("genesis: {0}")]
    Genesis(String),
    #[error("corrupt {0} in the store")]
    Corrupt(&'static str),
    #[error("consensus recovery: {0}")]
    Recovery(String),
    #[error("state: {0}")]
    State(#[from] trellis_ledger::state::StateError),
}
