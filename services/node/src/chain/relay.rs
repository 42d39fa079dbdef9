//! The relay of certified updates: a node that hosts the beacon and a chain that follows it (a
//! shard) carries the beacon state that chain needs (its member orgs and their keys, its next
//! committee) into it, as a transaction holding the values with their proofs against the
//! beacon's certified head. The receiving application checks every proof; the relay is trusted
//! with nothing. Each validator of the chain relays with its own account, the first in
//! committee order first and the others only if that one's update did not land.

use super::ChainShared;
use super::execution::StateAt;
use crate::certified::certified_head;
use crate::state_tree::StateTree;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use trellis_consensus::EpochChangeProof;
use trellis_types::wire::{self, NetMessage};
use trellis_types::{Digest, ProvenValue, Signer, Transaction};

/// How often the relay looks at the beacon's certified head.
const POLL: Duration = Duration::from_millis(500);
/// How long each validator in committee order waits for the ones before it.
const TURN: Duration = Duration::from_millis(1_500);

/// Relays beacon state into `chain` for as long as both run.
pub async fn relay_certified_updates(
    beacon: Arc<ChainShared>,
    chain: Arc<ChainShared>,
    signer: Signer,
) {
    let mut seen: Option<(Digest, Instant)> = None;
    let mut relayed: Option<Digest> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        if beacon.halted().is_some() || chain.halted().is_some() {
            continue;
        }
        let (b, c, s) = (beacon.clone(), chain.clone(), signer.clone());
        let step = tokio::task::spawn_blocking(move || prepare(&b, &c, &s)).await;
        let prepared = match step {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(chain = %chain.chain_id, error = %e, "certified update not prepared");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay task failed");
                continue;
            }
        };
        let Some((values_digest, tx)) = prepared else {
            continue;
        };
        // The values changed: wait our turn in committee order, then relay once per change.
        let first_seen = match seen {
            Some((d, at)) if d == values_digest => at,
            _ => {
                seen = Some((values_digest, Instant::now()));
                Instant::now()
            }
        };
        if relayed == Some(values_digest) {
            continue;
        }
        let me = hex::encode(signer.public_key().0);
        let place = chain
            .status_snapshot()
            .committee
            .iter()
            .position(|k| *k == me)
            .unwrap_or(usize::MAX / 2) as u32;
        if Instant::now() < first_seen + TURN * place {
            continue;
        }
        let encoded = tx.encoded().to_vec();
        let admitted = chain.admit(std::slice::from_ref(&encoded));
        match admitted.first() {
            Some(Ok(_)) => {
                chain.net.broadcast(&NetMessage::Txs(vec![encoded]));
                relayed = Some(values_digest);
                tracing::info!(chain = %chain.chain_id, tx = %tx.hash().to_hex(), "certified update relayed");
            }
            Some(Err(e)) => {
                tracing::debug!(chain = %chain.chain_id, error = %e, "certified update not admitted")
            }
            None => {}
        }
    }
}

type Prepared = Option<(Digest, Transaction)>;

/// The update `chain` should get now, with a digest of its values; `None` when it has all the
/// beacon has certified, or this node has a relay transaction of its own still pending.
fn prepare(beacon: &ChainShared, chain: &ChainShared, signer: &Signer) -> Result<Prepared, String> {
    let executed = beacon.executed.load(Ordering::Acquire);
    let Some((head, headers, commit_qc)) =
        certified_head(&beacon.store, executed).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let version = head.header.state.height;
    let own = chain.state();
    let beacon_view = StateAt::new(&beacon.store, version);
    let Some(follow) = chain
        .app
        .beacon_follow(&own, &beacon_view)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    if follow.beacon_chain_id != beacon.chain_id || version <= follow.applied_state_height {
        return Ok(None);
    }
    let me = signer.public_key();
    if super::lock(&chain.mempool).pending_from(&me) > 0 {
        return Ok(None);
    }
    let Some(nonce) = chain.next_nonce(&me).map_err(|e| e.to_string())? else {
        // Not an account of the chain: this node does not relay for it.
        return Ok(None);
    };
    let tree = StateTree::resume(beacon.store.clone(), executed);
    let mut values = Vec::new();
    let mut digest_input = Vec::new();
    for key in &follow.keys {
        let (value, proof) = tree
            .get_with_proof(version, key)
            .map_err(|e| e.to_string())?;
        // Only present values travel; an absent one has nothing to apply.
        if let Some(value) = value {
            digest_input.extend_from_slice(&(key.as_bytes().len() as u32).to_be_bytes());
            digest_input.extend_from_slice(key.as_bytes());
            digest_input.extend_from_slice(&Digest::of(&value).0);
            values.push(ProvenValue {
                key: key.as_bytes().to_vec(),
                value: Some(value),
                proof,
            });
        }
    }
    let mut epoch_changes: Vec<EpochChangeProof> = Vec::new();
    for epoch in follow.trusted_epoch..head.epoch() {
        let bytes = beacon
            .store
            .epoch_change(epoch)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the beacon store has no proof that ended epoch {epoch}"))?;
        epoch_changes.push(wire::decode_epoch_change(&bytes).map_err(|e| e.to_string())?);
    }
    let Some(action) = chain
        .app
        .certified_update_action(headers, commit_qc, epoch_changes, values)
    else {
        return Ok(None);
    };
    let tx = Transaction::sign(&chain.chain_id, signer, nonce, action);
    Ok(Some((Digest::of(&digest_input), tx)))
}
