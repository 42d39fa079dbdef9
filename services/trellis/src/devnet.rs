//! `trellis devnet`: a whole consortium on one machine. `init` writes the files (genesis,
//! the consortium's certificate hierarchy, node certificates and configs, account keys,
//! network map, the services' config and keyrings); running loads them and starts every
//! validator and the identity and membership services (on SQLite under `services/`) in this
//! process.
//!
//! The hierarchy under `ca/`: `root.pem` and `root-key.pem` (the offline root; its key is
//! used only here, at init, and no running process reads it) with `root-crl.pem`;
//! `issuing-ca.pem` (the issuing CA followed by the root) and `issuing-ca-key.pem`, held by
//! the membership service; `orgs/<org>.pem`, each genesis member org's certificate (for its
//! member account's key) followed by the issuing CA; and `crl.pem`, the CRLs the membership
//! service rewrites (issuing CA, then each genesis org, which delegate their node CRL to it).
//! Validator i's node certificate (serial i) is issued by org-((i-1) mod 3 + 1) and its
//! `tls/cert.pem` holds the chain node, org, issuing CA; nodes trust only the root.

use crate::local::{free_port, random_seed, write, write_secret};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use trellis_node::node::{KeyFile, NodeConfig, PeerConfig, TlsPaths, Tuning};
use trellis_pki::{DAY_MS, NodeCertRequest, OrgCa, RootCa, Serial};
use trellis_types::genesis::{
    ChainParams, Genesis, GenesisAccountEntry, GenesisShard, GenesisValidator,
};

/// `D/network.json`: every node of the devnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    /// The beacon's chain id.
    pub chain_id: String,
    /// The shards of the devnet (their chain ids), each hosted by its member orgs' nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
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
    /// The org the node belongs to, when the genesis names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The chains it hosts (the beacon and its org's shards); empty: the beacon only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chains: Vec<String>,
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

/// How long the devnet's root and issuing CA live, and its org and node certificates.
const ROOT_DAYS: i64 = 3650;
const ISSUING_DAYS: i64 = 1825;
const CERT_DAYS: i64 = 365;

/// The accounts a devnet starts with: three member orgs, an operator (the identity service's
/// verifier), the consortium CA's operator account (signs revocations; a key of its own so the
/// two services never compete for nonces), a regulator, a bank.
pub(crate) const ACCOUNTS: [(&str, &str, &str); 7] = [
    ("member-1", "member", "org-1"),
    ("member-2", "member", "org-2"),
    ("member-3", "member", "org-3"),
    ("operator", "operator", "consortium-ops"),
    ("regulator", "regulator", "regulator"),
    ("ca-operator", "operator", "consortium-ops"),
    ("bank", "bank", "partner-bank"),
];

/// Which nodes and chains a devnet has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// The consortium: member orgs org-1, org-2 and org-3 run two nodes each; every node hosts
    /// the beacon, whose committee is four of them (two of org-1, one each of org-2 and
    /// org-3); shard `scf` (org-1, org-2) and shard `evidence` (org-2, org-3), each validated by
    /// its member orgs' four nodes.
    Consortium,
    /// The beacon alone, validated by this many nodes (which belong to no org).
    BeaconOnly(usize),
}

/// The consortium layout's shards: id and member orgs.
pub const SHARDS: [(&str, [&str; 2]); 2] = [
    ("scf", ["org-1", "org-2"]),
    ("evidence", ["org-2", "org-3"]),
];

/// Nodes of the consortium layout: name and org. The first four are the beacon's committee.
const CONSORTIUM_NODES: [(&str, &str); 6] = [
    ("org-1-node-1", "org-1"),
    ("org-2-node-1", "org-2"),
    ("org-3-node-1", "org-3"),
    ("org-1-node-2", "org-1"),
    ("org-2-node-2", "org-2"),
    ("org-3-node-2", "org-3"),
];

/// The beacon-only layout of `validators` nodes (what the benchmarks and most tests use).
pub fn init(
    dir: &Path,
    validators: usize,
    bench_accounts: usize,
    chain_id: &str,
) -> Result<Network> {
    init_layout(
        dir,
        Layout::BeaconOnly(validators),
        bench_accounts,
        chain_id,
    )
}

pub fn init_layout(
    dir: &Path,
    layout: Layout,
    bench_accounts: usize,
    chain_id: &str,
) -> Result<Network> {
    if let Layout::BeaconOnly(v) = layout
        && (v == 0 || v > 64)
    {
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
    // (name, key, p2p port, api port, org)
    let mut nodes = Vec::new();
    let named: Vec<(String, Option<&str>)> = match layout {
        Layout::BeaconOnly(v) => (1..=v).map(|i| (format!("validator-{i}"), None)).collect(),
        Layout::Consortium => CONSORTIUM_NODES
            .iter()
            .map(|(n, o)| (n.to_string(), Some(*o)))
            .collect(),
    };
    for (name, org) in named {
        let seed = random_seed()?;
        let key = KeyFile::new(&name, "validator", org.unwrap_or("consortium"), seed);
        nodes.push((name, key, free_port()?, free_port()?, org));
    }
    let mut accounts = Vec::new();
    let mut member_seeds = Vec::new();
    for (name, role, org) in ACCOUNTS {
        let seed = random_seed()?;
        if role == "member" {
            member_seeds.push((org, seed));
        }
        let key = KeyFile::new(name, role, org, seed);
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
    // accounts of member org-2, so the consortium still has three member orgs (governance
    // counts orgs, not accounts), and they may write on both shards (org-2 is in each).
    for i in 1..=bench_accounts {
        let name = format!("bench-{i}");
        let key = KeyFile::new(&name, "member", "org-2", random_seed()?);
        write_secret(
            &dir.join(format!("accounts/bench/{name}.json")),
            &serde_json::to_string_pretty(&key)?,
        )?;
        accounts.push(GenesisAccountEntry {
            name,
            org: "org-2".into(),
            role: "member".into(),
            public_key: key.public_key.clone(),
        });
    }
    let validator =
        |(name, key, _, _, org): &(String, KeyFile, u16, u16, Option<&str>)| GenesisValidator {
            name: name.clone(),
            consensus_key: key.public_key.clone(),
            org: org.map(str::to_string),
        };
    let (beacon_committee, shards) = match layout {
        Layout::BeaconOnly(_) => (nodes.iter().map(validator).collect(), Vec::new()),
        Layout::Consortium => (
            nodes[..4].iter().map(validator).collect(),
            SHARDS
                .iter()
                .map(|(id, members)| GenesisShard {
                    shard_id: id.to_string(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                    validators: nodes
                        .iter()
                        .filter(|n| n.4.is_some_and(|o| members.contains(&o)))
                        .map(validator)
                        .collect(),
                })
                .collect(),
        ),
    };
    let shard_ids: Vec<String> = shards
        .iter()
        .map(|s: &GenesisShard| s.shard_id.clone())
        .collect();
    let genesis = Genesis {
        chain_id: chain_id.into(),
        genesis_time_ms: trellis_node::chain::now_ms(),
        validators: beacon_committee,
        accounts,
        shards,
        params: ChainParams::default(),
    };
    write(&dir.join("genesis.json"), &genesis.to_json_pretty())?;
    let orgs = init_ca(dir, chain_id, &member_seeds)?;

    let mut network = Network {
        chain_id: chain_id.into(),
        genesis: "genesis.json".into(),
        accounts_dir: "accounts".into(),
        shards: shard_ids,
        nodes: Vec::new(),
        services_config: Some("services/config.json".into()),
    };
    for (i, (name, key, p2p, api, node_org)) in nodes.iter().enumerate() {
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
        // A node's certificate comes from its org (in the beacon-only layout, validator i's
        // from member org ((i-1) mod 3) + 1); its serial is i.
        let org = match node_org {
            Some(o) => orgs
                .iter()
                .find(|ca| ca.org() == *o)
                .context("every node's org is a genesis member org")?,
            None => &orgs[i % orgs.len()],
        };
        let now = trellis_pki::now_ms();
        let cert = org.issue_node_certificate(&NodeCertRequest {
            validator: pk,
            serial: Serial::from_u64(i as u64 + 1)?,
            hosts: vec!["127.0.0.1".to_string(), "localhost".to_string()],
            not_before_ms: now - 3_600_000,
            not_after_ms: (now + CERT_DAYS * DAY_MS).min(org.not_after_ms()),
        })?;
        write(&node_dir.join("tls/cert.pem"), &cert.chain_pem)?;
        write_secret(&node_dir.join("tls/key.pem"), &cert.key_pem)?;
        let chains: Vec<String> = match node_org {
            None => Vec::new(),
            Some(o) => std::iter::once(chain_id.to_string())
                .chain(
                    SHARDS
                        .iter()
                        .filter(|(_, members)| members.contains(o))
                        .map(|(id, _)| id.to_string()),
                )
                .collect(),
        };
        let peers = nodes
            .iter()
            .filter(|(n, _, _, _, _)| n != name)
            .map(|(n, k, p, _, _)| PeerConfig {
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
                ca: "../../ca/root.pem".into(),
                cert: "tls/cert.pem".into(),
                key: "tls/key.pem".into(),
                crls: vec!["../../ca/root-crl.pem".into(), "../../ca/crl.pem".into()],
            },
            peers,
            chains: chains.clone(),
            tuning: Tuning::default(),
        };
        write(
            &node_dir.join("config.json"),
            &serde_json::to_string_pretty(&config)?,
        )?;
        network.nodes.push(NetworkNode {
            name: name.clone(),
            org: node_org.map(str::to_string),
            chains,
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

/// Writes the certificate hierarchy under `dir/ca/` (see the module documentation) and
/// returns the genesis member orgs as CAs, in `members` order.
fn init_ca(dir: &Path, chain_id: &str, members: &[(&str, [u8; 32])]) -> Result<Vec<OrgCa>> {
    std::fs::create_dir_all(dir.join("ca/orgs"))
        .with_context(|| format!("cannot create {}", dir.join("ca/orgs").display()))?;
    // An hour back, so small clock skew between members does not make them "not yet valid".
    let now = trellis_pki::now_ms();
    let start = now - 3_600_000;
    let root = RootCa::generate(
        &format!("{chain_id} root CA"),
        start,
        start + ROOT_DAYS * DAY_MS,
    )?;
    write(&dir.join("ca/root.pem"), root.cert_pem())?;
    write_secret(&dir.join("ca/root-key.pem"), &root.key_pem())?;
    // The offline root's CRL (no issuing CA revoked), valid a year.
    write(
        &dir.join("ca/root-crl.pem"),
        &root.crl_pem(&[], 1, now, now + 365 * DAY_MS)?,
    )?;
    // "1": the first generation; a rotation's next issuing CA needs another name.
    let issuing = root.issue_issuing_ca(
        &format!("{chain_id} issuing CA 1"),
        start,
        start + ISSUING_DAYS * DAY_MS,
    )?;
    write(&dir.join("ca/issuing-ca.pem"), &issuing.chain_pem())?;
    write_secret(&dir.join("ca/issuing-ca-key.pem"), &issuing.key_pem())?;
    drop(root);

    let mut orgs = Vec::new();
    let mut crls = vec![issuing.crl_pem(&[], 1, now, now + DAY_MS)?];
    for (org, seed) in members {
        let key = trellis_types::Signer::from_seed(*seed).public_key().0;
        let cert = issuing.issue_org_certificate(org, key, start, CERT_DAYS * DAY_MS)?;
        let chain = trellis_pki::chain_pem(&[cert.pem, issuing.cert_pem().to_string()]);
        write(&dir.join(format!("ca/orgs/{org}.pem")), &chain)?;
        let org_ca = OrgCa::from_seed(&chain, *seed)?;
        crls.push(org_ca.crl_pem(&[], 1, now, now + DAY_MS)?);
        orgs.push(org_ca);
    }
    if orgs.is_empty() {
        bail!("a devnet needs at least one member org to issue its nodes' certificates");
    }
    // The membership service rewrites it from the beacon's revocation list.
    write(&dir.join("ca/crl.pem"), &trellis_pki::chain_pem(&crls))?;
    Ok(orgs)
}

/// Runs every node of the devnet in this process until Ctrl-C.
pub async fn run(dir: &Path, layout: Layout) -> Result<()> {
    let network = if dir.join("network.json").exists() {
        Network::load(&dir.join("network.json"))?
    } else {
        init_layout(dir, layout, DEFAULT_BENCH_ACCOUNTS, "trellis-devnet")?
    };
    let mut running = Vec::new();
    for n in &network.nodes {
        let config = NodeConfig::load(&n.config, std::env::vars())?;
        running.push(crate::apps::start_node(config).await?);
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
        for chain in n.chains.iter().skip(1) {
            println!(
                "  {:<14}   shard {chain}: http://{}/v1/chains/{chain}",
                "", r.api_addr
            );
        }
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
