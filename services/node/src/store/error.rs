//! The store's error, and the version of the layout it reads and writes.

/// The layout version written in `meta/format`. Format 1 wrote the tree with every commit and
/// had no `meta/tree`; it opens as format 2 with its tree flushed at the last committed height.
pub(super) const FORMAT: u8 = 2;

/// What the store refused, or failed at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Storage(#[from] fjall::Error),
    #[error("commit of height {height} does not follow the last committed height {last}")]
    OutOfOrder { height: u64, last: u64 },
    #[error("commit of height {height} is inconsistent: {reason}")]
    InvalidCommit { height: u64, reason: String },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// The state tree does not hold this version: pruned, let go from memory between flushes
    /// (see "Write-behind tree"), or not written yet.
    #[error("no state at version {0}")]
    NoSuchVersion(u64),
    #[error("store format {found} is not supported (this build reads format {FORMAT})")]
    UnknownFormat { found: u8 },
    #[error("the store refuses writes (a fault injected by `NodeStore::fail_commits`)")]
    Injected,
}

pub(super) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}
