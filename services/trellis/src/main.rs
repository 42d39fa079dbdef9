//! `trellis`: the one binary. `devnet` runs a consortium on this machine, `node` one validator,
//! `tx`/`proof` talk to a node's client API, `verify` checks a proof bundle offline, `bench`
//! measures committed throughput, `key new` writes a key file.

#![forbid(unsafe_code)]

use trellis::governance_cli::{self, Proposal};
use trellis::{bench, client, devnet, services};

use anyhow::{Result, anyhow, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;
use trellis_node::node::{KeyFile, NodeConfig};
use trellis_types::bundle::AnchorBundle;
use trellis_types::genesis::Genesis;
use trellis_types::{BeaconAction, Digest, Tag, Transaction};

/// mimalloc instead of the system allocator: a node allocates and frees small objects (tree
/// nodes, transactions, store entries) on several threads at a high rate, and glibc's malloc
/// with its trimming and re-faulting of pages was about a quarter of all CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "trellis",
    version,
    about = "Trellis permissioned consortium chain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole consortium on this machine (initialises DIR if it is empty, else resumes).
    Devnet {
        #[command(subcommand)]
        init: Option<DevnetCommand>,
        #[arg(long, default_value = ".trellis-devnet")]
        dir: PathBuf,
        /// The beacon alone, on this many validators, instead of the consortium of three orgs
        /// with two shards.
        #[arg(long)]
        validators: Option<usize>,
    },
    /// Run one node from its config file.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Submit transactions.
    Tx {
        #[command(subcommand)]
        tx: TxCommand,
    },
    /// Fetch proofs.
    Proof {
        #[command(subcommand)]
        proof: ProofCommand,
    },
    /// Check a proof bundle offline against the genesis file (docs/proof-format.md). Exit 0:
    /// valid; 1: refused (the first broken link is named); 2: the files cannot be used.
    Verify {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        genesis: PathBuf,
        /// One JSON line: the verdict, or the broken link's code, index and reason.
        #[arg(long)]
        json: bool,
    },
    /// Submit signed anchors at a fixed rate across the nodes and report committed throughput.
    Bench(bench::BenchArgs),
    /// Run services (identity, membership) against a node, on PostgreSQL or SQLite.
    Serve {
        /// Services config file (a devnet writes one at DIR/services/config.json).
        #[arg(long)]
        config: PathBuf,
        /// `identity`, `membership`, a comma-separated list, or `all`.
        #[arg(long, default_value = "all")]
        target: String,
        /// Overrides the config's database (`postgres://…` or `sqlite://PATH`).
        #[arg(long)]
        database_url: Option<String>,
        /// Overrides the config's node URL.
        #[arg(long)]
        node: Option<String>,
        /// Overrides the config's listen address.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply to join the consortium and follow the application.
    Member {
        #[command(subcommand)]
        member: MemberCommand,
    },
    /// Governance proposals and votes, signed with an org key.
    Governance {
        #[command(subcommand)]
        governance: GovernanceCommand,
    },
    /// Key files.
    Key {
        #[command(subcommand)]
        key: KeyCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new ed25519 key file (mode 0600, never overwriting a file) and print its public
    /// key (64 hex characters).
    New {
        #[arg(long)]
        out: PathBuf,
        /// The organisation the key belongs to: its unified social credit code.
        #[arg(long, default_value = "")]
        org: String,
        /// `member`, `operator`, `regulator`, `bank` or `validator`.
        #[arg(long, default_value = "member")]
        role: String,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Submit an application (JSON file: legal_name, unified_social_credit_code,
    /// legal_representative {name, id_number}, contact {email, phone}, org_public_key).
    Apply {
        #[arg(long)]
        api: String,
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List the applications waiting for review (operator key).
    Pending {
        #[arg(long)]
        api: String,
        #[arg(long)]
        key: PathBuf,
    },
    /// Approve or reject an application after the real-name review (operator key).
    Decide {
        #[arg(long)]
        api: String,
        #[arg(long)]
        key: PathBuf,
        id: String,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        #[arg(long, requires = "reason")]
        reject: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show an application's status.
    Status {
        #[arg(long)]
        api: String,
        #[arg(long)]
        token: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum GovernanceCommand {
    /// List proposals.
    List {
        #[arg(long)]
        api: String,
        #[arg(long)]
        key: PathBuf,
        /// open, passed, rejected or expired.
        #[arg(long)]
        status: Option<String>,
    },
    /// Open a proposal: admit an org, remove a member, or change a parameter.
    Propose {
        #[arg(long)]
        api: String,
        #[arg(long)]
        key: PathBuf,
        /// Org id to admit (needs --org-key).
        #[arg(long, conflicts_with_all = ["remove", "set"], requires = "org_key")]
        admit: Option<String>,
        #[arg(long)]
        org_key: Option<String>,
        /// Org id to remove.
        #[arg(long, conflicts_with = "set")]
        remove: Option<String>,
        /// NAME=VALUE (approval_threshold=3/4, proposal_ttl_blocks=5000).
        #[arg(long)]
        set: Option<String>,
    },
    /// Vote on a proposal with the org key.
    Vote {
        #[arg(long)]
        api: String,
        #[arg(long)]
        key: PathBuf,
        proposal: u64,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        approve: bool,
        #[arg(long)]
        reject: bool,
    },
}

#[derive(Subcommand)]
enum DevnetCommand {
    /// Write the devnet's files only, so validators can run as separate processes.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The beacon alone, on this many validators, instead of the consortium of three orgs
        /// with two shards.
        #[arg(long)]
        validators: Option<usize>,
        /// Extra member accounts for `trellis bench` (under accounts/bench/).
        #[arg(long, default_value_t = devnet::DEFAULT_BENCH_ACCOUNTS)]
        bench_accounts: usize,
        #[arg(long, default_value = "trellis-devnet")]
        chain_id: String,
    },
}

#[derive(Subcommand)]
enum TxCommand {
    /// Anchor a 32-byte evidence digest and wait until it is committed.
    Anchor {
        #[arg(long)]
        node: String,
        #[arg(long)]
        key: PathBuf,
        /// The chain to anchor on: a shard's id, or the beacon (the default).
        #[arg(long)]
        chain: Option<String>,
        /// The digest, 64 hex characters.
        digest: String,
        #[arg(long, default_value = "")]
        tag: String,
        /// Seconds to wait for the commit.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ProofCommand {
    /// Print the proof bundle (JSON) of an anchored digest.
    Anchor {
        #[arg(long)]
        node: String,
        /// The chain the digest was anchored on: a shard's id, or the beacon (the default).
        #[arg(long)]
        chain: Option<String>,
        /// A key file of a member account: a shard answers its members only.
        #[arg(long)]
        key: Option<PathBuf>,
        digest: String,
        /// Seconds to wait for a certified state root that covers the anchor.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // One crypto provider for every rustls user in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trellis: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trellis: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Devnet {
            init:
                Some(DevnetCommand::Init {
                    dir,
                    validators,
                    bench_accounts,
                    chain_id,
                }),
            ..
        } => {
            let layout = validators.map_or(devnet::Layout::Consortium, devnet::Layout::BeaconOnly);
            let net = devnet::init_layout(&dir, layout, bench_accounts, &chain_id)?;
            println!(
                "initialised devnet `{}` with {} nodes in {}",
                net.chain_id,
                net.nodes.len(),
                dir.display()
            );
            for n in &net.nodes {
                println!(
                    "  {:<14} {}  config {}",
                    n.name,
                    n.api_url,
                    n.config.display()
                );
                for chain in n.chains.iter().skip(1) {
                    println!(
                        "  {:<14}   shard {chain}: {}/v1/chains/{chain}",
                        "", n.api_url
                    );
                }
            }
            println!("  accounts: {}", net.accounts_dir.display());
            Ok(0)
        }
        Command::Devnet {
            init: None,
            dir,
            validators,
        } => {
            let layout = validators.map_or(devnet::Layout::Consortium, devnet::Layout::BeaconOnly);
            devnet::run(&dir, layout).await.map(|_| 0)
        }
        Command::Node { config } => {
            let config = NodeConfig::load(&config, std::env::vars())?;
            let node = trellis::apps::start_node(config).await?;
            println!(
                "{} api http://{} p2p {}",
                node.name, node.api_addr, node.p2p_addr
            );
            tokio::signal::ctrl_c().await?;
            node.shutdown().await;
            Ok(0)
        }
        Command::Serve {
            config,
            target,
            database_url,
            node,
            listen,
        } => {
            let targets = services::parse_targets(&target)?;
            let mut config = services::ServicesConfig::load(&config, std::env::vars())?;
            if let Some(u) = database_url {
                config.database_url = u;
            }
            if let Some(n) = node {
                config.node_url = n;
            }
            if let Some(l) = listen {
                config.listen = l
                    .parse()
                    .map_err(|_| anyhow!("--listen: expected HOST:PORT"))?;
            }
            let running = services::RunningServices::start(config, targets).await?;
            println!("services {:?} on {}", running.targets, running.url());
            tokio::signal::ctrl_c().await?;
            running.shutdown().await;
            Ok(0)
        }
        Command::Member {
            member:
                MemberCommand::Apply {
                    api,
                    file,
                    idempotency_key,
                },
        } => {
            let v = governance_cli::member_apply(&api, &file, idempotency_key.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Member {
            member: MemberCommand::Pending { api, key },
        } => {
            let v = governance_cli::member_pending(&api, &key).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Member {
            member:
                MemberCommand::Decide {
                    api,
                    key,
                    id,
                    approve,
                    reject: _,
                    reason,
                },
        } => {
            let v =
                governance_cli::member_decide(&api, &key, &id, approve, reason.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Member {
            member: MemberCommand::Status { api, token, id },
        } => {
            let v = governance_cli::member_status(&api, &id, &token).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Governance {
            governance: GovernanceCommand::List { api, key, status },
        } => {
            let v = governance_cli::governance_list(&api, &key, status.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Governance {
            governance:
                GovernanceCommand::Propose {
                    api,
                    key,
                    admit,
                    org_key,
                    remove,
                    set,
                },
        } => {
            let proposal = match (admit, remove, set) {
                (Some(org), None, None) => Proposal::Admit {
                    org,
                    org_key: org_key.unwrap_or_default(),
                },
                (None, Some(org), None) => Proposal::Remove { org },
                (None, None, Some(kv)) => {
                    let (name, value) = kv
                        .split_once('=')
                        .ok_or_else(|| anyhow!("--set: expected NAME=VALUE"))?;
                    Proposal::Set {
                        name: name.into(),
                        value: value.into(),
                    }
                }
                _ => bail!("give one of --admit ORG --org-key HEX, --remove ORG, --set NAME=VALUE"),
            };
            let v = governance_cli::governance_propose(&api, &key, proposal).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Governance {
            governance:
                GovernanceCommand::Vote {
                    api,
                    key,
                    proposal,
                    approve,
                    reject: _,
                },
        } => {
            let v = governance_cli::governance_vote(&api, &key, proposal, approve).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        Command::Tx {
            tx:
                TxCommand::Anchor {
                    node,
                    key,
                    chain,
                    digest,
                    tag,
                    timeout,
                },
        } => tx_anchor(&node, chain.as_deref(), &key, &digest, &tag, timeout).await,
        Command::Proof {
            proof:
                ProofCommand::Anchor {
                    node,
                    chain,
                    key,
                    digest,
                    timeout,
                },
        } => {
            let signer = match key {
                Some(k) => Some(KeyFile::load(&k)?.signer()?),
                None => None,
            };
            let bundle =
                fetch_bundle(&node, chain.as_deref(), signer.as_ref(), &digest, timeout).await?;
            println!("{}", serde_json::to_string_pretty(&bundle)?);
            Ok(0)
        }
        Command::Verify {
            bundle,
            genesis,
            json,
        } => Ok(verify(&bundle, &genesis, json)),
        Command::Bench(args) => bench::run(args).await,
        Command::Key {
            key: KeyCommand::New { out, org, role },
        } => {
            let key = trellis::local::new_key_file(&out, &role, &org)?;
            println!("{}", key.public_key);
            Ok(0)
        }
    }
}

fn parse_digest(hex_digest: &str) -> Result<Digest> {
    let bytes: [u8; 32] = hex::decode(hex_digest.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("the digest must be 64 hex characters (32 bytes)"))?;
    Ok(Digest(bytes))
}

async fn tx_anchor(
    node: &str,
    chain: Option<&str>,
    key: &std::path::Path,
    digest: &str,
    tag: &str,
    timeout: u64,
) -> Result<i32> {
    let digest = parse_digest(digest)?;
    let tag = Tag::parse(tag).map_err(|e| anyhow!("--tag: {e}"))?;
    let key = KeyFile::load(key)?;
    let signer = key.signer()?;
    let client = reqwest::Client::new();
    let (base, prefix) = client::chain_root(node, chain);
    let resp =
        client::signed_get(&client, &base, &format!("{prefix}/status"), Some(&signer)).await?;
    if !resp.status().is_success() {
        bail!("{}", client::error_text(resp).await);
    }
    let status: serde_json::Value = resp.json().await?;
    let chain_id = status["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow!("node status has no chain id"))?
        .to_string();
    let nonce =
        client::chain_account_nonce(&client, node, chain, &key.public_key, Some(&signer)).await?;
    // Each chain's application has its own actions; both have the anchor.
    let tx = match status["application"].as_str() {
        Some("shard") => Transaction::sign(
            &chain_id,
            &signer,
            nonce,
            trellis_types::ShardAction::Anchor { digest, tag },
        ),
        _ => Transaction::sign(
            &chain_id,
            &signer,
            nonce,
            BeaconAction::Anchor { digest, tag },
        ),
    };
    let resp = client
        .post(format!("{base}{prefix}/transactions"))
        .header("content-type", "application/x-protobuf")
        .body(tx.encoded().to_vec())
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("rejected: {}", client::error_text(resp).await);
    }
    let hash = tx.hash().to_hex();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let resp = client::signed_get(
            &client,
            &base,
            &format!("{prefix}/transactions/{hash}"),
            Some(&signer),
        )
        .await?;
        if resp.status().is_success() {
            let v: serde_json::Value = resp.json().await?;
            match v["status"].as_str() {
                Some("committed") => {
                    println!(
                        "committed tx {hash} at height {} (anchor {})",
                        v["height"],
                        digest.to_hex()
                    );
                    return Ok(0);
                }
                Some("rejected") => {
                    bail!(
                        "tx {hash} rejected at height {}: {}",
                        v["height"],
                        v["reason"].as_str().unwrap_or("?")
                    );
                }
                _ => {}
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("tx {hash} not committed within {timeout} s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetch_bundle(
    node: &str,
    chain: Option<&str>,
    signer: Option<&trellis_types::Signer>,
    digest: &str,
    timeout: u64,
) -> Result<serde_json::Value> {
    let digest = parse_digest(digest)?;
    let client = reqwest::Client::new();
    let (base, prefix) = client::chain_root(node, chain);
    let path = format!("{prefix}/anchors/{}", digest.to_hex());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let resp = client::signed_get(&client, &base, &path, signer).await?;
        if resp.status().is_success() {
            return Ok(resp.json().await?);
        }
        // 409: committed, not yet under a certified root; worth waiting for.
        if resp.status() != reqwest::StatusCode::CONFLICT || tokio::time::Instant::now() > deadline
        {
            bail!("{}", client::error_text(resp).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The verdict on a bundle, as `trellis verify` prints it and exits with; the codes and the JSON
/// shape are the ones docs/proof-format.md gives every verifier.
fn verify(bundle: &std::path::Path, genesis: &std::path::Path, json: bool) -> i32 {
    let refused =
        |code: i32, link: &str, index: Option<usize>, field: Option<&str>, reason: String| {
            if json {
                let line = serde_json::json!({
                    "valid": false, "link": link, "index": index, "field": field, "reason": reason,
                });
                println!("{line}");
            } else {
                println!("INVALID: {reason}");
            }
            code
        };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let genesis = match read(genesis)
        .and_then(|t| Genesis::from_json(&t).map_err(|e| format!("genesis file: {e}")))
    {
        Ok(g) => g,
        Err(reason) => return refused(2, "genesis-file", None, None, reason),
    };
    let text = match read(bundle) {
        Ok(t) => t,
        Err(reason) => return refused(2, "bundle-file", None, None, reason),
    };
    let bundle = match AnchorBundle::from_json(&text) {
        Ok(b) => b,
        Err(e) => {
            let reason = format!("malformed bundle: {e}");
            return refused(1, "malformed", None, e.field(), reason);
        }
    };
    match bundle.verify(&genesis) {
        Ok(v) => {
            if json {
                let line = serde_json::json!({
                    "valid": true,
                    "chain_id": v.chain_id,
                    "digest": v.digest.to_hex(),
                    "tag": v.tag,
                    "sender": hex::encode(v.sender.0),
                    "tx_hash": v.tx_hash.to_hex(),
                    "state_height": v.state_height,
                    "epoch": v.epoch,
                    "signers": v.signers,
                    "committee_size": v.committee_size,
                });
                println!("{line}");
            } else {
                println!("VALID: {v}");
            }
            0
        }
        Err(trellis_types::BrokenLink::GenesisFile(e)) => {
            refused(2, "genesis-file", None, None, format!("genesis file: {e}"))
        }
        Err(broken) => refused(1, broken.code(), broken.index(), None, broken.to_string()),
    }
}
