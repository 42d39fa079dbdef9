//! A four-validator devnet in this process, over real mTLS, fjall and HTTP: anchors commit on
//! every validator with the same state, bad input is refused with problem+json while the node
//! keeps serving, a live proof bundle verifies offline and a tampered one does not (also right
//! after a restart, before anything new commits), and a validator that was stopped
//! catches up after restarting.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use trellis::devnet;
use trellis_node::api::{PROCESS_CPU_METRIC, metric_value};
use trellis_node::node::{KeyFile, NodeConfig, RunningNode};
use trellis_types::bundle::AnchorBundle;
use trellis_types::genesis::Genesis;
use trellis_types::{BeaconAction, Digest, Signer, Tag, Transaction, pb};

struct Devnet {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    network: devnet::Network,
    nodes: Vec<Option<RunningNode>>,
    client: reqwest::Client,
}

impl Devnet {
    async fn start(validators: usize) -> Devnet {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let network = devnet::init(&dir, validators, 2, "devnet-test").expect("init");
        let mut nodes = Vec::new();
        for n in &network.nodes {
            let config = load_config(&n.config);
            nodes.push(Some(
                trellis::apps::start_node(config)
                    .await
                    .expect("node starts"),
            ));
        }
        Devnet {
            _dir: tmp,
            dir,
            network,
            nodes,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, i: usize) -> String {
        format!(
            "http://{}",
            self.nodes[i].as_ref().expect("running").api_addr
        )
    }

    async fn get(&self, i: usize, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.url(i)))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post_tx(&self, i: usize, bytes: Vec<u8>) -> (u16, String, Value) {
        let resp = self
            .client
            .post(format!("{}/v1/transactions", self.url(i)))
            .header("content-type", "application/x-protobuf")
            .body(bytes)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (status, ct, resp.json().await.unwrap_or(Value::Null))
    }

    async fn wait_status(&self, i: usize, hash: &Digest, want: &str) -> Value {
        for _ in 0..300 {
            let (code, v) = self
                .get(i, &format!("/v1/transactions/{}", hash.to_hex()))
                .await;
            if code == 200 && v["status"] == want {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tx {} never became {want} on node {i}", hash.to_hex());
    }

    async fn wait_height(&self, i: usize, height: u64) {
        for _ in 0..1200 {
            let (_, v) = self.get(i, "/v1/status").await;
            if v["committed_height"].as_u64().unwrap_or(0) >= height {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {i} never reached height {height}");
    }

    fn account(&self, name: &str) -> Signer {
        KeyFile::load(&self.dir.join(format!("accounts/{name}.json")))
            .expect("key file")
            .signer()
            .expect("signer")
    }
}

/// Three test devnets share this process and two cores; a shorter round timeout keeps a
/// committee with a stopped member moving (its leader slots time out).
fn load_config(path: &Path) -> NodeConfig {
    let env = vec![(
        "TRELLIS__TUNING__BASE_TIMEOUT_MS".to_string(),
        "500".to_string(),
    )];
    let config = NodeConfig::load(path, env).expect("config");
    assert_eq!(
        config.tuning.base_timeout_ms, 500,
        "environment override applies"
    );
    config
}

fn anchor_tx(signer: &Signer, nonce: u64, digest: Digest, tag: &str) -> Transaction {
    Transaction::sign(
        "devnet-test",
        signer,
        nonce,
        BeaconAction::Anchor {
            digest,
            tag: Tag::parse(tag).expect("tag"),
        },
    )
}

/// `trellis verify --json` and the Python verifier on the same files: their verdict lines.
fn both_verifiers(bundle: &Path, genesis: &Path) -> (Value, Value) {
    let run = |mut cmd: std::process::Command| {
        let out = cmd.output().expect("verifier runs");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{cmd:?}: {e}: {line}"))
    };
    let mut rust = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    rust.args(["verify", "--json", "--bundle"])
        .arg(bundle)
        .arg("--genesis")
        .arg(genesis);
    let mut python = std::process::Command::new("python3");
    python
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../verifiers/python/trellis_verify.py"))
        .args(["--json", "--bundle"])
        .arg(bundle)
        .arg("--genesis")
        .arg(genesis);
    (run(rust), run(python))
}

fn genesis_file(dir: &Path) -> Genesis {
    let text = std::fs::read_to_string(dir.join("genesis.json")).expect("genesis");
    Genesis::from_json(&text).expect("genesis parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anchors_commit_everywhere_and_prove_offline() {
    let mut net = Devnet::start(4).await;
    let member = net.account("member-1");
    let mut hashes = Vec::new();
    for n in 0..6u64 {
        let tx = anchor_tx(&member, n, Digest::of(&n.to_be_bytes()), "evidence");
        let (code, ct, body) = net.post_tx((n % 4) as usize, tx.encoded().to_vec()).await;
        assert_eq!(code, 202, "{body}");
        assert!(ct.starts_with("application/json"));
        hashes.push(tx.hash());
    }
    let mut top = 0;
    for h in &hashes {
        for i in 0..4 {
            let v = net.wait_status(i, h, "committed").await;
            top = top.max(v["height"].as_u64().unwrap_or(0));
        }
    }
    // Same blocks and state on every validator.
    for i in 0..4 {
        net.wait_height(i, top + 2).await;
    }
    let (_, reference) = net.get(0, &format!("/v1/blocks/{top}")).await;
    for i in 1..4 {
        let (_, b) = net.get(i, &format!("/v1/blocks/{top}")).await;
        assert_eq!(b["id"], reference["id"], "node {i} block {top}");
        assert_eq!(b["state_root"], reference["state_root"]);
    }
    // The metrics count what committed, and the CPU time the process used.
    let metrics = net
        .client
        .get(format!("{}/metrics", net.url(0)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let committed = metric_value(
        &metrics,
        "trellis_chain_txs_committed_total{chain=\"devnet-test\"}",
    );
    assert!(committed >= Some(6), "{metrics}");
    if cfg!(target_os = "linux") {
        assert!(
            metric_value(&metrics, PROCESS_CPU_METRIC) > Some(0),
            "{metrics}"
        );
    }

    // A proof bundle from the live network verifies offline; a tampered copy does not.
    let digest = Digest::of(&3u64.to_be_bytes());
    let mut bundle = Value::Null;
    for _ in 0..100 {
        let (code, v) = net
            .get(1, &format!("/v1/anchors/{}", digest.to_hex()))
            .await;
        if code == 200 {
            bundle = v;
            break;
        }
        assert_eq!(code, 409, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = serde_json::to_string(&bundle).expect("json");
    let genesis = genesis_file(&net.dir);
    let parsed = AnchorBundle::from_json(&text).expect("bundle parses");
    let verdict = parsed.verify(&genesis).expect("bundle verifies");
    assert_eq!(verdict.digest, digest);
    // `trellis verify` and the second verifier, written from docs/proof-format.md, agree on the
    // live bundle and on a tampered copy.
    let bundle_file = net.dir.join("bundle.json");
    std::fs::write(&bundle_file, &text).expect("write bundle");
    let genesis_path = net.dir.join("genesis.json");
    let (rust, python) = both_verifiers(&bundle_file, &genesis_path);
    assert_eq!(rust["valid"], true, "{rust}");
    assert_eq!(rust, python);
    assert_eq!(rust["digest"], digest.to_hex());
    let resigned = text.replacen(&verdict.tx_hash.to_hex(), &"00".repeat(32), 1);
    std::fs::write(&bundle_file, &resigned).expect("write bundle");
    let (rust, python) = both_verifiers(&bundle_file, &genesis_path);
    assert_eq!(rust["link"], "state-proof", "{rust}");
    assert_eq!(
        (&rust["link"], &rust["index"]),
        (&python["link"], &python["index"])
    );
    // The OpenAPI document describes exactly the fields the node serves.
    let (code, doc) = net.get(0, "/openapi.json").await;
    assert_eq!(code, 200);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let schemas = &doc["components"]["schemas"];
    let answer = &doc["paths"]["/v1/anchors/{digest}"]["get"]["responses"]["200"];
    assert_eq!(
        answer["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AnchorBundle"
    );
    for (schema, served) in [
        ("AnchorBundle", &bundle),
        ("AnchorRecord", &bundle["record"]),
        ("StateCommitment", &bundle["state"]),
    ] {
        let props = &schemas[schema]["properties"];
        assert_eq!(keys(props), keys(served), "{schema}");
        let mut required: Vec<String> =
            serde_json::from_value(schemas[schema]["required"].clone()).expect("required fields");
        required.sort();
        assert_eq!(required, keys(served), "{schema}: every field is required");
    }
    let tampered = text.replacen("evidence", "evidencf", 1);
    let broken = AnchorBundle::from_json(&tampered).map(|b| b.verify(&genesis));
    assert!(!matches!(broken, Ok(Ok(_))), "tampered bundle verified");

    // Unknown digest: 404 problem naming the field.
    let (code, v) = net
        .get(0, &format!("/v1/anchors/{}", "00".repeat(32)))
        .await;
    assert_eq!((code, v["field"].as_str()), (404, Some("digest")));

    // After a clean restart the latest head commits to a state a few heights back, and the
    // blocks after it changed the state (the chain is kept busy up to the shutdown). With one
    // validator of four back nothing new commits, and the anchor is still provable: the
    // shutdown flushed the tree up to that state and the start replayed the blocks above it.
    let mut first = None;
    for n in 6..40u64 {
        let tx = anchor_tx(&member, n, Digest::of(&n.to_be_bytes()), "busy");
        let (code, _, v) = net.post_tx(1, tx.encoded().to_vec()).await;
        assert_eq!(code, 202, "{v}");
        first.get_or_insert(tx.hash());
    }
    net.wait_status(1, &first.expect("submitted"), "committed")
        .await;
    for n in net.nodes.iter_mut() {
        n.take().expect("running").shutdown().await;
    }
    // The same chain id with another parameter is another genesis: the node refuses its store.
    let mut config = load_config(&net.network.nodes[1].config);
    let mut other = genesis.clone();
    other.params.max_block_txs += 1;
    let other_path = net.dir.join("other-genesis.json");
    std::fs::write(&other_path, other.to_json_pretty()).expect("write genesis");
    let real_path = std::mem::replace(&mut config.genesis, other_path);
    let refused = trellis::apps::start_node(config.clone()).await;
    let err = refused
        .err()
        .expect("another genesis is refused")
        .to_string();
    assert!(err.contains("made from another genesis"), "{err}");
    config.genesis = real_path;
    net.nodes[1] = Some(trellis::apps::start_node(config).await.expect("restart"));
    let (code, v) = net
        .get(1, &format!("/v1/anchors/{}", digest.to_hex()))
        .await;
    assert_eq!(code, 200, "{v}");
    let text = serde_json::to_string(&v).expect("json");
    let parsed = AnchorBundle::from_json(&text).expect("bundle parses");
    assert_eq!(parsed.verify(&genesis).expect("verifies").digest, digest);
    let (code, _) = net
        .get(1, &format!("/v1/anchors/{}", "00".repeat(32)))
        .await;
    assert_eq!(code, 404);
    for n in net.nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_problem_json_and_the_node_keeps_serving() {
    let net = Devnet::start(4).await;
    let member = net.account("member-2");
    let good = anchor_tx(&member, 0, Digest::of(b"first"), "ok");

    // Malformed bodies.
    let (code, ct, v) = net.post_tx(0, vec![0xff, 0x01, 0x02]).await;
    assert_eq!(code, 400, "{v}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(v["field"], "tx");
    let resp = net
        .client
        .post(format!("{}/v1/transactions", net.url(0)))
        .header("content-type", "application/json")
        .body("{\"tx\": 5}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = net
        .client
        .post(format!("{}/v1/transactions", net.url(0)))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"txs\": [\"{}\", \"zz\"]}}",
            hex::encode(good.encoded())
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["field"], "txs[1]");

    // The protobuf batch: malformed, empty, and one good and one forged transaction.
    let batch_ct = format!("application/x-protobuf; {}", trellis_node::api::BATCH_PROTO);
    let post_batch = |body: Vec<u8>| {
        net.client
            .post(format!("{}/v1/transactions", net.url(0)))
            .header("content-type", batch_ct.clone())
            .body(body)
            .send()
    };
    let resp = post_batch(vec![0xff, 0x01, 0x02]).await.expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["field"], "body", "{v}");
    let empty = prost::Message::encode_to_vec(&pb::SignedTransactionBatch { txs: vec![] });
    let resp = post_batch(empty).await.expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["field"], "txs", "{v}");
    let batched = anchor_tx(&net.account("member-1"), 0, Digest::of(b"batched"), "b");
    let mut forged_in_batch = anchor_tx(&net.account("member-1"), 1, Digest::of(b"f"), "f")
        .encoded()
        .to_vec();
    if let Some(last) = forged_in_batch.last_mut() {
        *last ^= 1;
    }
    let body = prost::Message::encode_to_vec(&pb::SignedTransactionBatch {
        txs: vec![batched.encoded().to_vec(), forged_in_batch],
    });
    let resp = post_batch(body).await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][0]["hash"], batched.hash().to_hex(), "{v}");
    assert_eq!(v["results"][1]["error"]["field"], "txs[1]", "{v}");
    net.wait_status(0, &batched.hash(), "committed").await;

    // Bad signature: flip the last byte (inside the signature).
    let mut forged = good.encoded().to_vec();
    if let Some(last) = forged.last_mut() {
        *last ^= 1;
    }
    let (code, ct, v) = net.post_tx(0, forged).await;
    assert_eq!(
        (code, ct.as_str()),
        (400, "application/problem+json"),
        "{v}"
    );

    // Unknown account.
    let stranger = Signer::from_seed([77; 32]);
    let (code, _, v) = net
        .post_tx(
            1,
            anchor_tx(&stranger, 0, Digest::of(b"x"), "x")
                .encoded()
                .to_vec(),
        )
        .await;
    assert_eq!(code, 403, "{v}");

    // Oversized.
    let (code, _, v) = net.post_tx(1, vec![0u8; 70 * 1024]).await;
    assert_eq!(code, 413, "{v}");

    // Wrong chain.
    let other = Transaction::sign(
        "another-chain",
        &member,
        0,
        BeaconAction::Anchor {
            digest: Digest::of(b"y"),
            tag: Tag::parse("t").expect("tag"),
        },
    );
    let (code, _, _) = net.post_tx(2, other.encoded().to_vec()).await;
    assert_eq!(code, 400);

    // The good one commits; replaying it afterwards is a used nonce.
    let (code, _, v) = net.post_tx(2, good.encoded().to_vec()).await;
    assert_eq!(code, 202, "{v}");
    net.wait_status(2, &good.hash(), "committed").await;
    // Until node 3 has committed it too, its pool holds it (a duplicate, not a replay).
    net.wait_status(3, &good.hash(), "committed").await;
    let (code, _, v) = net.post_tx(3, good.encoded().to_vec()).await;
    assert_eq!(code, 409, "{v}");

    // Execution-time rejection gets a receipt with the reason: a regulator may not anchor.
    let regulator = net.account("regulator");
    let denied = anchor_tx(&regulator, 0, Digest::of(b"reg"), "nope");
    let (code, _, v) = net.post_tx(0, denied.encoded().to_vec()).await;
    assert_eq!(code, 202, "{v}");
    let v = net.wait_status(0, &denied.hash(), "rejected").await;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("may not anchor"),
        "{v}"
    );

    // Unknown routes and bad paths are problems too; the node still serves.
    let (code, _) = net.get(0, "/v1/nope").await;
    assert_eq!(code, 404);
    let (code, v) = net.get(0, "/v1/blocks/abc").await;
    assert_eq!((code, v["field"].as_str()), (400, Some("height")));
    let (code, v) = net.get(0, "/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(v["chain_id"], "devnet-test");
    let (code, _) = net.get(0, "/openapi.json").await;
    assert_eq!(code, 200);
    for n in net.nodes {
        n.expect("running").shutdown().await;
    }
}

/// Every chain route is served per chain under `/v1/chains/{chain_id}` and, for the beacon, under
/// `/v1`; the beacon application's read routes are mounted by a node that does not know it, are
/// paginated, and refuse bad queries with problem+json naming the parameter.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chain_routes_are_served_per_chain_and_for_the_beacon_under_v1() {
    let net = Devnet::start(4).await;
    let (code, v) = net.get(0, "/v1/chains").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["beacon"], "devnet-test", "{v}");
    assert_eq!(v["chains"][0]["chain_id"], "devnet-test", "{v}");
    assert_eq!(v["chains"][0]["application"], "beacon", "{v}");

    // The same answers under both prefixes.
    for path in ["/status", "/members", "/governance/params", "/revocations"] {
        let (a, va) = net.get(0, &format!("/v1{path}")).await;
        let (b, vb) = net.get(0, &format!("/v1/chains/devnet-test{path}")).await;
        assert_eq!((a, b), (200, 200), "{path}: {va} {vb}");
        if path != "/status" {
            assert_eq!(va["height"].is_u64(), vb["height"].is_u64(), "{path}");
        }
    }
    let (_, status) = net.get(0, "/v1/chains/devnet-test/status").await;
    assert_eq!(status["application"], "beacon", "{status}");
    let committee: Vec<String> = genesis_file(&net.dir)
        .validators
        .iter()
        .map(|v| v.consensus_key.to_lowercase())
        .collect();
    assert_eq!(
        status["committee"],
        serde_json::json!(committee),
        "{status}"
    );
    // The beacon records the committee it decided for itself.
    let (code, v) = net
        .get(0, "/v1/chains/devnet-test/committees/devnet-test")
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["members"], serde_json::json!(committee), "{v}");

    // An unknown chain is a problem naming the chain id.
    let resp = net
        .client
        .get(format!("{}/v1/chains/elsewhere/status", net.url(0)))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["field"], "chain_id", "{v}");

    // Members come in pages, in org id order: the three genesis members, one per page.
    let (_, all) = net.get(0, "/v1/members").await;
    let mut paged = Vec::new();
    let mut path = "/v1/members?limit=1".to_string();
    loop {
        let (code, page) = net.get(0, &path).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["members"].as_array().map(Vec::len), Some(1), "{page}");
        paged.push(page["members"][0].clone());
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/members?limit=1&after={next}"),
            None => break,
        }
        assert!(paged.len() < 10, "pages do not end");
    }
    assert_eq!(paged.len(), 3);
    assert_eq!(serde_json::json!(paged), all["members"], "{all}");

    // Bad queries and paths of application routes.
    for (path, field) in [
        ("/v1/members?limit=0", "limit"),
        ("/v1/members?limit=x", "limit"),
        ("/v1/governance/proposals?status=won", "status"),
        ("/v1/governance/proposals?before=0", "before"),
        ("/v1/governance/proposals/abc", "id"),
        ("/v1/accounts/zz", "key"),
        ("/v1/chains/devnet-test/attestations/12", "key"),
    ] {
        let (code, v) = net.get(0, path).await;
        assert_eq!(
            (code, v["field"].as_str()),
            (400, Some(field)),
            "{path}: {v}"
        );
    }
    let (code, v) = net
        .get(0, "/v1/chains/devnet-test/members/no-such-org")
        .await;
    assert_eq!((code, v["field"].as_str()), (404, Some("org")), "{v}");
    let (code, _) = net.get(0, "/v1/chains/devnet-test/no/such/route").await;
    assert_eq!(code, 404);

    // A transaction submitted per chain commits and is found under both prefixes.
    let tx = anchor_tx(&net.account("member-1"), 0, Digest::of(b"per-chain"), "p");
    let resp = net
        .client
        .post(format!("{}/v1/chains/devnet-test/transactions", net.url(1)))
        .header("content-type", "application/x-protobuf")
        .body(tx.encoded().to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 202);
    net.wait_status(1, &tx.hash(), "committed").await;
    let (code, v) = net
        .get(
            1,
            &format!("/v1/chains/devnet-test/transactions/{}", tx.hash().to_hex()),
        )
        .await;
    assert_eq!(
        (code, v["status"].as_str()),
        (200, Some("committed")),
        "{v}"
    );

    // Proofs of any state key: an account's record, and an anchor that does not exist, each
    // verified against the genesis file; a changed value does not verify.
    let trust = trellis_types::GenesisTrust::new(&genesis_file(&net.dir)).expect("trust");
    let member1 = hex::encode(net.account("member-1").public_key().0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let bundle = loop {
        let (code, v) = net
            .get(
                0,
                &format!("/v1/chains/devnet-test/proofs/account/{member1}"),
            )
            .await;
        if code == 200 {
            break v;
        }
        assert_eq!(code, 409, "{v}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never provable: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let parsed = trellis_types::state_bundle::StateBundle::from_json(&bundle.to_string())
        .expect("a state bundle");
    let verdict = parsed.verify_against(&trust).expect("verifies");
    let account: pb::Account =
        prost::Message::decode(verdict.value.as_deref().expect("a value")).expect("an account");
    assert_eq!(account.org, "org-1");
    let mut forged = parsed.clone();
    forged.value = Some(b"not the account".to_vec());
    assert!(forged.verify_against(&trust).is_err());
    let nothing = hex::encode([0x5a; 32]);
    let (code, v) = net.get(0, &format!("/v1/proofs/anchor/{nothing}")).await;
    assert_eq!(code, 200, "{v}");
    assert!(v["value"].is_null(), "{v}");
    trellis_types::state_bundle::StateBundle::from_json(&v.to_string())
        .expect("a state bundle")
        .verify_against(&trust)
        .expect("the absence verifies");
    let (code, v) = net.get(0, "/v1/proofs/nonsense/1").await;
    assert_eq!((code, v["field"].as_str()), (400, Some("namespace")), "{v}");

    // The OpenAPI document lists both forms of the application's routes.
    let (_, doc) = net.get(0, "/openapi.json").await;
    for path in [
        "/v1/members",
        "/v1/chains/{chain_id}/members",
        "/v1/chains/{chain_id}/transactions",
        "/v1/transactions",
        "/v1/chains",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    for n in net.nodes {
        n.expect("running").shutdown().await;
    }
}

/// Deletes everything of the state tree from a node's store (its nodes, values, stale records
/// and the record of its last flush), keeping the committed blocks.
fn drop_state_tree(store: &Path) {
    let db = fjall::Database::builder(store).open().expect("fjall");
    for name in ["jmt_nodes", "jmt_values", "jmt_stale"] {
        let ks = db
            .keyspace(name, fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        let keys: Vec<Vec<u8>> = ks.iter().map(|g| g.key().expect("key").to_vec()).collect();
        assert!(!keys.is_empty() || name == "jmt_stale", "{name} is empty");
        for k in keys {
            ks.remove(k).expect("remove");
        }
    }
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .expect("meta");
    assert!(meta.get("tree").expect("meta/tree").is_some());
    meta.remove("tree").expect("remove meta/tree");
    db.persist(fjall::PersistMode::SyncAll).expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_validator_catches_up() {
    let mut net = Devnet::start(4).await;
    let member = net.account("member-3");
    // Stop validator 4; three of four still make a quorum.
    let stopped = net.nodes[3].take().expect("running");
    stopped.shutdown().await;
    // And its state tree is lost, as a crash before the genesis flush landed leaves it: the
    // restart rebuilds it from the genesis state by executing its committed blocks again.
    let config = load_config(&net.network.nodes[3].config);
    drop_state_tree(&trellis_node::node::chain_store_dir(
        &config.data_dir,
        "devnet-test",
    ));
    let mut last = Digest::default();
    for n in 0..5u64 {
        let tx = anchor_tx(&member, n, Digest::of(&[n as u8, 9]), "while-down");
        let (code, _, v) = net.post_tx((n % 3) as usize, tx.encoded().to_vec()).await;
        assert_eq!(code, 202, "{v}");
        last = tx.hash();
    }
    let v = net.wait_status(0, &last, "committed").await;
    let height = v["height"].as_u64().expect("height");
    net.wait_height(0, height + 20).await;
    net.nodes[3] = Some(trellis::apps::start_node(config).await.expect("restart"));
    net.wait_status(3, &last, "committed").await;
    net.wait_height(3, height + 25).await;
    let (_, a) = net.get(0, &format!("/v1/blocks/{}", height + 20)).await;
    let (_, b) = net.get(3, &format!("/v1/blocks/{}", height + 20)).await;
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["state_root"], b["state_root"]);
    for n in net.nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}
