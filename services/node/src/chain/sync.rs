//! Sync: the committed blocks a node serves to a peer that is behind, as a chunk the peer's
//! replica can check (ending at a block a stored certificate commits, with the proofs of the
//! epochs it ends). The dispatcher answers requests from the store, off the driver
//! (`dispatch`); a chunk received goes to the driver, whose replica applies it.

use super::error::ChainError;
use super::shared::ChainShared;
use std::sync::atomic::Ordering;
use trellis_consensus::{Height, SyncChunk};
use trellis_types::wire;

impl ChainShared {
    /// Committed blocks above `from_height` for a peer that is behind, ending at a block whose
    /// stored certificate commits exactly it (or that ends an epoch, whose proof is included).
    /// `Ok(None)`: nothing to serve. An error: the store failed or holds what does not decode.
    pub fn sync_chunk(
        &self,
        from_height: Height,
        max_blocks: u32,
    ) -> Result<Option<SyncChunk>, ChainError> {
        let head = self.executed.load(Ordering::Acquire);
        if from_height >= head {
            return Ok(None);
        }
        let last = head.min(from_height + u64::from(max_blocks.clamp(1, self.sync_batch)));
        let mut blocks = Vec::new();
        for h in from_height + 1..=last {
            let bytes = self
                .store
                .block(h)?
                .ok_or(ChainError::Corrupt("missing committed block"))?;
            blocks.push(
                wire::decode_block(&bytes).map_err(|_| ChainError::Corrupt("committed block"))?,
            );
        }
        // Trim to a block the chunk can prove committed.
        while let Some(b) = blocks.last() {
            if b.ends_epoch() {
                break;
            }
            // Not every committed block has a certificate that commits exactly it.
            let cert = match self.store.cert(b.height())? {
                Some(c) => Some(
                    wire::decode_qc(&c).map_err(|_| ChainError::Corrupt("commit certificate"))?,
                ),
                None => None,
            };
            if cert.as_ref().and_then(|c| c.vote_data.commits()) == Some(b.id()) {
                break;
            }
            blocks.pop();
        }
        let Some(last_block) = blocks.last() else {
            return Ok(None);
        };
        let mut epoch_changes = Vec::new();
        for b in &blocks {
            if b.ends_epoch() {
                let bytes = self
                    .store
                    .epoch_change(b.epoch())?
                    .ok_or(ChainError::Corrupt("missing epoch-change proof"))?;
                epoch_changes.push(
                    wire::decode_epoch_change(&bytes)
                        .map_err(|_| ChainError::Corrupt("epoch-change proof"))?,
                );
            }
        }
        let commit_qc = if last_block.ends_epoch() {
            None
        } else {
            let bytes = self
                .store
                .cert(last_block.height())?
                .ok_or(ChainError::Corrupt("missing commit certificate"))?;
            Some(wire::decode_qc(&bytes).map_err(|_| ChainError::Corrupt("commit certificate"))?)
        };
        Ok(Some(SyncChunk {
            blocks,
            epoch_changes,
            commit_qc,
        }))
    }
}
