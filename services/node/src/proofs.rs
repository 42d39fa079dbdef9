//! Proof bundles served by the node: an anchor, the JMT proofs of it and of the genesis digest
//! under the state root that the latest committed header commits to, that header's certificate,
//! and the epoch-change proofs from genesis (docs/proof-format.md). `trellis verify` checks them offline.

use crate::certified::certified_head;
use crate::chain::ChainShared;
use crate::problem::{Problem, internal, no_anchor, not_yet_provable};
use crate::state_tree::{StateTree, StateTreeError};
use prost::Message as _;
use std::sync::atomic::Ordering;
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
    let (head, headers, commit_qc) = certified_head(&chain.store, executed)
        .map_err(internal)?
        .ok_or_else(not_yet_provable)?;
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
    // Same version as the record: a verifier checks both proofs against one state root.
    let (genesis_value, genesis_proof) =
        match tree.get_with_proof(version, &StateKey::genesis_digest()) {
            Ok(found) => found,
            // Pruned or not yet readable between the two reads: as for the record.
            Err(StateTreeError::NoSuchVersion(_)) => return Err(not_yet_provable()),
            Err(e) => return Err(internal(e)),
        };
    let genesis_digest = genesis_value
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(Digest)
        .ok_or_else(|| internal("the state holds no 32-byte genesis digest"))?;
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
        genesis_digest,
        genesis_proof,
        headers,
        commit_qc,
        epoch_changes,
    })
}
