//! `trellis devnet`: a whole consortium on one machine. `init` writes the files (genesis,
//! consortium CA, node certificates and configs, account keys, network map, the services'
//! config and keyrings); running loads them and starts every validator and the identity and
//! membership services (on SQLite under `services/`) in this process.

use crate::local::{free_port, random_seed, write, write_secret};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use trellis_node::node::{KeyFile, NodeConfig, PeerConfig, RunningNode, TlsPaths, Tuning};
use trellis_node::pki;
use trellis_types::genesis::{ChainParams, Genesis, GenesisAccountEntry, GenesisValidator};

/// `D/network.json`: every node of the devnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub chain_id: String,
    pub genesis: PathBuf,
    pub accounts_dir: PathBuf,
    pub nodes: Vec<NetworkNode>,
    /// The identity and membership services' config (`trellis serve --config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_config: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkNode {
    pub name: String,
    pub api_url: String,
    pub p2p_addr: String,
    pub config: PathBuf,
}

impl Network {
    pub fn load(path: &Path) -> Result<Network> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut net: Network = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a network file", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut net.genesis, &mut net.accounts_dir] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(p) = &mut net.services_config
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
        for n in &mut net.nodes {
            if n.config.is_relative() {
                n.config = base.join(&n.config);
            }
        }
        Ok(net)
    }
}

/// Load-generator accounts a devnet gets by default: `trellis bench` sizes its senders to the
/// rate (one per 250 tx/s), so 64 serve up to 16,000 offered tx/s.
pub const DEFAULT_BENCH_ACCOUNTS: usize = 64;

/// The accounts a devnet starts with: three member orgs, an operator (the identity service's
/// verifier), the consortium CA's operator account (signs revocations; a key of its own so the
/// two services never compete for nonces), a regulator, a bank.
const ACCOUNTS: [(&str, &str, &str); 7] = [
    ("member-1", "member", "org-1"),
    ("member-2", "member", "org-2"),
    ("member-3", "member", "org-3"),
    ("operator", "operator", "consortium-ops"),
    ("regulator", "regulator", "regulator"),
    ("ca-operator", "operator", "consortium-ops"),
    ("bank", "bank", "partner-bank"),
];

pub fn init(
    dir: &Path,
    validators: usize,
    bench_accounts: usize,
    chain_id: &str,
) -> Result<Network> {
    if validators == 0 || validators > 64 {
        bail!("--validators must be between 1 and 64");
    }
    if dir.join("network.json").exists() {
        bail!(
            "{} already holds a devnet (network.json exists)",
            dir.display()
        );
    }
    for sub in ["ca", "accounts", "accounts/bench", "nodes"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let ca = pki::ConsortiumCa::generate(&format!("{chain_id} consortium CA"), 3650)?;
    write(&dir.join("ca/ca.pem"), &ca.cert_pem)?;
    write_secret(&dir.join("ca/ca-key.pem"), &ca.key_pem)?;
    write(&dir.join("ca/crl.pem"), &pki::issue_crl(&ca, 1, &[])?)?;

    let mut nodes = Vec::new();
    for i in 0..validators {
        let name = format!("validator-{}", i + 1);
        let seed = random_seed()?;
        let key = KeyFile::new(&name, "validator", "consortium", seed);
        nodes.push((name, key, free_port()?, free_port()?));
    }
    let mut accounts = Vec::new();
    for (name, role, org) in ACCOUNTS {
        let key = KeyFile::new(name, role, org, random_seed()?);
        write_secret(
            &dir.join(format!("accounts/{name}.json")),
            &serde_json::to_string_pretty(&key)?,
        )?;
        accounts.push(GenesisAccountEntry {
            name: name.into(),
            org: org.into(),
            role: role.into(),
            public_key: key.public_key.clone(),
        });
    }
    // Load generators need many senders: one account's nonces commit in order. They are extra
    // accounts of member org-1, so the consortium still has three member orgs (governance
    // counts orgs, not accounts).
    for i in 1..=bench_accounts {
        let name = format!("bench-{i}");
        let key = KeyFile::new(&name, "member", "org-1", random_seed()?);
        write_secret(
            &dir.join(format!("accounts/bench/{name}.json")),
            &serde_json::to_string_pretty(&key)?,
        )?;
        accounts.push(GenesisAccountEntry {
            name,
            org: "org-1".into(),
            role: "member".into(),
            public_key: key.public_key.clone(),
        });
    }
    let genesis = Genesis {
        chain_id: chain_id.into(),
        genesis_time_ms: trellis_node::chain::now_ms(),
        validators: nodes
            .iter()
            .map(|(name, key, _, _)| GenesisValidator {
                name: name.clone(),
                consensus_key: key.public_key.clone(),
            })
            .collect(),
        accounts,
        params: ChainParams::default(),
    };
    write(&dir.join("genesis.json"), &genesis.to_json_pretty())?;

    let mut network = Network {
        chain_id: chain_id.into(),
        genesis: "genesis.json".into(),
        accounts_dir: "accounts".into(),
        nodes: Vec::new(),
        services_config: Some("services/config.json".into()),
    };
    for (i, (name, key, p2p, api)) in nodes.iter().enumerate() {
        let node_dir = dir.join("nodes").join(name);
        std::fs::create_dir_all(node_dir.join("tls"))?;
        write_secret(
            &node_dir.join("key.json"),
            &serde_json::to_string_pretty(key)?,
        )?;
        let pk = trellis_types::PublicKey(
            hex::decode(&key.public_key)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("key length"))?,
        );
        let cert = pki::issue_node_cert(
            &ca,
            &pk,
            i as u64 + 1,
            &["127.0.0.1".to_string(), "localhost".to_string()],
            365,
        )?;
        write(&node_dir.join("tls/cert.pem"), &cert.cert_pem)?;
        write_secret(&node_dir.join("tls/key.pem"), &cert.key_pem)?;
        let peers = nodes
            .iter()
            .filter(|(n, _, _, _)| n != name)
            .map(|(n, k, p, _)| PeerConfig {
                name: n.clone(),
                consensus_key: k.public_key.clone(),
                p2p_addr: format!("127.0.0.1:{p}"),
                server_name: "127.0.0.1".into(),
            })
            .collect();
        let config = NodeConfig {
            name: name.clone(),
            data_dir: "data".into(),
            genesis: "../../genesis.json".into(),
            key_file: "key.json".into(),
            p2p_listen: format!("127.0.0.1:{p2p}").parse()?,
            api_listen: format!("127.0.0.1:{api}").parse()?,
            tls: TlsPaths {
                ca: "../../ca/ca.pem".into(),
                cert: "tls/cert.pem".into(),
                key: "tls/key.pem".into(),
                crls: vec!["../../ca/crl.pem".into()],
            },
            peers,
            tuning: Tuning::default(),
        };
        write(
            &node_dir.join("config.json"),
            &serde_json::to_string_pretty(&config)?,
        )?;
        network.nodes.push(NetworkNode {
            name: name.clone(),
            api_url: format!("http://127.0.0.1:{api}"),
            p2p_addr: format!("127.0.0.1:{p2p}"),
            config: PathBuf::from("nodes").join(name).join("config.json"),
        });
    }
    let first_api = network
        .nodes
        .first()
        .map(|n| n.api_url.clone())
        .unwrap_or_default();
    crate::services::init_devnet_files(dir, chain_id, &first_api)?;
    write(
        &dir.join("network.json"),
        &serde_json::to_string_pretty(&network)?,
    )?;
    Network::load(&dir.join("network.json"))
}

/// Runs every node of the devnet in this process until Ctrl-C.
pub async fn run(dir: &Path, validators: usize) -> Result<()> {
    let network = if dir.join("network.json").exists() {
        Network::load(&dir.join("network.json"))?
    } else {
        init(dir, validators, DEFAULT_BENCH_ACCOUNTS, "trellis-devnet")?
    };
    let mut running = Vec::new();
    for n in &network.nodes {
        let config = NodeConfig::load(&n.config, std::env::vars())?;
        running.push(RunningNode::start(config).await?);
    }
    println!(
        "trellis devnet `{}` running from {}",
        network.chain_id,
        dir.display()
    );
    for (n, r) in network.nodes.iter().zip(&running) {
        println!(
            "  {:<14} api http://{}  p2p {}",
            n.name, r.api_addr, r.p2p_addr
        );
    }
    // A devnet made before the services existed gets their files now.
    let services_config = match &network.services_config {
        Some(p) => p.clone(),
        None => {
            let api = running
                .first()
                .map(|r| format!("http://{}", r.api_addr))
                .unwrap_or_default();
            crate::services::init_devnet_files(dir, &network.chain_id, &api)?
        }
    };
    let config = crate::services::ServicesConfig::load(&services_config, std::env::vars())?;
    let db_url = config.database_url.clone();
    let services = crate::services::RunningServices::start(
        config,
        vec![
            crate::services::Target::Identity,
            crate::services::Target::Membership,
        ],
    )
    .await?;
    println!(
        "  {:<14} {}  (identity, membership; {})",
        "services",
        services.url(),
        if db_url.starts_with("sqlite") {
            "SQLite under services/"
        } else {
            "PostgreSQL"
        }
    );
    println!("  accounts: {}", network.accounts_dir.display());
    println!("  genesis:  {}", network.genesis.display());
    println!("Ctrl-C stops it; run the same command again to resume the chain.");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("stopping…");
    services.shutdown().await;
    for r in running {
        r.shutdown().await;
    }
    println!("stopped");
    Ok(())
}
