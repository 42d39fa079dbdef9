//! The certified head: the highest committed block that a stored certificate proves. Proof
//! bundles (`proofs`) are made against the state it commits to, and the chain keeps the state
//! tree's flushes at or below that state. It reads only the store.

use crate::store::{NodeStore, StoreError};
use trellis_consensus::{Block, BlockHeader, QuorumCert};
use trellis_types::wire;

/// A stored record that does not decode.
fn undecodable(what: String, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// The state version that proofs are made against while `height` is the latest executed one;
/// `None` when no certified head is found.
pub(crate) fn certified_state_height(
    store: &NodeStore,
    height: u64,
) -> Result<Option<u64>, StoreError> {
    Ok(certified_head(store, height)?.map(|(head, _, _)| head.header.state.height))
}

/// The highest committed block at or below `height` with a certificate that proves it: one
/// that commits exactly it, or, for the block that ended an epoch, the epoch proof's suffix and
/// certificate. (A block committed as an ancestor in a batch carries the batch's certificate,
/// which commits a descendant.)
pub(crate) fn certified_head(
    store: &NodeStore,
    height: u64,
) -> Result<Option<(Block, Vec<BlockHeader>, QuorumCert)>, StoreError> {
    let lowest = height.saturating_sub(256).max(1);
    for h in (lowest..=height).rev() {
        let Some(bytes) = store.block(h)? else {
            continue;
        };
        let block = wire::decode_block(&bytes)
            .map_err(|e| undecodable(format!("block at height {h}"), e))?;
        if block.ends_epoch() {
            if let Some(bytes) = store.epoch_change(block.epoch())? {
                let proof = wire::decode_epoch_change(&bytes).map_err(|e| {
                    undecodable(format!("proof that ended epoch {}", block.epoch()), e)
                })?;
                let mut headers = vec![block.header.clone()];
                headers.extend(proof.suffix.iter().cloned());
                return Ok(Some((block, headers, proof.commit_qc)));
            }
            continue;
        }
        let Some(cert) = store.cert(h)? else {
            continue;
        };
        let cert = wire::decode_qc(&cert)
            .map_err(|e| undecodable(format!("certificate at height {h}"), e))?;
        if cert.vote_data.commits() == Some(block.id()) {
            let headers = vec![block.header.clone()];
            return Ok(Some((block, headers, cert)));
        }
    }
    Ok(None)
}
