//! A running node: configuration (file, then `TRELLIS__SECTION__KEY` overrides), key files, and
//! the assembly of network, store, driver, dispatcher and client API for the beacon chain.

use crate::chain::{
    ChainConfig, ChainLink, ChainShared, Driver, DriverEvent, Route, dispatch,
    relay_certified_updates, route_inbound,
};
use crate::net::{NetConfig, Network, PeerAddr, TlsMaterial};
use crate::store::{NodeStore, TREE_FLUSH_EVERY};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use trellis_consensus::ReplicaConfig;
use trellis_ledger::app::Application;
use trellis_types::genesis::Genesis;
use trellis_types::{PublicKey, Signer};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("config: {0}")]
    Config(String),
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    #[error("network: {0}")]
    Net(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("api: {0}")]
    Api(String),
}

fn read(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|e| NodeError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A key file: an ed25519 key (its 32-byte seed) with who it belongs to. Written by
/// `trellis devnet init` with mode 0600; the secret is never printed.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub name: String,
    /// `validator`, `member`, `operator`, `regulator` or `bank`.
    pub role: String,
    #[serde(default)]
    pub org: String,
    pub public_key: String,
    pub secret_seed: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    pub fn new(name: &str, role: &str, org: &str, seed: [u8; 32]) -> KeyFile {
        let signer = Signer::from_seed(seed);
        KeyFile {
            name: name.into(),
            role: role.into(),
            org: org.into(),
            public_key: hex::encode(signer.public_key().0),
            secret_seed: hex::encode(seed),
        }
    }

    pub fn load(path: &Path) -> Result<KeyFile, NodeError> {
        serde_json::from_str(&read(path)?).map_err(|e| NodeError::File {
            path: path.display().to_string(),
            reason: format!("not a key file: {e}"),
        })
    }

    pub fn signer(&self) -> Result<Signer, NodeError> {
        Ok(Signer::from_seed(self.seed()?))
    }

    /// The 32-byte ed25519 seed, checked against `public_key` (an org signs certificates and
    /// CRLs with it as its org key).
    pub fn seed(&self) -> Result<[u8; 32], NodeError> {
        let bad = || {
            NodeError::Config(format!(
                "key `{}`: secret_seed is not 32 bytes of hex",
                self.name
            ))
        };
        let seed: [u8; 32] = hex::decode(&self.secret_seed)
            .map_err(|_| bad())?
            .try_into()
            .map_err(|_| bad())?;
        let signer = Signer::from_seed(seed);
        if hex::encode(signer.public_key().0) != self.public_key {
            return Err(NodeError::Config(format!(
                "key `{}`: public_key does not match the secret",
                self.name
            )));
        }
        Ok(seed)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TlsPaths {
    /// The consortium root certificate: the one trust anchor.
    pub ca: PathBuf,
    /// This node's chain: node certificate, its org's certificate, the issuing CA's.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CRL files (each may hold several CRLs, one per issuer), reloaded when they change.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerConfig {
    pub name: String,
    pub consensus_key: String,
    pub p2p_addr: String,
    pub server_name: String,
}

/// Knobs with defaults that suit a LAN.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Tuning {
    pub base_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub empty_block_delay_ms: u64,
    /// Least time between a block's arrival and a proposal on top of it, unless a full block is
    /// waiting: under load, fewer and fuller blocks spread each block's fixed costs (the state
    /// tree's upper levels, fsyncs, certificates) over more transactions.
    pub min_block_interval_ms: u64,
    pub mempool_max_txs: usize,
    pub mempool_max_bytes: usize,
    pub max_frame_bytes: usize,
    /// How often the CRL files are checked for a new version (the consortium CA rewrites them
    /// when a revocation commits); a changed set is loaded without a restart.
    pub crl_poll_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            base_timeout_ms: 1_000,
            max_timeout_ms: 8_000,
            empty_block_delay_ms: 200,
            min_block_interval_ms: 50,
            mempool_max_txs: 200_000,
            mempool_max_bytes: 128 * 1024 * 1024,
            max_frame_bytes: 32 * 1024 * 1024,
            crl_poll_ms: 2_000,
        }
    }
}

/// One node's configuration file (JSON). Relative paths are relative to the file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    pub key_file: PathBuf,
    pub p2p_listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub tls: TlsPaths,
    pub peers: Vec<PeerConfig>,
    /// The chains this node hosts, by chain id: the beacon (the genesis file's `chain_id`)
    /// and shards of the genesis file whose member orgs include this node's org. Empty: the
    /// beacon only.
    #[serde(default)]
    pub chains: Vec<String>,
    #[serde(default)]
    pub tuning: Tuning,
}

/// Where a node keeps the store of one of its chains.
pub fn chain_store_dir(data_dir: &Path, chain_id: &str) -> PathBuf {
    data_dir.join("chains").join(chain_id)
}

impl NodeConfig {
    /// Reads the file, applies `TRELLIS__SECTION__KEY` overrides from `env`, resolves paths.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, NodeError> {
        let mut value: serde_json::Value =
            serde_json::from_str(&read(path)?).map_err(|e| NodeError::File {
                path: path.display().to_string(),
                reason: format!("not valid JSON: {e}"),
            })?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("TRELLIS__") else {
                continue;
            };
            let keys: Vec<String> = rest.split("__").map(|s| s.to_lowercase()).collect();
            let parsed = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            set_path(&mut value, &keys, parsed);
        }
        let mut config: NodeConfig = serde_json::from_value(value)
            .map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.data_dir,
            &mut config.genesis,
            &mut config.key_file,
            &mut config.tls.ca,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for p in &mut config.tls.crls {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

fn set_path(value: &mut serde_json::Value, keys: &[String], v: serde_json::Value) {
    let Some((first, rest)) = keys.split_first() else {
        *value = v;
        return;
    };
    if !value.is_object() {
        *value = serde_json::Value::Object(Default::default());
    }
    if let Some(map) = value.as_object_mut() {
        let entry = map.entry(first.clone()).or_insert(serde_json::Value::Null);
        set_path(entry, rest, v);
    }
}

fn parse_key(hex_key: &str, what: &str) -> Result<PublicKey, NodeError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| NodeError::Config(format!("{what}: not 32 bytes of hex")))?;
    Ok(PublicKey(bytes))
}

/// How a node gets the application of each chain it hosts: the binary knows the applications,
/// the node does not (it imports none).
pub trait Applications: Send + Sync {
    /// The beacon's application, from the beacon's genesis file.
    fn beacon(&self, genesis: &Genesis) -> Result<Arc<dyn Application>, String>;
    /// The application of shard `shard_id`, one of the genesis file's shards.
    fn shard(&self, genesis: &Genesis, shard_id: &str) -> Result<Arc<dyn Application>, String>;
}

/// The org a node belongs to, as the genesis file names it.
fn org_of(genesis: &Genesis, key: &PublicKey) -> Option<String> {
    let hex_key = hex::encode(key.0);
    genesis
        .validators
        .iter()
        .chain(genesis.shards.iter().flat_map(|s| s.validators.iter()))
        .find(|v| v.consensus_key.eq_ignore_ascii_case(&hex_key))
        .and_then(|v| v.org.clone())
}

/// The nodes a shard's chain talks with: the nodes of its member orgs the genesis file names.
fn shard_peers(genesis: &Genesis, members: &[String]) -> Vec<PublicKey> {
    genesis
        .validators
        .iter()
        .chain(genesis.shards.iter().flat_map(|s| s.validators.iter()))
        .filter(|v| v.org.as_ref().is_some_and(|o| members.contains(o)))
        .filter_map(|v| parse_key(&v.consensus_key, "node").ok())
        .collect()
}

/// One hosted chain of a running node.
struct HostedChain {
    shared: Arc<ChainShared>,
    driver_tx: mpsc::Sender<DriverEvent>,
    driver: JoinHandle<()>,
}

/// A node that is running; dropping it does not stop it, [`RunningNode::shutdown`] does.
pub struct RunningNode {
    pub name: String,
    pub api_addr: SocketAddr,
    pub p2p_addr: SocketAddr,
    /// The beacon chain.
    pub shared: Arc<ChainShared>,
    chains: Vec<HostedChain>,
    net: Network,
    tasks: Vec<JoinHandle<()>>,
    api_stop: tokio::sync::oneshot::Sender<()>,
}

/// What identifies a version of the CRL files without reading them: size and modification
/// time of each.
fn crl_fingerprint(paths: &[PathBuf]) -> Vec<Option<(u64, std::time::SystemTime)>> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?))
        })
        .collect()
}

/// Reloads the CRLs whenever their files change. A file that cannot be read or parsed leaves
/// the previous CRLs in force (and is retried on the next change).
async fn watch_crls(net: Network, paths: Vec<PathBuf>, every_ms: u64) {
    let mut seen = crl_fingerprint(&paths);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(every_ms));
    loop {
        tick.tick().await;
        let now = crl_fingerprint(&paths);
        if now == seen {
            continue;
        }
        seen = now;
        let pems: Result<Vec<String>, _> = paths.iter().map(std::fs::read_to_string).collect();
        match pems.map(|pems| net.reload_crls(pems)) {
            Ok(Ok(())) => tracing::info!("CRL files changed: reloaded"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "CRL files changed but do not load; keeping the previous CRLs")
            }
            Err(e) => {
                tracing::warn!(error = %e, "CRL files changed but cannot be read; keeping the previous CRLs")
            }
        }
    }
}

impl RunningNode {
    pub async fn start(
        config: NodeConfig,
        applications: &dyn Applications,
    ) -> Result<RunningNode, NodeError> {
        let genesis = Genesis::from_json(&read(&config.genesis)?).map_err(|e| NodeError::File {
            path: config.genesis.display().to_string(),
            reason: e.to_string(),
        })?;
        let me_key = KeyFile::load(&config.key_file)?.signer()?.public_key();
        let my_org = org_of(&genesis, &me_key);
        let chain_ids = if config.chains.is_empty() {
            vec![genesis.chain_id.clone()]
        } else {
            config.chains.clone()
        };
        // Each chain's application and the nodes it talks with, checked before anything opens.
        let all_peers: Vec<PublicKey> = config
            .peers
            .iter()
            .map(|p| parse_key(&p.consensus_key, &format!("peer `{}`", p.name)))
            .collect::<Result<_, _>>()?;
        let mut plan: Vec<(Arc<dyn Application>, Vec<PublicKey>)> = Vec::new();
        for id in &chain_ids {
            if plan.iter().any(|(a, _)| a.chain_id() == id) {
                return Err(NodeError::Config(format!("chains: `{id}` is listed twice")));
            }
            if *id == genesis.chain_id {
                let app = applications.beacon(&genesis).map_err(NodeError::Config)?;
                plan.push((app, all_peers.clone()));
                continue;
            }
            let Some(shard) = genesis.shards.iter().find(|s| s.shard_id == *id) else {
                return Err(NodeError::Config(format!(
                    "chains: `{id}` is neither the beacon `{}` nor one of its shards",
                    genesis.chain_id
                )));
            };
            // Only a member org's node holds a shard's blocks.
            if !my_org.as_ref().is_some_and(|o| shard.members.contains(o)) {
                return Err(NodeError::Config(format!(
                    "chains: this node's org ({}) is not a member of shard `{id}`, so it may not \
                     hold its blocks",
                    my_org
                        .as_deref()
                        .unwrap_or("none named in the genesis file")
                )));
            }
            let app = applications
                .shard(&genesis, id)
                .map_err(NodeError::Config)?;
            plan.push((app, shard_peers(&genesis, &shard.members)));
        }
        // The beacon first: it is the chain the `/v1/...` routes serve.
        plan.sort_by_key(|(app, _)| app.chain_id() != genesis.chain_id);
        if !chain_ids.contains(&genesis.chain_id) {
            return Err(NodeError::Config(format!(
                "chains: every node hosts the beacon `{}`",
                genesis.chain_id
            )));
        }
        let signer = KeyFile::load(&config.key_file)?.signer()?;
        let me = signer.public_key();
        let mut peers = Vec::new();
        for p in &config.peers {
            peers.push(PeerAddr {
                key: parse_key(&p.consensus_key, &format!("peer `{}`", p.name))?,
                addr: p.p2p_addr.clone(),
                server_name: p.server_name.clone(),
            });
        }
        let mut crl_pems = Vec::new();
        for p in &config.tls.crls {
            crl_pems.push(read(p)?);
        }
        let tls = TlsMaterial {
            ca_pem: read(&config.tls.ca)?,
            cert_pem: read(&config.tls.cert)?,
            key_pem: read(&config.tls.key)?,
            crl_pems,
        };
        // Validators take turns at the slow tree flush: spread by their place among the
        // consensus keys this node knows (itself and its peers), the same order on every node.
        let mut keys: Vec<[u8; 32]> = peers
            .iter()
            .map(|p| p.key.0)
            .chain(std::iter::once(me.0))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let place = keys.iter().position(|k| *k == me.0).unwrap_or(0) as u64;
        let t = &config.tuning;
        let net_config = NetConfig {
            listen: config.p2p_listen,
            me,
            peers,
            max_frame_bytes: t.max_frame_bytes,
            reconnect_min_ms: 50,
            reconnect_max_ms: 2_000,
            send_queue: 4_096,
        };
        let (net, inbound) = Network::start(net_config, tls)
            .await
            .map_err(|e| NodeError::Net(e.to_string()))?;
        let p2p_addr = net.local_addr();
        let relay_signer = signer.clone();
        match Self::open_chains(plan, &config, &net, signer, &genesis, place, keys.len()) {
            Ok(started) => Self::serve(config, net, started, p2p_addr, inbound, relay_signer).await,
            Err(e) => {
                // A node that does not start leaves its address free to start again.
                net.shutdown().await;
                Err(e)
            }
        }
    }

    /// Opens every chain's store and driver (nothing runs yet).
    fn open_chains(
        plan: Vec<(Arc<dyn Application>, Vec<PublicKey>)>,
        config: &NodeConfig,
        net: &Network,
        signer: Signer,
        genesis: &Genesis,
        place: u64,
        known: usize,
    ) -> Result<Vec<(Driver, Arc<ChainShared>)>, NodeError> {
        let t = &config.tuning;
        let chain_config = ChainConfig {
            replica: ReplicaConfig {
                base_timeout_ms: t.base_timeout_ms,
                max_timeout_ms: t.max_timeout_ms,
                ..ReplicaConfig::default()
            },
            mempool: crate::mempool::MempoolConfig {
                max_txs: t.mempool_max_txs,
                max_bytes: t.mempool_max_bytes,
                max_tx_bytes: genesis.params.max_tx_bytes as usize,
                ..Default::default()
            },
            empty_block_delay_ms: t.empty_block_delay_ms,
            min_block_interval_ms: t.min_block_interval_ms,
            ..ChainConfig::default()
        };
        let mut opened = Vec::new();
        for (app, peers) in plan {
            let dir = chain_store_dir(&config.data_dir, app.chain_id());
            std::fs::create_dir_all(&dir).map_err(|e| NodeError::File {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            let store = NodeStore::open(&dir)?;
            store.set_tree_flush_phase(place * TREE_FLUSH_EVERY / known.max(1) as u64);
            let link = ChainLink::new(net.clone(), app.chain_id(), peers);
            opened.push(Driver::open(
                app,
                signer.clone(),
                &chain_config,
                store,
                link,
            )?);
        }
        Ok(opened)
    }

    /// Starts the drivers, the router of inbound frames and the client API.
    async fn serve(
        config: NodeConfig,
        net: Network,
        opened: Vec<(Driver, Arc<ChainShared>)>,
        p2p_addr: SocketAddr,
        inbound: mpsc::Receiver<crate::net::Inbound>,
        signer: Signer,
    ) -> Result<RunningNode, NodeError> {
        let t = &config.tuning;
        let mut tasks = Vec::new();
        if !config.tls.crls.is_empty() {
            tasks.push(tokio::spawn(watch_crls(
                net.clone(),
                config.tls.crls.clone(),
                t.crl_poll_ms.max(100),
            )));
        }
        let mut chains = Vec::new();
        let mut routes = std::collections::BTreeMap::new();
        for (driver, shared) in opened {
            let (driver_tx, driver_rx) = mpsc::channel(4_096);
            let (dispatch_tx, dispatch_rx) = mpsc::channel(4_096);
            let driver = tokio::spawn(driver.run(driver_rx));
            tasks.push(tokio::spawn(dispatch(
                shared.clone(),
                dispatch_rx,
                driver_tx.clone(),
            )));
            routes.insert(
                shared.chain_id.clone(),
                Route {
                    link: shared.clone(),
                    dispatch: dispatch_tx,
                },
            );
            chains.push(HostedChain {
                shared,
                driver_tx,
                driver,
            });
        }
        let unroutable = Arc::new(std::sync::atomic::AtomicU64::new(0));
        tasks.push(tokio::spawn(route_inbound(inbound, routes, unroutable)));
        let beacon = chains[0].shared.clone();
        // Every other chain follows the beacon; the application says what it takes in.
        for chain in chains.iter().skip(1) {
            tasks.push(tokio::spawn(relay_certified_updates(
                beacon.clone(),
                chain.shared.clone(),
                signer.clone(),
            )));
        }
        let listener = tokio::net::TcpListener::bind(config.api_listen)
            .await
            .map_err(|e| NodeError::Api(format!("bind {}: {e}", config.api_listen)))?;
        let api_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Api(e.to_string()))?;
        let (api_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = crate::api::router(
            chains.iter().map(|c| c.shared.clone()).collect(),
            beacon.clone(),
            config.name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "client API stopped");
            }
        }));
        tracing::info!(node = %config.name, %api_addr, %p2p_addr, "node started");
        Ok(RunningNode {
            name: config.name,
            api_addr,
            p2p_addr,
            shared: beacon,
            chains,
            net,
            tasks,
            api_stop,
        })
    }

    /// A hosted chain by id.
    pub fn chain(&self, chain_id: &str) -> Option<Arc<ChainShared>> {
        self.chains
            .iter()
            .find(|c| c.shared.chain_id == chain_id)
            .map(|c| c.shared.clone())
    }

    /// Stops the API, the driver and the network; every commit already returned is on disk.
    /// The driver ends on its own, after the events queued before the shutdown and its flush
    /// of the state tree (aborted, it skipped the flush; only a driver stuck for a minute is).
    pub async fn shutdown(self) {
        let _ = self.api_stop.send(());
        for chain in &self.chains {
            // Refused only when the driver has ended already.
            let _ = chain.driver_tx.send(DriverEvent::Shutdown).await;
        }
        for chain in self.chains {
            let mut driver = chain.driver;
            if tokio::time::timeout(std::time::Duration::from_secs(60), &mut driver)
                .await
                .is_err()
            {
                tracing::warn!(node = %self.name, chain = %chain.shared.chain_id,
                    "the driver did not stop within a minute");
                driver.abort();
            }
        }
        self.net.shutdown().await;
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
