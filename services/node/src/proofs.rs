//! Proof bundles served by the node: an anchor, the JMT proofs of it and of the genesis digest
//! under the state root that the latest committed header commits to, that header's certificate,
//! and the epoch-change proofs from genesis (docs/proof-format.md). `trellis verify` checks them offline.

use crate::certified::certified_head;
use crate::chain::ChainShared;
use crate::problem::{Problem, internal, no_anchor, not_yet_provable};
use crate::state_tree::{StateTree, StateTreeError};
use axum::http::StatusCode;
use prost::Message as _;
use std::sync::atomic::Ordering;
use trellis_ledger::state::StateKey;
use trellis_types::Digest;
use trellis_types::bundle::AnchorBundle;
use trellis_types::pb;
use trellis_types::state_bundle::StateBundle;
use trellis_types::wire;

/// What `key` holds (a value, or nothing) at the state the certified head commits to, with the
/// proofs from the chain's genesis. 409 while no certified head exists or its state is not
/// readable yet (right after a crash, until a newer head commits).
pub fn state_bundle(chain: &ChainShared, key: &StateKey) -> Result<StateBundle, Problem> {
    let executed = chain.executed.load(Ordering::Acquire);
    let tree = StateTree::resume(chain.store.clone(), executed);
    let (head, headers, commit_qc) = certified_head(&chain.store, executed)
        .map_err(internal)?
        .ok_or_else(not_yet_certified)?;
    let version = head.header.state.height;
    let (value, state_proof) = match tree.get_with_proof(version, key) {
        Ok(found) => found,
        // The head's state (a few versions back) is not readable: after a crash only the
        // versions from the tree's last flush on are, until the chain commits a newer head. (A
        // clean shutdown flushes up to that state.)
        Err(StateTreeError::NoSuchVersion(_)) => return Err(not_yet_certified()),
        Err(e) => return Err(internal(e)),
    };
    // Same version as the value: a verifier checks both proofs against one state root.
    let (genesis_value, genesis_proof) =
        match tree.get_with_proof(version, &StateKey::genesis_digest()) {
            Ok(found) => found,
            Err(StateTreeError::NoSuchVersion(_)) => return Err(not_yet_certified()),
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
    Ok(StateBundle {
        chain_id: chain.chain_id.clone(),
        key: key.as_bytes().to_vec(),
        value,
        state: head.header.state,
        state_proof,
        genesis_digest,
        genesis_proof,
        headers,
        commit_qc,
        epoch_changes,
    })
}

fn not_yet_certified() -> Problem {
    let mut p = Problem::new(
        StatusCode::CONFLICT,
        "not-yet-provable",
        "no certified state root is readable yet; retry shortly",
    );
    p.retry_after_s = Some(1);
    p
}

pub fn anchor_bundle(chain: &ChainShared, digest: &Digest) -> Result<AnchorBundle, Problem> {
    let key = StateKey::anchor(digest);
    let executed = chain.executed.load(Ordering::Acquire);
    if executed == 0 {
        return Err(no_anchor());
    }
    let b = state_bundle(chain, &key).map_err(|p| {
        if p.status == 409 {
            not_yet_provable()
        } else {
            p
        }
    })?;
    let Some(value) = b.value else {
        // Committed after the state the head commits to, or not at all.
        let tree = StateTree::resume(chain.store.clone(), executed);
        return match tree.get(executed, &key).map_err(internal)? {
            Some(_) => Err(not_yet_provable()),
            None => Err(no_anchor()),
        };
    };
    let record = pb::AnchorRecord::decode(value.as_slice()).map_err(internal)?;
    Ok(AnchorBundle {
        chain_id: b.chain_id,
        digest: *digest,
        record,
        state: b.state,
        state_proof: b.state_proof,
        genesis_digest: b.genesis_digest,
        genesis_proof: b.genesis_proof,
        headers: b.headers,
        commit_qc: b.commit_qc,
        epoch_changes: b.epoch_changes,
    })
}
