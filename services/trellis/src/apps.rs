//! The chain applications this binary runs: the node hosts chains without knowing their
//! applications ([`trellis_node::node::Applications`]); this is where they are named.

use std::sync::Arc;
use trellis_consensus::types::Encoder;
use trellis_ledger::app::Application;
use trellis_ledger::beacon::BeaconApp;
use trellis_ledger::shard::{ShardApp, ShardSpec};
use trellis_node::node::{Applications, NodeConfig, NodeError, RunningNode};
use trellis_types::genesis::Genesis;
use trellis_types::pb::Role;

/// The applications of a Trellis consortium: the beacon and its shards.
pub struct Consortium;

impl Applications for Consortium {
    fn beacon(&self, genesis: &Genesis) -> Result<Arc<dyn Application>, String> {
        Ok(Arc::new(BeaconApp::new(genesis.clone())))
    }

    fn shard(&self, genesis: &Genesis, shard_id: &str) -> Result<Arc<dyn Application>, String> {
        Ok(Arc::new(ShardApp::new(shard_spec(genesis, shard_id)?)))
    }
}

/// A shard of the genesis file as its application starts it: its members and their member
/// accounts, its first committee, and the beacon committee of epoch 0 as the first beacon
/// committee it trusts (later ones it follows through certified updates).
pub fn shard_spec(genesis: &Genesis, shard_id: &str) -> Result<ShardSpec, String> {
    let index = genesis
        .shards
        .iter()
        .position(|s| s.shard_id == shard_id)
        .ok_or_else(|| format!("the genesis file has no shard `{shard_id}`"))?;
    let shard = &genesis.shards[index];
    let committees = genesis.shard_committees().map_err(|e| e.to_string())?;
    let mut members = shard.members.clone();
    members.sort();
    let accounts = genesis
        .parse_accounts()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(_, org, role)| *role == Role::Member && members.contains(org))
        .map(|(key, org, _)| (key, org))
        .collect();
    let beacon_digest = genesis.digest().map_err(|e| e.to_string())?;
    // The shard's origin: the beacon genesis it was made from and its id in it.
    let mut origin = Encoder::new("trellis/shard-origin/v1");
    origin.digest(&beacon_digest).bytes(shard_id.as_bytes());
    Ok(ShardSpec {
        shard_id: shard_id.to_string(),
        genesis_time_ms: genesis.genesis_time_ms,
        params: genesis.params.clone(),
        members,
        accounts,
        committee: committees[index].members().to_vec(),
        beacon_chain_id: genesis.chain_id.clone(),
        beacon_epoch: 0,
        beacon_committee: genesis
            .committee()
            .map_err(|e| e.to_string())?
            .members()
            .to_vec(),
        beacon_state_height: 0,
        origin: origin.hash(),
    })
}

/// Starts a node with the consortium's applications.
pub async fn start_node(config: NodeConfig) -> Result<RunningNode, NodeError> {
    RunningNode::start(config, &Consortium).await
}
