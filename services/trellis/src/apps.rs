//! The chain applications this binary runs: the node hosts chains without knowing their
//! applications ([`trellis_node::node::Applications`]); this is where they are named.

use std::sync::Arc;
use trellis_ledger::app::Application;
use trellis_ledger::beacon::BeaconApp;
use trellis_node::node::{Applications, NodeConfig, NodeError, RunningNode};
use trellis_types::genesis::Genesis;

/// The applications of a Trellis consortium: the beacon (and, next, its shards).
pub struct Consortium;

impl Applications for Consortium {
    fn beacon(&self, genesis: &Genesis) -> Result<Arc<dyn Application>, String> {
        Ok(Arc::new(BeaconApp::new(genesis.clone())))
    }
}

/// Starts a node with the consortium's applications.
pub async fn start_node(config: NodeConfig) -> Result<RunningNode, NodeError> {
    RunningNode::start(config, &Consortium).await
}
