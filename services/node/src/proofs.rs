//! Proof bundles served by the node: an anchor, the JMT proof of it under the state root that
//! the latest committed header commits to, that header's certificate, and the epoch-change
//! proofs from genesis. `trellis verify` checks them offline.

use crate::chain::ChainShared;
use crate::problem::{Problem, internal, no_anchor, not_yet_provable};
use crate::state_tree::{StateTree, StateTreeError};
use crate::store::NodeStore;
use prost::Message as _;
use std::sync::atomic::Ordering;
use trellis_consensus::{Block, BlockHeader, QuorumCert};
use trellis_ledger::state::StateKey;
use trellis_types::Digest;
use trellis_types::bundle::AnchorBundle;
use trellis_types::pb;
use trellis_types::wire;

pub fn anchor_bundle(chain: &ChainShared, digest: &Digest) -> Result<AnchorBundle, Problem> {
    let key = StateKey::anchor(digest);
    let executed = chain.executed.load(Ordering::Acquire);
    let tree = StateTree::resume(chain.store.clone(), executed);
    if executed == 0 {
        return Err(no_anchor());
    }
    let (head, headers, commit_qc) =
        certified_head(&chain.store, executed)?.ok_or_else(not_yet_provable)?;
    let version = head.header.state.height;
    // Committed after the state the head commits to, or not at all.
    let unproven = || match tree.get(executed, &key).map_err(internal)? {
        Some(_) => Err(not_yet_provable()),
        None => Err(no_anchor()),
    };
    let (value, state_proof) = match tree.get_with_proof(version, &key) {
        Ok(found) => found,
        // The head's state (a few versions back) is not readable: after a crash only the
        // versions from the tree's last flush on are, until the chain commits a newer head. (A
        // clean shutdown flushes up to that state.)
        Err(StateTreeError::NoSuchVersion(_)) => return unproven(),
        Err(e) => return Err(internal(e)),
    };
    let Some(value) = value else {
        return unproven();
    };
    let record = pb::AnchorRecord::decode(value.as_slice()).map_err(internal)?;
    let mut epoch_changes = Vec::new();
    for (epoch, bytes) in chain.store.epoch_changes().map_err(internal)? {
        if epoch < head.epoch() {
            epoch_changes.push(wire::decode_epoch_change(&bytes).map_err(internal)?);
        }
    }
    Ok(AnchorBundle {
        chain_id: chain.chain_id.clone(),
        digest: *digest,
        record,
        state: head.header.state,
        state_proof,
        headers,
        commit_qc,
        epoch_changes,
    })
}

/// The state version that [`anchor_bundle`] proves against while `height` is the latest
/// executed one; `None` when no certified head is found.
pub(crate) fn certified_state_height(
    store: &NodeStore,
    height: u64,
) -> Result<Option<u64>, Problem> {
    Ok(certified_head(store, height)?.map(|(head, _, _)| head.header.state.height))
}

/// The highest committed block at or below `height` with a certificate that proves it: one
/// that commits exactly it, or, for the block that ended an epoch, the epoch proof's suffix and
/// certificate. (A block committed as an ancestor in a batch carries the batch's certificate,
/// which commits a descendant.)
fn certified_head(
    store: &NodeStore,
    height: u64,
) -> Result<Option<(Block, Vec<BlockHeader>, QuorumCert)>, Problem> {
    let lowest = height.saturating_sub(256).max(1);
    for h in (lowest..=height).rev() {
        let Some(bytes) = store.block(h).map_err(internal)? else {
            continue;
        };
        let block = wire::decode_block(&bytes).map_err(internal)?;
        if block.ends_epoch() {
            if let Some(bytes) = store.epoch_change(block.epoch()).map_err(internal)? {
                let proof = wire::decode_epoch_change(&bytes).map_err(internal)?;
                let mut headers = vec![block.header.clone()];
                headers.extend(proof.suffix.iter().cloned());
                return Ok(Some((block, headers, proof.commit_qc)));
            }
            continue;
        }
        let Some(cert) = store.cert(h).map_err(internal)? else {
            continue;
        };
        let cert = wire::decode_qc(&cert).map_err(internal)?;
        if cert.vote_data.commits() == Some(block.id()) {
            let headers = vec![block.header.clone()];
            return Ok(Some((block, headers, cert)));
        }
    }
    Ok(None)
}
