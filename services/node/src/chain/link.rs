//! One chain's side of the node's peer connections ([`ChainLink`]): every frame it sends names
//! the chain, a broadcast reaches only the chain's peers, and the node's router hands the chain
//! only frames from those peers ([`route_inbound`]). One mTLS connection per peer carries all the
//! chains two nodes share.

use crate::net::{Inbound, Network};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use trellis_types::PublicKey;
use trellis_types::wire::{self, NetMessage};

pub struct ChainLink {
    net: Network,
    chain_id: String,
    /// The nodes this chain talks with: its member orgs' nodes (for the beacon, every node of
    /// the consortium this node knows).
    peers: RwLock<BTreeSet<PublicKey>>,
    /// Frames from a node that is not one of the chain's peers, dropped.
    pub refused_frames: AtomicU64,
}

impl ChainLink {
    pub fn new(net: Network, chain_id: &str, peers: impl IntoIterator<Item = PublicKey>) -> Self {
        let me = net.me();
        ChainLink {
            net,
            chain_id: chain_id.to_string(),
            peers: RwLock::new(peers.into_iter().filter(|k| *k != me).collect()),
            refused_frames: AtomicU64::new(0),
        }
    }

    fn peers(&self) -> BTreeSet<PublicKey> {
        match self.peers.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether `key` is one of the chain's peers.
    pub fn allows(&self, key: &PublicKey) -> bool {
        match self.peers.read() {
            Ok(p) => p.contains(key),
            Err(p) => p.into_inner().contains(key),
        }
    }

    /// Sends `msg` to `to` if it is one of the chain's peers (a chain's blocks never go to a
    /// node outside it); queued without waiting, dropped and counted by the network when full.
    pub fn send(&self, to: &PublicKey, msg: &NetMessage) {
        if self.allows(to) {
            self.net
                .send(to, wire::encode_frame(&self.chain_id, msg).into());
        }
    }

    /// Sends `msg` to every peer of the chain.
    pub fn broadcast(&self, msg: &NetMessage) {
        let frame: bytes::Bytes = wire::encode_frame(&self.chain_id, msg).into();
        for peer in self.peers() {
            self.net.send(&peer, frame.clone());
        }
    }

    /// The chain's peers with a live connection, sorted.
    pub fn connected_peers(&self) -> Vec<PublicKey> {
        let peers = self.peers();
        self.net
            .connected_peers()
            .into_iter()
            .filter(|k| peers.contains(k))
            .collect()
    }

    pub fn me(&self) -> PublicKey {
        self.net.me()
    }

    /// The node's network (shared by all its chains).
    pub fn network(&self) -> &Network {
        &self.net
    }
}

/// A hosted chain as the router sees it: its link (who may send to it) and its dispatcher.
pub struct Route {
    pub link: Arc<super::ChainShared>,
    pub dispatch: mpsc::Sender<Inbound>,
}

/// Routes every inbound frame to its chain's dispatcher: by the chain id the frame names, and
/// only from one of that chain's peers. A chain whose dispatcher is full or gone loses the frame
/// (consensus recovers lost messages) rather than holding up the others.
pub async fn route_inbound(
    mut inbound: mpsc::Receiver<Inbound>,
    chains: BTreeMap<String, Route>,
    unroutable: Arc<AtomicU64>,
) {
    while let Some(Inbound { from, frame }) = inbound.recv().await {
        let Ok((chain_id, body)) = wire::split_frame(&frame) else {
            unroutable.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(route) = chains.get(chain_id) else {
            unroutable.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if !route.link.net.allows(&from) {
            route
                .link
                .net
                .refused_frames
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let offset = frame.len() - body.len();
        let frame = frame.slice(offset..);
        if route.dispatch.try_send(Inbound { from, frame }).is_err() {
            route
                .link
                .metrics
                .dropped_frames
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
