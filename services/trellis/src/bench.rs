//! `trellis bench`: pre-signs transactions from the devnet's bench accounts (anchors on the
//! beacon, business records on a shard), submits them at a fixed rate per chain across the
//! nodes hosting each chain in batches, follows committed blocks on one node per chain and
//! reports submitted, committed, committed tx/s and submit-to-commit latency percentiles, per
//! chain and for all together, with the nodes' CPU per committed transaction.

use crate::devnet::Network;
use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use trellis_node::api::{PROCESS_CPU_METRIC, PROCESS_ID_METRIC, metric_value};
use trellis_node::node::KeyFile;
use trellis_types::{BeaconAction, Collection, Digest, RecordKey, ShardAction, Tag, Transaction};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The devnet's network.json.
    #[arg(long)]
    network: PathBuf,
    /// Transactions per second to submit.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Approximate size of each signed transaction in bytes (the tag pads it).
    #[arg(long, default_value_t = 256)]
    tx_size: usize,
    /// Sending accounts (taken from accounts/bench/). By default one per 250 tx/s offered (at
    /// least 4), as many as the devnet has.
    #[arg(long)]
    accounts: Option<usize>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Load this chain (repeat for several at once, each at `--rate`): the beacon by default, or
    /// a shard (then business records, from bench accounts, which belong to org-2).
    #[arg(long)]
    chain: Vec<String>,
}

/// Batches per second: each batch is one HTTP request to one node.
const TICKS_PER_S: u64 = 20;

/// Offered tx/s per sending account by default. A node queues an account's transactions at
/// most 1,000 nonces ahead of its next committed one (`mempool.max_nonce_gap`), and one
/// account's transactions commit in nonce order: at 250 tx/s an account stays under that for
/// 4 s of commit latency. (16 accounts at 12,000 tx/s had 143,720 of 180,000 refused.)
const TX_PER_S_PER_ACCOUNT: u64 = 250;

/// The default number of sending accounts for `rate` offered tx/s.
pub fn accounts_for(rate: u64) -> usize {
    usize::try_from(rate.div_ceil(TX_PER_S_PER_ACCOUNT))
        .unwrap_or(usize::MAX)
        .max(4)
}

fn bench_key(network: &Network, i: usize) -> std::path::PathBuf {
    network.accounts_dir.join(format!("bench/bench-{i}.json"))
}

/// One chain under load: where it is served, what is sent to it, what was seen committed.
struct ChainLoad {
    chain_id: String,
    /// `/v1/chains/{id}`.
    prefix: String,
    /// The API URLs of the nodes hosting it.
    nodes: Vec<String>,
    txs: Vec<(Digest, Vec<u8>)>,
    sent: Arc<Mutex<HashMap<Digest, Instant>>>,
    seen: Arc<Mutex<Vec<(f64, Instant)>>>,
    rejected: Arc<std::sync::atomic::AtomicU64>,
    /// Why transactions were refused: the problem type's last segment, counted.
    reasons: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    start_height: u64,
}

/// The figures of one chain's run (or of all together).
struct Figures {
    submitted: u64,
    rejected: u64,
    committed: u64,
    window: f64,
    tps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

fn figures(
    latencies: &[(f64, Instant)],
    submitted: u64,
    rejected: u64,
    began: Instant,
    load_secs: f64,
) -> Figures {
    let committed = latencies.len() as u64;
    let window = latencies
        .iter()
        .map(|(_, at)| *at)
        .max()
        .map(|last| (last - began).as_secs_f64())
        .unwrap_or(load_secs)
        .max(load_secs);
    let mut ms: Vec<f64> = latencies.iter().map(|(l, _)| *l).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        ms[((ms.len() as f64 - 1.0) * p).round() as usize]
    };
    Figures {
        submitted,
        rejected,
        committed,
        window,
        tps: committed as f64 / window,
        p50: pct(0.5),
        p95: pct(0.95),
        p99: pct(0.99),
    }
}

pub async fn run(args: BenchArgs) -> Result<i32> {
    if args.rate == 0 || args.duration == 0 || args.accounts == Some(0) {
        bail!("--rate, --duration and --accounts must be positive");
    }
    let network = Network::load(&args.network)?;
    let accounts = match args.accounts {
        Some(n) => n,
        None => {
            let available = (1..)
                .take_while(|i| bench_key(&network, *i).exists())
                .count();
            let wanted = accounts_for(args.rate);
            if available == 0 {
                bail!(
                    "{} holds no bench accounts (bench/bench-1.json, …)",
                    network.accounts_dir.display()
                );
            }
            if available < wanted {
                eprintln!(
                    "bench: {wanted} accounts suit {} tx/s, the devnet has {available}: expect \
                     `nonce-too-far-ahead` refusals (devnet init --bench-accounts N)",
                    args.rate
                );
            }
            wanted.min(available)
        }
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let all_nodes: Vec<String> = network.nodes.iter().map(|n| n.api_url.clone()).collect();
    if all_nodes.is_empty() {
        bail!("the network has no nodes");
    }
    let mut keys = Vec::new();
    for i in 1..=accounts {
        keys.push(KeyFile::load(&bench_key(&network, i))?);
    }
    // The signer of the shards' reads: a bench account, a member account of org-2, which is in
    // every shard of the devnet.
    let reader = keys[0].signer()?;
    let chains: Vec<String> = if args.chain.is_empty() {
        vec![network.chain_id.clone()]
    } else {
        args.chain.clone()
    };
    // Pre-sign everything so signing never throttles the load.
    let total = (args.rate * args.duration) as usize;
    let run_id = trellis_node::chain::now_ms();
    // Tx overhead is about 150 bytes; the tag pads to the requested size (tags hold ≤ 64 bytes).
    let pad = args.tx_size.saturating_sub(150).min(64);
    let mut loads = Vec::new();
    for chain in &chains {
        let beacon = *chain == network.chain_id;
        let nodes: Vec<String> = network
            .nodes
            .iter()
            .filter(|n| beacon || n.chains.contains(chain))
            .map(|n| n.api_url.clone())
            .collect();
        let first = nodes
            .first()
            .ok_or_else(|| anyhow!("no node of the network hosts chain `{chain}`"))?
            .clone();
        let prefix = format!("/v1/chains/{chain}");
        let resp =
            crate::client::signed_get(&client, &first, &format!("{prefix}/status"), Some(&reader))
                .await?;
        if !resp.status().is_success() {
            bail!("chain `{chain}`: {}", crate::client::error_text(resp).await);
        }
        let status: serde_json::Value = resp.json().await?;
        let start_height = status["committed_height"].as_u64().unwrap_or(0);
        let shard = status["application"] == "shard";
        eprintln!("bench: {chain}: signing {total} transactions from {accounts} accounts…");
        let mut signers = Vec::new();
        for key in &keys {
            let nonce = crate::client::chain_account_nonce(
                &client,
                &first,
                Some(chain),
                &key.public_key,
                Some(&reader),
            )
            .await?;
            signers.push((key.signer()?, nonce));
        }
        let mut txs: Vec<(Digest, Vec<u8>)> = Vec::with_capacity(total);
        for i in 0..total {
            let (signer, nonce) = &mut signers[i % accounts];
            let mut seed = Vec::with_capacity(16);
            seed.extend_from_slice(&run_id.to_be_bytes());
            seed.extend_from_slice(&(i as u64).to_be_bytes());
            let digest = Digest::of(&seed);
            let tag = Tag::parse(&"b".repeat(pad)).map_err(|e| anyhow!("tag: {e}"))?;
            // A shard takes business records: a salted commitment per key, never the payload.
            let tx = if shard {
                let key = format!("{run_id}-{i}");
                Transaction::sign(
                    chain,
                    signer,
                    *nonce,
                    ShardAction::PutRecord {
                        collection: Collection::parse("bench", "collection")
                            .map_err(|e| anyhow!("{e}"))?,
                        key: RecordKey::parse(&key, "key").map_err(|e| anyhow!("{e}"))?,
                        commitment: digest,
                        ciphertext: None,
                        schema: Collection::parse("bench.v1", "schema")
                            .map_err(|e| anyhow!("{e}"))?,
                    },
                )
            } else {
                Transaction::sign(chain, signer, *nonce, BeaconAction::Anchor { digest, tag })
            };
            *nonce += 1;
            txs.push((tx.hash(), tx.encoded().to_vec()));
        }
        loads.push(ChainLoad {
            chain_id: chain.clone(),
            prefix,
            nodes,
            txs,
            sent: Arc::new(Mutex::new(HashMap::with_capacity(total))),
            seen: Arc::new(Mutex::new(Vec::with_capacity(total))),
            rejected: Arc::default(),
            reasons: Arc::default(),
            start_height,
        });
    }
    let size = loads
        .first()
        .and_then(|l| l.txs.first())
        .map(|t| t.1.len())
        .unwrap_or(0);
    eprintln!(
        "bench: {total} txs of {size} bytes per chain, {} tx/s for {} s on {}",
        args.rate,
        args.duration,
        chains.join(", ")
    );

    let per_tick = (args.rate / TICKS_PER_S).max(1) as usize;
    let cpu_before = nodes_cpu_micros(&client, &all_nodes).await;
    let began = Instant::now();
    let mut sends = Vec::new();
    let mut watchers = Vec::new();
    for load in &loads {
        watchers.push(tokio::spawn(watch_commits(
            client.clone(),
            load.nodes[0].clone(),
            load.prefix.clone(),
            reader.clone(),
            load.start_height,
            load.sent.clone(),
            load.seen.clone(),
        )));
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(1000 / TICKS_PER_S));
    let ticks = total.div_ceil(per_tick);
    for tick in 0..ticks {
        ticker.tick().await;
        for load in &loads {
            let Some(chunk) = load.txs.chunks(per_tick).nth(tick) else {
                continue;
            };
            let node = load.nodes[tick % load.nodes.len()].clone();
            let body = prost::Message::encode_to_vec(&trellis_types::pb::SignedTransactionBatch {
                txs: chunk.iter().map(|t| t.1.clone()).collect(),
            });
            let hashes: Vec<Digest> = chunk.iter().map(|t| t.0).collect();
            let url = format!("{node}{}/transactions", load.prefix);
            let (client, sent) = (client.clone(), load.sent.clone());
            let (rejected, reasons) = (load.rejected.clone(), load.reasons.clone());
            sends.push(tokio::spawn(async move {
                let now = Instant::now();
                {
                    let mut s = sent.lock().unwrap_or_else(|p| p.into_inner());
                    for h in &hashes {
                        s.insert(*h, now);
                    }
                }
                match client
                    .post(url)
                    .header(
                        "content-type",
                        format!("application/x-protobuf; {}", trellis_node::api::BATCH_PROTO),
                    )
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        let n = v["rejected"].as_u64().unwrap_or(0);
                        rejected.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        if n > 0 {
                            let mut reasons = reasons.lock().unwrap_or_else(|p| p.into_inner());
                            for item in v["results"].as_array().into_iter().flatten() {
                                if let Some(kind) = item["error"]["type"].as_str() {
                                    let kind = kind.rsplit('/').next().unwrap_or(kind);
                                    *reasons.entry(kind.to_string()).or_default() += 1;
                                }
                            }
                        }
                    }
                    Ok(r) => {
                        eprintln!(
                            "bench: batch refused: {}",
                            crate::client::error_text(r).await
                        );
                        rejected
                            .fetch_add(hashes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("bench: batch failed: {e}");
                        rejected
                            .fetch_add(hashes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for s in sends {
        let _ = s.await;
    }
    let load_secs = began.elapsed().as_secs_f64();
    let submitted_of =
        |l: &ChainLoad| l.txs.len() as u64 - l.rejected.load(std::sync::atomic::Ordering::Relaxed);
    // Give the tail up to 30 s to commit.
    let tail_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < tail_deadline {
        let done = loads.iter().all(|l| {
            l.seen.lock().unwrap_or_else(|p| p.into_inner()).len() as u64 >= submitted_of(l)
        });
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in watchers {
        w.abort();
    }
    let cpu_used = match (cpu_before, nodes_cpu_micros(&client, &all_nodes).await) {
        (Some((before, _)), Some((after, processes))) => {
            after.checked_sub(before).map(|us| (us, processes))
        }
        _ => None,
    };
    let mut all_latencies = Vec::new();
    let mut per_chain = serde_json::Map::new();
    let (mut all_submitted, mut all_rejected) = (0, 0);
    for load in &loads {
        let latencies = std::mem::take(&mut *load.seen.lock().unwrap_or_else(|p| p.into_inner()));
        let rejected = load.rejected.load(std::sync::atomic::Ordering::Relaxed);
        let f = figures(&latencies, submitted_of(load), rejected, began, load_secs);
        all_submitted += f.submitted;
        all_rejected += rejected;
        all_latencies.extend(latencies);
        let reasons = std::mem::take(&mut *load.reasons.lock().unwrap_or_else(|p| p.into_inner()));
        let why: Vec<String> = reasons.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(": {}", why.join(", "))
        };
        println!(
            "{}: submitted {} (rejected {}{why}) committed {} in {:.1} s; {:.0} tx/s; latency \
             p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            load.chain_id,
            f.submitted,
            f.rejected,
            f.committed,
            f.window,
            f.tps,
            f.p50,
            f.p95,
            f.p99
        );
        per_chain.insert(
            load.chain_id.clone(),
            serde_json::json!({
                "committed_tps": f.tps, "p50_ms": f.p50, "p95_ms": f.p95, "p99_ms": f.p99,
                "submitted": f.submitted, "committed": f.committed, "rejected": f.rejected,
            }),
        );
    }
    let all = figures(
        &all_latencies,
        all_submitted,
        all_rejected,
        began,
        load_secs,
    );
    if loads.len() > 1 {
        println!(
            "all chains: committed {} in {:.1} s; {:.0} tx/s; latency p50 {:.0} ms, p95 {:.0} ms, \
             p99 {:.0} ms",
            all.committed, all.window, all.tps, all.p50, all.p95, all.p99
        );
    }
    // Everything the nodes did from the first submission to the last commit seen, per
    // committed transaction: the load, consensus, storage, and the following of blocks.
    let cpu_per_tx = cpu_used
        .filter(|_| all.committed > 0)
        .map(|(us, _)| us as f64 / all.committed as f64);
    match (cpu_per_tx, cpu_used) {
        (Some(per_tx), Some((us, processes))) => println!(
            "nodes' CPU {per_tx:.0} µs per committed tx ({:.1} CPU-seconds in {processes} \
             node process(es))",
            us as f64 / 1e6
        ),
        _ => println!("nodes' CPU: not reported (a node without `{PROCESS_CPU_METRIC}`)"),
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "committed_tps": all.tps, "p50_ms": all.p50, "p95_ms": all.p95, "p99_ms": all.p99,
                "node_cpu_us_per_tx": cpu_per_tx,
                "submitted": all.submitted, "committed": all.committed, "rejected": all.rejected,
                "rate": args.rate, "duration_s": args.duration, "tx_bytes": size, "accounts": accounts,
                "chains": per_chain,
            })
        );
    }
    Ok(if all.committed == all.submitted { 0 } else { 2 })
}

/// Follows committed blocks and returns (latency ms, commit instant) for every bench tx seen.
async fn watch_commits(
    client: reqwest::Client,
    node: String,
    prefix: String,
    reader: trellis_types::Signer,
    mut height: u64,
    sent: Arc<Mutex<HashMap<Digest, Instant>>>,
    out: Arc<Mutex<Vec<(f64, Instant)>>>,
) {
    loop {
        let next = height + 1;
        let path = format!("{prefix}/blocks/{next}?txs=true");
        let resp = crate::client::signed_get(&client, &node, &path, Some(&reader)).await;
        let Ok(resp) = resp else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if !resp.status().is_success() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let now = Instant::now();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        height = next;
        let s = sent.lock().unwrap_or_else(|p| p.into_inner());
        for h in v["tx_hashes"].as_array().into_iter().flatten() {
            let Some(d) = h
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            if let Some(at) = s.get(&Digest(d)) {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(((now - *at).as_secs_f64() * 1e3, now));
            }
        }
    }
}

/// The CPU time (µs) the nodes' processes have used, summed, each process once (the
/// validators of one `trellis devnet` share one), and how many processes; `None` when a node cannot be read or does not
/// report it (then no per-transaction figure is printed rather than a partial one).
async fn nodes_cpu_micros(client: &reqwest::Client, nodes: &[String]) -> Option<(u64, usize)> {
    let mut processes: HashMap<(String, u64), u64> = HashMap::new();
    for node in nodes {
        let text = client
            .get(format!("{node}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let host = reqwest::Url::parse(node).ok()?.host_str()?.to_string();
        let pid = metric_value(&text, PROCESS_ID_METRIC)?;
        processes.insert((host, pid), metric_value(&text, PROCESS_CPU_METRIC)?);
    }
    let total = processes
        .values()
        .try_fold(0u64, |sum, us| sum.checked_add(*us))?;
    Some((total, processes.len()))
}

#[cfg(test)]
mod tests {
    use super::accounts_for;

    #[test]
    fn senders_are_sized_to_the_rate() {
        assert_eq!(accounts_for(1), 4);
        assert_eq!(accounts_for(1_000), 4);
        assert_eq!(accounts_for(10_500), 42);
        // The case that refused four in five transactions with 16 accounts.
        assert_eq!(accounts_for(12_000), 48);
        assert!(accounts_for(12_000) <= crate::devnet::DEFAULT_BENCH_ACCOUNTS);
    }
}
