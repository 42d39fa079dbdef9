//! Four `trellis node` processes from `trellis devnet init`, under load; one validator is
//! killed with SIGKILL mid-load and restarted. Every accepted transaction commits exactly once
//! and all validators agree on blocks and state roots. Then the same for the consortium layout:
//! six processes, the beacon and shards `scf` and `evidence` loaded at once, a node of the
//! beacon's committee and of `scf` killed and restarted.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use trellis::devnet::{Layout, Network, init_layout};
use trellis_node::node::KeyFile;
use trellis_types::shard_actions::{Collection, RecordKey};
use trellis_types::{BeaconAction, Digest, ShardAction, Signer, Tag, Transaction};

const BIN: &str = env!("CARGO_BIN_EXE_trellis");

fn spawn_node(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(BIN)
        .args(["node", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn trellis node")
}

struct Killer(Vec<Child>);
impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Option<Value> {
    let resp = client.get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn height(client: &reqwest::Client, api: &str) -> u64 {
    get(client, &format!("{api}/v1/status"))
        .await
        .and_then(|v| v["committed_height"].as_u64())
        .unwrap_or(0)
}

async fn wait_for(client: &reqwest::Client, api: &str, h: u64) {
    for _ in 0..1200 {
        if height(client, api).await >= h {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{api} never reached height {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_during_load_then_catch_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let out = Command::new(BIN)
        .args(["devnet", "init", "--dir"])
        .arg(dir)
        .args([
            "--validators",
            "4",
            "--bench-accounts",
            "4",
            "--chain-id",
            "proc-test",
        ])
        .output()
        .expect("devnet init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "genesis.json",
        "network.json",
        "accounts/member-1.json",
        "accounts/operator.json",
        "accounts/regulator.json",
        "accounts/bank.json",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let network = Network::load(&dir.join("network.json")).expect("network");
    let mut nodes = Killer(
        network
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| spawn_node(&n.config, &dir.join(format!("node-{i}.log"))))
            .collect(),
    );
    let client = reqwest::Client::new();
    let apis: Vec<String> = network.nodes.iter().map(|n| n.api_url.clone()).collect();
    for api in &apis {
        wait_for(&client, api, 2).await;
    }

    let signers: Vec<_> = (1..=4)
        .map(|i| {
            KeyFile::load(&dir.join(format!("accounts/bench/bench-{i}.json")))
                .and_then(|k| k.signer())
                .expect("bench key")
        })
        .collect();
    let mut accepted: Vec<Digest> = Vec::new();
    let mut nonces = [0u64; 4];
    let victim = 3;
    for round in 0..48u64 {
        if round == 15 {
            // SIGKILL: no chance to flush anything that was not already fsynced.
            nodes.0[victim].kill().expect("kill -9");
            let _ = nodes.0[victim].wait();
        }
        if round == 40 {
            // Let the others get well ahead, so the restarted node must state-sync.
            let h = height(&client, &apis[0]).await;
            wait_for(&client, &apis[0], h + 40).await;
            nodes.0[victim] = spawn_node(
                &network.nodes[victim].config,
                &dir.join("node-3-restarted.log"),
            );
        }
        let mut batch = Vec::new();
        let mut hashes = Vec::new();
        for k in 0..25u64 {
            let a = ((round * 25 + k) % 4) as usize;
            let tx = Transaction::sign(
                "proc-test",
                &signers[a],
                nonces[a],
                BeaconAction::Anchor {
                    digest: Digest::of(&[round.to_be_bytes(), k.to_be_bytes()].concat()),
                    tag: Tag::parse("load").expect("tag"),
                },
            );
            nonces[a] += 1;
            hashes.push(tx.hash());
            batch.push(hex::encode(tx.encoded()));
        }
        // Never the victim while it is down; rotate over the live ones.
        let target = (round % 3) as usize;
        let resp = client
            .post(format!("{}/v1/transactions", apis[target]))
            .json(&serde_json::json!({ "txs": batch }))
            .send()
            .await
            .expect("submit");
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.expect("json");
        for (h, r) in hashes.iter().zip(v["results"].as_array().expect("results")) {
            if r["status"] == "pending" {
                accepted.push(*h);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.len(), 1200, "every load transaction was valid");

    // Every accepted transaction commits, on every validator, including the restarted one.
    for api in &apis {
        for h in &accepted {
            let mut done = false;
            for _ in 0..600 {
                if let Some(v) =
                    get(&client, &format!("{api}/v1/transactions/{}", h.to_hex())).await
                {
                    if v["status"] == "committed" {
                        done = true;
                        break;
                    }
                    assert_ne!(v["status"], "rejected", "{v}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(done, "{} not committed on {api}", h.to_hex());
        }
    }

    // Exactly once: walk every block on the restarted validator and count each hash.
    let top = height(&client, &apis[victim]).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for h in 1..=top {
        let b = get(&client, &format!("{}/v1/blocks/{h}?txs=true", apis[victim]))
            .await
            .expect("block");
        for t in b["tx_hashes"].as_array().into_iter().flatten() {
            *seen
                .entry(t.as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    for h in &accepted {
        assert_eq!(
            seen.get(&h.to_hex()),
            Some(&1),
            "{} included {:?} times",
            h.to_hex(),
            seen.get(&h.to_hex())
        );
    }

    // Same head and state root everywhere at a common height.
    for api in &apis {
        wait_for(&client, api, top + 1).await;
    }
    let reference = get(&client, &format!("{}/v1/blocks/{top}", apis[0]))
        .await
        .expect("block");
    for api in &apis[1..] {
        let b = get(&client, &format!("{api}/v1/blocks/{top}"))
            .await
            .expect("block");
        assert_eq!(b["id"], reference["id"], "{api}");
        assert_eq!(b["state_root"], reference["state_root"], "{api}");
    }

    // The CLI end to end: anchor, fetch the bundle, verify it offline; a flipped byte fails.
    let digest = "ab".repeat(32);
    let out = Command::new(BIN)
        .args(["tx", "anchor", "--node", &apis[victim], "--key"])
        .arg(dir.join("accounts/member-1.json"))
        .args([digest.as_str(), "--tag", "contract-7"])
        .output()
        .expect("tx anchor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        // The node that reported the commit; another may not have executed that height yet.
        .args(["proof", "anchor", "--node", &apis[victim], digest.as_str()])
        .output()
        .expect("proof anchor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.join("bundle.json");
    std::fs::write(&bundle, &out.stdout).expect("write bundle");
    let verify = |path: &Path| {
        Command::new(BIN)
            .args(["verify", "--bundle"])
            .arg(path)
            .arg("--genesis")
            .arg(dir.join("genesis.json"))
            .output()
            .expect("verify")
    };
    let ok = verify(&bundle);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("VALID"));
    let text = String::from_utf8_lossy(&out.stdout).replacen("contract-7", "contract-8", 1);
    let tampered = dir.join("tampered.json");
    std::fs::write(&tampered, text.as_bytes()).expect("write");
    let bad = verify(&tampered);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).starts_with("INVALID"));
    // Bad CLI input: a one-line message and a non-zero exit.
    let out = Command::new(BIN)
        .args(["tx", "anchor", "--node", &apis[0], "--key"])
        .arg(dir.join("accounts/member-1.json"))
        .arg("not-hex")
        .output()
        .expect("tx anchor");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim().lines().count(),
        1
    );
}

// The consortium layout as six processes: three chains under load at once, one node killed.

/// The beacon's chain id.
const CONSORTIUM: &str = "proc-consortium";
/// The node killed mid-load: a seat of the beacon's committee and a validator of `scf`.
const VICTIM: &str = "org-1-node-1";
/// Load accounts of org-2, which is in both shards.
const BENCH: usize = 4;
/// The load sends `per_tick` transactions per chain every tick: about 200 tx/s in all.
const TICK: Duration = Duration::from_millis(100);
/// How many blocks of each of its chains the killed node misses. With one seat of four down,
/// every round it leads and the one before it end in a timeout: those chains commit about one
/// block in two seconds.
const MISSED: u64 = 10;
/// How many reads the checks have under way at once.
const PARALLEL: usize = 12;

/// One chain as the load and the checks see it.
struct Plan {
    id: String,
    shard: bool,
    /// The nodes hosting it (indices into the network file's nodes).
    hosts: Vec<usize>,
    /// Who signs its load: member accounts of its member orgs, by key file name.
    signers: Vec<(String, Signer)>,
    per_tick: usize,
}

/// The nodes' APIs, and a member account to sign reads of the shards with.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    names: Arc<Vec<String>>,
    urls: Arc<Vec<String>>,
    /// member-2: org-2 is a member of both shards.
    reader: Arc<Signer>,
}

impl Api {
    /// `GET /v1/chains/{chain}{rest}` on `node`, signed unless the chain is the (public) beacon.
    /// `None`: no answer (the node is down or starting).
    async fn read(&self, node: usize, chain: &str, rest: &str) -> Option<(u16, Value)> {
        let path = format!("/v1/chains/{chain}{rest}");
        let mut req = self.client.get(format!("{}{path}", self.urls[node]));
        if chain != CONSORTIUM {
            let now = trellis_node::chain::now_ms();
            for (name, value) in
                trellis_types::request::sign_request(&self.reader, "GET", &path, now, b"")
            {
                req = req.header(name, value);
            }
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Each chain `node` hosts: committed height and, if it stopped, why (`GET /v1/chains`).
    /// Empty while the node does not answer.
    async fn chains(&self, node: usize) -> BTreeMap<String, (u64, Option<String>)> {
        let Some(v) = get(&self.client, &format!("{}/v1/chains", self.urls[node])).await else {
            return BTreeMap::new();
        };
        v["chains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                Some((
                    c["chain_id"].as_str()?.to_string(),
                    (
                        c["committed_height"].as_u64()?,
                        c["halted"].as_str().map(str::to_string),
                    ),
                ))
            })
            .collect()
    }

    /// `chain`'s committed height on `node`; 0 while it does not answer.
    async fn height(&self, node: usize, chain: &str) -> u64 {
        self.chains(node).await.get(chain).map_or(0, |c| c.0)
    }

    async fn submit(&self, node: usize, chain: &str, tx: &[u8]) -> Result<(u16, Value), String> {
        let resp = self
            .client
            .post(format!(
                "{}/v1/chains/{chain}/transactions",
                self.urls[node]
            ))
            .header("content-type", "application/x-protobuf")
            .body(tx.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }
}

/// What the test tells the load, and what the load tells the test.
struct Control {
    /// Whether the load may send to each node.
    up: Vec<AtomicBool>,
    /// Requests under way to each node.
    inflight: Vec<AtomicUsize>,
    stop: AtomicBool,
    /// Every transaction a node answered 202 for, as it happens: (chain, hash, node).
    accepted: Mutex<Vec<(usize, Digest, usize)>>,
}

/// A request under way to `node`; it counts in `inflight` until dropped.
struct Slot {
    ctl: Arc<Control>,
    node: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctl.inflight[self.node].fetch_sub(1, Ordering::SeqCst);
    }
}

impl Control {
    fn new(nodes: usize) -> Control {
        Control {
            up: (0..nodes).map(|_| AtomicBool::new(true)).collect(),
            inflight: (0..nodes).map(|_| AtomicUsize::new(0)).collect(),
            stop: AtomicBool::new(false),
            accepted: Mutex::new(Vec::new()),
        }
    }

    /// The first node of `hosts` from position `start` on that is up, with the position.
    /// Counted in flight before `up` is read: once the test has marked a node down and seen
    /// nothing in flight to it, no request goes there.
    fn claim(self: &Arc<Self>, hosts: &[usize], start: usize) -> Option<(Slot, usize)> {
        (0..hosts.len()).find_map(|k| {
            let at = (start + k) % hosts.len();
            let node = hosts[at];
            self.inflight[node].fetch_add(1, Ordering::SeqCst);
            let slot = Slot {
                ctl: self.clone(),
                node,
            };
            self.up[node].load(Ordering::SeqCst).then_some((slot, at))
        })
    }
}

/// What became of one load transaction.
enum Outcome {
    /// A node answered 202.
    Accepted(usize),
    /// A request's answer was lost, and later its nonce was found used: it was admitted then
    /// and committed (no other transaction of the account has that nonce).
    LostThenUsed,
    /// Neither, by the deadline.
    Failed,
}

struct Fate {
    chain: usize,
    hash: Digest,
    outcome: Outcome,
    /// Every answer that was not a 202, by node.
    answers: Vec<String>,
}

fn problem_type(v: &Value) -> &str {
    v["type"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
}

/// The load's transaction number `seq` on a chain: a beacon anchor; on a shard, a record (its
/// salted commitment only) or an anchor. Digests and keys are unique, so none conflicts.
fn load_tx(plan: &Plan, who: &Signer, nonce: u64, seq: u64) -> Transaction {
    let digest = Digest::of(format!("{}/load/{seq}", plan.id).as_bytes());
    let tag = Tag::parse("load").expect("tag");
    if !plan.shard {
        return Transaction::sign(&plan.id, who, nonce, BeaconAction::Anchor { digest, tag });
    }
    if seq % 2 == 1 {
        return Transaction::sign(&plan.id, who, nonce, ShardAction::Anchor { digest, tag });
    }
    let salt = Digest::of(format!("salt/{seq}").as_bytes());
    let action = ShardAction::PutRecord {
        collection: Collection::parse("load", "collection").expect("collection"),
        key: RecordKey::parse(&format!("rec-{seq}"), "key").expect("key"),
        commitment: Digest::of(&[salt.0.as_slice(), b"payload"].concat()),
        ciphertext: None,
        schema: Collection::parse("load.v1", "schema").expect("schema"),
    };
    Transaction::sign(&plan.id, who, nonce, action)
}

/// Sends `tx` to a live host of its chain, starting at host position `start`, until one answers
/// 202; a refusal or a lost answer moves on to the next live host.
async fn submit_one(
    api: Api,
    ctl: Arc<Control>,
    plans: Arc<Vec<Plan>>,
    chain: usize,
    tx: Transaction,
    start: usize,
) -> Fate {
    let plan = &plans[chain];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fate = Fate {
        chain,
        hash: tx.hash(),
        outcome: Outcome::Failed,
        answers: Vec::new(),
    };
    let mut lost = false;
    let mut next = start;
    loop {
        if let Some((slot, at)) = ctl.claim(&plan.hosts, next) {
            let node = slot.node;
            let name = &api.names[node];
            match api.submit(node, &plan.id, tx.encoded()).await {
                Ok((202, _)) => {
                    // Recorded while the slot is held: the test sees it once nothing is in flight.
                    ctl.accepted
                        .lock()
                        .expect("accepted")
                        .push((chain, fate.hash, node));
                    fate.outcome = Outcome::Accepted(node);
                    return fate;
                }
                Ok((409, v)) if lost && problem_type(&v) == "nonce-used" => {
                    fate.answers.push(format!("{name}: 409 {v}"));
                    fate.outcome = Outcome::LostThenUsed;
                    return fate;
                }
                Ok((code, v)) => fate.answers.push(format!("{name}: {code} {v}")),
                Err(e) => {
                    lost = true;
                    fate.answers.push(format!("{name}: {e}"));
                }
            }
            next = at;
        }
        if Instant::now() > deadline {
            return fate;
        }
        next += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A steady stream on chain `chain` until told to stop: `per_tick` transactions every tick,
/// its accounts in turn, each transaction to the next host in turn (so one account's
/// consecutive nonces reach different nodes).
async fn run_load(api: Api, ctl: Arc<Control>, plans: Arc<Vec<Plan>>, chain: usize) -> Vec<Fate> {
    let plan = &plans[chain];
    let mut nonces = vec![0u64; plan.signers.len()];
    let mut sending = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !ctl.stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        for _ in 0..plan.per_tick {
            let a = (seq % plan.signers.len() as u64) as usize;
            let tx = load_tx(plan, &plan.signers[a].1, nonces[a], seq);
            nonces[a] += 1;
            sending.spawn(submit_one(
                api.clone(),
                ctl.clone(),
                plans.clone(),
                chain,
                tx,
                seq as usize,
            ));
            seq += 1;
        }
    }
    let mut fates = Vec::new();
    while let Some(f) = sending.join_next().await {
        fates.push(f.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    fates
}

/// Runs `f` on every item, at most [`PARALLEL`] at once; the results in the items' order.
async fn in_parallel<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    let n = items.len();
    for (i, item) in items.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let fut = f(item);
        set.spawn(async move {
            let r = fut.await;
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Polls `check` every 100 ms until it returns `Ok`; at `timeout`, fails with `what` and the
/// last `Err` (what is still missing).
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let missing = match check().await {
            Ok(()) => return,
            Err(m) => m,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not after {timeout:?}: {missing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `hash`'s status on `chain` at `node` until it is committed (or, with `pending_will_do`,
/// at least in the node's pool); the height it committed at (0 for pending). A rejection, or
/// nothing by `deadline`, fails naming chain, node and transaction.
async fn await_tx(
    api: Api,
    node: usize,
    chain: String,
    hash: Digest,
    deadline: Instant,
    pending_will_do: bool,
) -> u64 {
    let rest = format!("/transactions/{}", hash.to_hex());
    loop {
        let answer = api.read(node, &chain, &rest).await;
        if let Some((200, v)) = &answer {
            match v["status"].as_str() {
                Some("committed") => {
                    return v["height"].as_u64().unwrap_or_else(|| {
                        panic!(
                            "{chain}: {} on {}: no height: {v}",
                            hash.to_hex(),
                            api.names[node]
                        )
                    });
                }
                Some("pending") if pending_will_do => return 0,
                Some("rejected") => panic!(
                    "{chain}: {} was rejected on {}: {v}",
                    hash.to_hex(),
                    api.names[node]
                ),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "{chain}: {} not {} on {} in time; last answer {answer:?}",
            hash.to_hex(),
            if pending_will_do {
                "known"
            } else {
                "committed"
            },
            api.names[node]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node processes; killed when the test ends, and if it failed, the end of every node's log
/// goes to stderr.
struct Processes {
    children: Vec<Child>,
    configs: Vec<PathBuf>,
    names: Vec<String>,
    logs: Vec<PathBuf>,
    dir: PathBuf,
}

impl Processes {
    fn start(network: &Network, dir: &Path) -> Processes {
        let mut p = Processes {
            children: Vec::new(),
            configs: network.nodes.iter().map(|n| n.config.clone()).collect(),
            names: network.nodes.iter().map(|n| n.name.clone()).collect(),
            logs: Vec::new(),
            dir: dir.to_path_buf(),
        };
        for i in 0..p.configs.len() {
            let log = p.log(i, "");
            p.children.push(spawn_node(&p.configs[i], &log));
        }
        p
    }

    fn log(&mut self, i: usize, suffix: &str) -> PathBuf {
        let log = self.dir.join(format!("{}{suffix}.log", self.names[i]));
        self.logs.push(log.clone());
        log
    }

    /// SIGKILL: the node flushes nothing that was not already on disk.
    fn kill_nine(&mut self, i: usize) {
        self.children[i].kill().expect("kill -9");
        let _ = self.children[i].wait();
    }

    /// The same config, the same data directory, the same ports.
    fn restart(&mut self, i: usize) {
        let log = self.log(i, "-restarted");
        self.children[i] = spawn_node(&self.configs[i], &log);
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("==== {} (last 40 lines)", log.display());
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The consortium (three orgs, two nodes each; the beacon on all six, `scf` on org-1's and
/// org-2's, `evidence` on org-2's and org-3's) as six `trellis node` processes, loaded on all
/// three chains at once through every node. A node of the beacon's committee and of `scf` is
/// killed with SIGKILL mid-load and, once the others are well ahead, restarted with the same
/// config. Every chain catches up on every node hosting it; every transaction a node answered
/// 202 for is committed exactly once on its chain, on every replica; the replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consortium_kill_nine_during_load_on_three_chains() {
    let began = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let network = init_layout(dir, Layout::Consortium, BENCH, CONSORTIUM).expect("devnet init");
    let names: Vec<String> = network.nodes.iter().map(|n| n.name.clone()).collect();
    let victim = names
        .iter()
        .position(|n| n == VICTIM)
        .unwrap_or_else(|| panic!("no node {VICTIM} in {names:?}"));
    let mut procs = Processes::start(&network, dir);
    let key = |name: &str| {
        KeyFile::load(&dir.join(format!("accounts/{name}.json")))
            .and_then(|k| k.signer())
            .unwrap_or_else(|e| panic!("account {name}: {e}"))
    };
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        names: Arc::new(names.clone()),
        urls: Arc::new(network.nodes.iter().map(|n| n.api_url.clone()).collect()),
        reader: Arc::new(key("member-2")),
    };
    let plan = |id: &str, members: &[&str], per_tick: usize| Plan {
        id: id.to_string(),
        shard: id != CONSORTIUM,
        hosts: (0..names.len())
            .filter(|&i| network.nodes[i].chains.iter().any(|c| c == id))
            .collect(),
        signers: members
            .iter()
            .map(|m| m.to_string())
            .chain((1..=BENCH).map(|i| format!("bench/bench-{i}")))
            .map(|n| {
                let s = key(&n);
                (n, s)
            })
            .collect(),
        per_tick,
    };
    let plans = Arc::new(vec![
        plan(CONSORTIUM, &["member-1", "member-2", "member-3"], 8),
        plan("scf", &["member-1"], 6),
        plan("evidence", &["member-3"], 6),
    ]);
    let hosting = |p: &Plan| {
        p.hosts
            .iter()
            .map(|&i| names[i].as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        plans[0].hosts.len(),
        6,
        "the beacon: {:?}",
        hosting(&plans[0])
    );
    for p in &plans[1..] {
        assert_eq!(p.hosts.len(), 4, "{}: {:?}", p.id, hosting(p));
    }
    assert!(plans[1].hosts.contains(&victim) && !plans[2].hosts.contains(&victim));

    // Every node up, every chain it hosts committing.
    wait_until(
        "every chain starts on every node",
        Duration::from_secs(60),
        || {
            let api = api.clone();
            let network = &network;
            async move {
                let mut missing = Vec::new();
                for (i, n) in network.nodes.iter().enumerate() {
                    let chains = api.chains(i).await;
                    for c in &n.chains {
                        let h = chains.get(c).map_or(0, |c| c.0);
                        if h < 2 {
                            missing.push(format!("{c} on {} at {h}", n.name));
                        }
                    }
                }
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing.join(", "))
                }
            }
        },
    )
    .await;
    let loaded = Instant::now();

    let ctl = Arc::new(Control::new(names.len()));
    let mut load = tokio::task::JoinSet::new();
    for c in 0..plans.len() {
        load.spawn(run_load(api.clone(), ctl.clone(), plans.clone(), c));
    }
    // The load runs on all three chains through every node for a while.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The load leaves the victim; once nothing is in flight to it, every transaction it answered
    // 202 for has reached another node (its gossip), so the kill takes none of them along.
    ctl.up[victim].store(false, Ordering::SeqCst);
    wait_until(
        "requests to the victim end",
        Duration::from_secs(30),
        || {
            let n = ctl.inflight[victim].load(Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(())
                } else {
                    Err(format!("{n} in flight"))
                }
            }
        },
    )
    .await;
    let took: Vec<(usize, Digest)> = ctl
        .accepted
        .lock()
        .expect("accepted")
        .iter()
        .filter(|(_, _, n)| *n == victim)
        .map(|(c, h, _)| (*c, *h))
        .collect();
    assert!(!took.is_empty(), "{VICTIM} took no load before the kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    in_parallel(took.clone(), |(c, h)| {
        let other = plans[c].hosts.iter().copied().find(|&n| n != victim);
        await_tx(
            api.clone(),
            other.expect("another host"),
            plans[c].id.clone(),
            h,
            deadline,
            true,
        )
    })
    .await;
    let asked = Instant::now();
    let before = loop {
        let chains = api.chains(victim).await;
        if !chains.is_empty() || asked.elapsed() > Duration::from_secs(10) {
            break chains;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        before.len(),
        2,
        "{VICTIM} hosts the beacon and scf: {before:?}"
    );
    procs.kill_nine(victim);
    let killed_at = loaded.elapsed();

    // The others go on under load; the victim's chains get MISSED blocks past where it stopped,
    // so it has to sync what it missed.
    for (chain, (h, _)) in &before {
        let other = plans
            .iter()
            .find(|p| &p.id == chain)
            .and_then(|p| p.hosts.iter().copied().find(|&n| n != victim))
            .unwrap_or_else(|| panic!("{VICTIM} hosts {chain}, which has no plan"));
        let what = format!(
            "{chain} goes on without {VICTIM}: {} passes {}",
            names[other],
            h + MISSED
        );
        wait_until(&what, Duration::from_secs(90), || {
            let api = api.clone();
            async move {
                let now = api.height(other, chain).await;
                if now >= h + MISSED {
                    Ok(())
                } else {
                    Err(format!("at {now}"))
                }
            }
        })
        .await;
    }
    procs.restart(victim);
    wait_until(
        "the restarted node answers",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                if api.chains(victim).await.is_empty() {
                    Err("no answer".to_string())
                } else {
                    Ok(())
                }
            }
        },
    )
    .await;
    let restarted_at = loaded.elapsed();
    let mut behind = Vec::new();
    for (chain, (h, _)) in api.chains(victim).await {
        let other = plans
            .iter()
            .find(|p| p.id == chain)
            .and_then(|p| p.hosts.iter().copied().find(|&n| n != victim))
            .expect("another host");
        behind.push(format!(
            "{chain} at {h} of {}",
            api.height(other, &chain).await
        ));
    }
    // The load comes back to it while it catches up, and goes on a while on all six.
    ctl.up[victim].store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    ctl.stop.store(true, Ordering::SeqCst);
    let mut fates = Vec::new();
    while let Some(f) = load.join_next().await {
        fates.extend(f.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let load_time = loaded.elapsed();

    // Every load transaction was answered 202 by a node (or its answer was lost and it was
    // found committed by its nonce).
    let failed: Vec<String> = fates
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Failed))
        .map(|f| {
            format!(
                "{} {}: {}",
                plans[f.chain].id,
                f.hash.to_hex(),
                f.answers.join("; ")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} load transactions no node took:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let mut checked: Vec<Vec<Digest>> = vec![Vec::new(); plans.len()];
    let mut by_victim_after = 0;
    for f in &fates {
        checked[f.chain].push(f.hash);
        if matches!(f.outcome, Outcome::Accepted(n) if n == victim) {
            by_victim_after += 1;
        }
    }
    let by_victim_after = by_victim_after - took.len();

    // Catch-up: each chain reaches, on every node hosting it, the highest height any of them had
    // when the load stopped.
    let mut targets = Vec::new();
    for p in plans.iter() {
        let mut top = 0;
        for &n in &p.hosts {
            top = top.max(api.height(n, &p.id).await);
        }
        targets.push(top);
    }
    wait_until(
        "every chain catches up on every node hosting it",
        Duration::from_secs(90),
        || {
            let api = api.clone();
            let (plans, targets) = (plans.clone(), targets.clone());
            async move {
                let mut behind = Vec::new();
                for (p, target) in plans.iter().zip(&targets) {
                    for &n in &p.hosts {
                        let h = api.height(n, &p.id).await;
                        if h < *target {
                            behind.push(format!("{} on {} at {h} of {target}", p.id, api.names[n]));
                        }
                    }
                }
                if behind.is_empty() {
                    Ok(())
                } else {
                    Err(behind.join(", "))
                }
            }
        },
    )
    .await;
    let caught_up = loaded.elapsed();

    // Committed on every node hosting its chain, at the same height everywhere.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut heights: Vec<BTreeMap<Digest, u64>> = Vec::new();
    for (c, p) in plans.iter().enumerate() {
        let items: Vec<(usize, Digest)> = p
            .hosts
            .iter()
            .flat_map(|&n| checked[c].iter().map(move |h| (n, *h)))
            .collect();
        let found = in_parallel(items.clone(), |(n, h)| {
            await_tx(api.clone(), n, p.id.clone(), h, deadline, false)
        })
        .await;
        let mut at: BTreeMap<Digest, (u64, usize)> = BTreeMap::new();
        for ((n, h), height) in items.into_iter().zip(found) {
            let (first, by) = *at.entry(h).or_insert((height, n));
            assert_eq!(
                height,
                first,
                "{}: {} committed at {height} on {} but at {first} on {}",
                p.id,
                h.to_hex(),
                names[n],
                names[by]
            );
        }
        heights.push(at.into_iter().map(|(h, (height, _))| (h, height)).collect());
    }

    // Exactly once: scan every committed block of each chain up to a height every replica has
    // (on the restarted node where it hosts the chain) and count each hash; then every replica
    // has the same block and state root at that height.
    for (c, p) in plans.iter().enumerate() {
        let mut common = u64::MAX;
        for &n in &p.hosts {
            common = common.min(api.height(n, &p.id).await);
        }
        let highest = heights[c].values().copied().max().unwrap_or(0);
        assert!(
            common >= highest,
            "{}: a replica is at {common}, below {highest}, where it reported a load transaction committed",
            p.id
        );
        let scan = if p.hosts.contains(&victim) {
            victim
        } else {
            *p.hosts.last().expect("hosts")
        };
        let blocks = in_parallel((1..=common).collect(), |h| {
            let (api, id) = (api.clone(), p.id.clone());
            async move {
                match api.read(scan, &id, &format!("/blocks/{h}?txs=true")).await {
                    Some((200, b)) => b["tx_hashes"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{id}: block {h} on {}: {b}", api.names[scan]))
                        .iter()
                        .map(|t| t.as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>(),
                    other => panic!("{id}: block {h} on {}: {other:?}", api.names[scan]),
                }
            }
        })
        .await;
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (h, txs) in (1..=common).zip(blocks) {
            for t in txs {
                seen.entry(t).or_default().push(h);
            }
        }
        let twice: Vec<String> = seen
            .iter()
            .filter(|(_, hs)| hs.len() > 1)
            .map(|(t, hs)| format!("{t} at heights {hs:?}"))
            .collect();
        assert!(
            twice.is_empty(),
            "{}: on {}, transactions committed more than once:\n{}",
            p.id,
            names[scan],
            twice.join("\n")
        );
        for (h, height) in &heights[c] {
            assert_eq!(
                seen.get(&h.to_hex()),
                Some(&vec![*height]),
                "{}: {} is committed at {height} by its status, but the blocks on {} hold it at {:?}",
                p.id,
                h.to_hex(),
                names[scan],
                seen.get(&h.to_hex())
            );
        }
        let rest = format!("/blocks/{common}");
        let mut reference: Option<(usize, Value)> = None;
        for &n in &p.hosts {
            let b = match api.read(n, &p.id, &rest).await {
                Some((200, b)) => b,
                other => panic!("{}: block {common} on {}: {other:?}", p.id, names[n]),
            };
            match &reference {
                None => reference = Some((n, b)),
                Some((r, want)) => {
                    for field in ["id", "state_root"] {
                        assert_eq!(
                            b[field], want[field],
                            "{}: block {common}'s {field} on {} differs from {}'s",
                            p.id, names[n], names[*r]
                        );
                    }
                }
            }
        }
        eprintln!(
            "{}: {} load transactions committed once each, {} transactions in {common} blocks on {}, replicas agree at {common}",
            p.id,
            heights[c].len(),
            seen.len(),
            names[scan]
        );
    }
    // No chain stopped anywhere.
    for (i, n) in names.iter().enumerate() {
        for (chain, (_, halted)) in api.chains(i).await {
            assert!(halted.is_none(), "{chain} stopped on {n}: {halted:?}");
        }
    }
    eprintln!(
        "load {load_time:?} ({} txs; {VICTIM} killed at {killed_at:?} after taking {}, restarted at {restarted_at:?} with {}, took {by_victim_after} after), caught up at {caught_up:?}, whole test {:?}",
        fates.len(),
        took.len(),
        behind.join(", "),
        began.elapsed()
    );
}
