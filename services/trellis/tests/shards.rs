//! The consortium devnet in this process: three member orgs with two nodes each, every node on
//! the beacon, shard `scf` on org-1's and org-2's nodes, shard `evidence` on org-2's and
//! org-3's, all over real mTLS, fjall and HTTP. Each chain commits; a transaction signed for one
//! chain is refused on the others; a node of a non-member org is refused a shard and holds none
//! of its blocks; a record's payload never reaches a block, a store file or an answer.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trellis::devnet::{self, Layout};
use trellis_node::node::{KeyFile, NodeConfig, RunningNode};
use trellis_types::shard_actions::{Collection, RecordKey};
use trellis_types::{BeaconAction, Digest, EncodeAction, ShardAction, Signer, Tag, Transaction};

const BEACON: &str = "consortium-test";

struct Consortium {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    network: devnet::Network,
    nodes: Vec<RunningNode>,
    client: reqwest::Client,
}

impl Consortium {
    async fn start() -> Consortium {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let network = devnet::init_layout(&dir, Layout::Consortium, 0, BEACON).expect("init");
        let mut nodes = Vec::new();
        for n in &network.nodes {
            nodes.push(
                trellis::apps::start_node(config(&n.config))
                    .await
                    .expect("node starts"),
            );
        }
        Consortium {
            _dir: tmp,
            dir,
            network,
            nodes,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].api_addr)
    }

    /// The index of the first node of `org`.
    fn node_of(&self, org: &str) -> usize {
        self.network
            .nodes
            .iter()
            .position(|n| n.org.as_deref() == Some(org))
            .expect("a node of the org")
    }

    async fn get(&self, i: usize, path: &str) -> (u16, Value) {
        self.read(i, path, None).await
    }

    /// A GET signed by `who`'s account key, as a shard's routes require.
    async fn read(&self, i: usize, path: &str, who: Option<&Signer>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.url(i)));
        if let Some(who) = who {
            let now = trellis_node::chain::now_ms();
            for (name, value) in trellis_types::request::sign_request(who, "GET", path, now, b"") {
                req = req.header(name, value);
            }
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn submit(&self, i: usize, chain: &str, tx: &Transaction) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/v1/chains/{chain}/transactions", self.url(i)))
            .header("content-type", "application/x-protobuf")
            .body(tx.encoded().to_vec())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `tx` is decided on node `i`; reads as member-2, whose org-2 is in both shards.
    async fn wait_committed(&self, i: usize, chain: &str, tx: &Transaction) -> Value {
        let path = format!("/v1/chains/{chain}/transactions/{}", tx.hash().to_hex());
        let reader = self.account("member-2");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (code, v) = self.read(i, &path, Some(&reader)).await;
            if code == 200 && v["status"] != "pending" {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{chain}: {} never committed on node {i}: {v}",
                tx.hash().to_hex()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn account(&self, name: &str) -> Signer {
        KeyFile::load(&self.dir.join(format!("accounts/{name}.json")))
            .expect("key file")
            .signer()
            .expect("signer")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        config(&self.network.nodes[i].config).data_dir
    }

    async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

fn config(path: &Path) -> NodeConfig {
    let env = vec![(
        "TRELLIS__TUNING__BASE_TIMEOUT_MS".to_string(),
        "500".to_string(),
    )];
    NodeConfig::load(path, env).expect("config")
}

fn sign(chain: &str, who: &Signer, nonce: u64, action: impl EncodeAction) -> Transaction {
    Transaction::sign(chain, who, nonce, action)
}

fn put_record(collection: &str, key: &str, payload: &[u8]) -> ShardAction {
    // What a data pool does: a fresh salt, the commitment over salt and payload; only the
    // commitment travels.
    let salt = [7u8; 32];
    ShardAction::PutRecord {
        collection: Collection::parse(collection, "collection").expect("collection"),
        key: RecordKey::parse(key, "key").expect("key"),
        commitment: Digest::of(&[salt.as_slice(), payload].concat()),
        ciphertext: None,
        schema: Collection::parse("invoice.v1", "schema").expect("schema"),
    }
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(p);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_beacon_and_two_shards_run_on_one_set_of_nodes() {
    let net = Consortium::start().await;
    let (org1, org2, org3) = (
        net.node_of("org-1"),
        net.node_of("org-2"),
        net.node_of("org-3"),
    );
    let (m1, m3) = (net.account("member-1"), net.account("member-3"));

    // Each node lists the chains it hosts.
    let (_, chains) = net.get(org2, "/v1/chains").await;
    let ids: Vec<&str> = chains["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .filter_map(|c| c["chain_id"].as_str())
        .collect();
    assert_eq!(ids, vec![BEACON, "evidence", "scf"], "{chains}");
    let (_, chains) = net.get(org3, "/v1/chains").await;
    assert_eq!(
        chains["chains"].as_array().map(Vec::len),
        Some(2),
        "{chains}"
    );

    // One transaction on each chain commits.
    let on_beacon = sign(
        BEACON,
        &m1,
        0,
        BeaconAction::Anchor {
            digest: Digest::of(b"beacon evidence"),
            tag: Tag::parse("b").expect("tag"),
        },
    );
    // The positive control of the scans below: this marker goes on chain in scf's blocks.
    let marker = "scf-on-chain-marker-5b1d";
    let on_scf = sign(
        "scf",
        &m1,
        0,
        put_record("invoices", marker, b"CANARY-PAYLOAD-scf-91f3"),
    );
    let on_evidence = sign(
        "evidence",
        &m3,
        0,
        ShardAction::Anchor {
            digest: Digest::of(b"evidence file"),
            tag: Tag::parse("e").expect("tag"),
        },
    );
    assert_eq!(net.submit(org1, BEACON, &on_beacon).await.0, 202);
    assert_eq!(net.submit(org1, "scf", &on_scf).await.0, 202);
    assert_eq!(net.submit(org3, "evidence", &on_evidence).await.0, 202);
    for (i, chain, tx) in [
        (org2, BEACON, &on_beacon),
        (org2, "scf", &on_scf),
        (org2, "evidence", &on_evidence),
    ] {
        let v = net.wait_committed(i, chain, tx).await;
        assert_eq!(v["status"], "committed", "{chain}: {v}");
    }

    // The record's proof from the shard's genesis: its commitment, never the payload.
    let genesis = trellis_types::Genesis::from_json(
        &std::fs::read_to_string(net.dir.join("genesis.json")).expect("genesis"),
    )
    .expect("genesis parses");
    let spec = trellis::apps::shard_spec(&genesis, "scf").expect("spec");
    let trust = trellis_types::GenesisTrust {
        chain_id: "scf".into(),
        digest: spec.origin,
        committee: trellis_consensus::Committee::new(spec.committee.clone()).expect("committee"),
    };
    let path = format!("/v1/chains/scf/proofs/record/invoices/{marker}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let bundle = loop {
        let (code, v) = net.read(org1, &path, Some(&m1)).await;
        if code == 200 && !v["value"].is_null() {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never provable: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!bundle.to_string().contains("CANARY"), "{bundle}");
    trellis_types::state_bundle::StateBundle::from_json(&bundle.to_string())
        .expect("a state bundle")
        .verify_against(&trust)
        .expect("the record's proof verifies against the shard's genesis");

    // A transaction signed for one chain is refused on every other.
    for (chain, tx) in [
        (BEACON, &on_scf),
        ("evidence", &on_scf),
        ("scf", &on_beacon),
    ] {
        let (code, v) = net.submit(org2, chain, tx).await;
        assert_eq!(code, 400, "{chain}: {v}");
        assert!(
            v["type"].as_str().unwrap_or("").ends_with("wrong-chain"),
            "{v}"
        );
    }
    // A member of org-3 may not write on scf, and the scf API is not org-3's node's to serve.
    let (code, _) = net
        .submit(
            org1,
            "scf",
            &sign("scf", &m3, 0, put_record("invoices", "x", b"y")),
        )
        .await;
    assert_eq!(code, 403, "org-3's account is not an scf account");
    let (code, v) = net.get(org3, "/v1/chains/scf/status").await;
    assert_eq!(code, 404, "org-3's node does not host scf: {v}");
    // scf answers its members only: unsigned 401, org-3's account 403, org-1's 200.
    let path = "/v1/chains/scf/blocks/latest";
    let (code, v) = net.get(org1, path).await;
    assert_eq!(code, 401, "{v}");
    let (code, v) = net.read(org1, path, Some(&m3)).await;
    assert_eq!(code, 403, "{v}");
    let (code, v) = net.read(org1, path, Some(&m1)).await;
    assert_eq!(code, 200, "{v}");
    // The beacon stays public.
    let (code, _) = net.get(org3, "/v1/chains/consortium-test/members").await;
    assert_eq!(code, 200);

    // A node of org-3 is refused a place on scf.
    let mut cfg = config(&net.network.nodes[org3].config);
    cfg.chains = vec![BEACON.into(), "scf".into()];
    cfg.p2p_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.api_listen = "127.0.0.1:0".parse().expect("addr");
    match trellis::apps::start_node(cfg).await {
        Err(e) => assert!(e.to_string().contains("not a member of shard `scf`"), "{e}"),
        Ok(_) => panic!("a node of org-3 started on scf"),
    }

    // Nothing of scf reaches a node of org-3; the marker does reach scf's members (the scan
    // finds what is there), and the payload reaches nobody.
    let wait = tokio::time::Instant::now() + Duration::from_secs(30);
    while files_holding(&net.data_dir(org2), marker.as_bytes()).is_empty() {
        assert!(
            tokio::time::Instant::now() < wait,
            "the marker never reached org-2's store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..net.nodes.len() {
        let org = net.network.nodes[i].org.clone().unwrap_or_default();
        let holds = !files_holding(&net.data_dir(i), marker.as_bytes()).is_empty();
        if org == "org-3" {
            assert!(!holds, "node {i} of org-3 holds scf data");
            assert!(!net.data_dir(i).join("chains/scf").exists());
        }
        assert!(
            files_holding(&net.data_dir(i), b"CANARY-PAYLOAD").is_empty(),
            "node {i} holds the payload"
        );
    }
    net.shutdown().await;
}

/// A store that fails under one chain of a node stops that chain there, and only there: the
/// node's other chains commit, the chain goes on at its other members, and the node reports
/// the stopped chain as unready instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_store_stops_only_its_chain() {
    let net = Consortium::start().await;
    let (org1, org2) = (net.node_of("org-1"), net.node_of("org-2"));
    let (m1, m2) = (net.account("member-1"), net.account("member-2"));
    net.nodes[org1]
        .chain("scf")
        .expect("org-1 hosts scf")
        .store
        .fail_commits();

    // scf goes on at org-1's other node and org-2's two: three of four.
    let tx = sign("scf", &m2, 0, put_record("orders", "po-1", b"order"));
    assert_eq!(net.submit(org2, "scf", &tx).await.0, 202);
    assert_eq!(
        net.wait_committed(org2, "scf", &tx).await["status"],
        "committed"
    );

    // The failing node's scf stops at its next commit, and says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = net.read(org1, "/v1/chains/scf/status", Some(&m1)).await;
        if v["halted"].is_string() {
            assert!(v["halted"].as_str().unwrap_or("").contains("commit"), "{v}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scf never stopped: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, v) = net.get(org1, "/readyz").await;
    assert_eq!(code, 503, "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("scf"), "{v}");
    let (code, v) = net
        .submit(
            org1,
            "scf",
            &sign("scf", &m1, 0, put_record("orders", "po-2", b"o")),
        )
        .await;
    assert_eq!(code, 503, "a stopped chain takes no transactions: {v}");

    // The same node's beacon still commits.
    let on_beacon = sign(
        BEACON,
        &m1,
        0,
        BeaconAction::Anchor {
            digest: Digest::of(b"still going"),
            tag: Tag::parse("b").expect("tag"),
        },
    );
    assert_eq!(net.submit(org1, BEACON, &on_beacon).await.0, 202);
    assert_eq!(
        net.wait_committed(org1, BEACON, &on_beacon).await["status"],
        "committed"
    );
    net.shutdown().await;
}

/// Governance removes org-1 on the beacon; the nodes relay the beacon's record of it into scf
/// as a certified update, and org-1's account can no longer write there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_on_the_beacon_can_no_longer_write_on_its_shards() {
    let net = Consortium::start().await;
    let org2 = net.node_of("org-2");
    let (m1, m2, m3) = (
        net.account("member-1"),
        net.account("member-2"),
        net.account("member-3"),
    );
    // Before: org-1 writes on scf.
    let before = sign("scf", &m1, 0, put_record("invoices", "inv-1", b"first"));
    assert_eq!(net.submit(org2, "scf", &before).await.0, 202);
    assert_eq!(
        net.wait_committed(org2, "scf", &before).await["status"],
        "committed"
    );

    // The beacon removes org-1: org-2 proposes, org-2 and org-3 vote yes (2 of 3).
    let org1 = trellis_types::OrgId::parse("org-1", "org").expect("org");
    let propose = sign(
        BEACON,
        &m2,
        0,
        BeaconAction::Propose(trellis_types::ProposalKind::RemoveMember { org: org1 }),
    );
    assert_eq!(net.submit(org2, BEACON, &propose).await.0, 202);
    let v = net.wait_committed(org2, BEACON, &propose).await;
    let id = v["proposal_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("a proposal id: {v}"));
    for (who, nonce) in [(&m2, 1), (&m3, 0)] {
        let vote = sign(
            BEACON,
            who,
            nonce,
            BeaconAction::Vote {
                proposal_id: id,
                approve: true,
            },
        );
        assert_eq!(net.submit(org2, BEACON, &vote).await.0, 202);
        assert_eq!(
            net.wait_committed(org2, BEACON, &vote).await["status"],
            "committed"
        );
    }
    let (_, member) = net.get(org2, "/v1/members/org-1").await;
    assert_eq!(member["status"], "removed", "{member}");
    let removed_at = member["removed_height"].as_u64().expect("removed height");

    // The relay carries it into scf: its trust moves past the removal, org-1 keeps no writer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = net.read(org2, "/v1/chains/scf/members", Some(&m2)).await;
        assert_eq!(code, 200, "{v}");
        let applied = v["beacon"]["applied_state_height"].as_u64().unwrap_or(0);
        let org1_keys = v["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["org"] == "org-1"))
            .and_then(|m| m["keys"].as_array().map(Vec::len))
            .unwrap_or(0);
        if applied >= removed_at && org1_keys == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scf never took the removal in: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = sign("scf", &m1, 1, put_record("invoices", "inv-2", b"second"));
    let (code, v) = net.submit(org2, "scf", &after).await;
    if code == 202 {
        let v = net.wait_committed(org2, "scf", &after).await;
        assert_eq!(v["status"], "rejected", "{v}");
    } else {
        assert_eq!(code, 403, "{v}");
    }
    // org-2 still writes.
    let still = sign("scf", &m2, 0, put_record("invoices", "inv-3", b"third"));
    assert_eq!(net.submit(org2, "scf", &still).await.0, 202);
    assert_eq!(
        net.wait_committed(org2, "scf", &still).await["status"],
        "committed"
    );
    net.shutdown().await;
}

/// A node of org-3 (not a member of scf) that connects with its real certificate and sends scf
/// frames anyway is refused at the channel: the frames are counted and dropped, none reaches
/// scf.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_member_node_is_refused_on_a_shards_channel() {
    let mut net = Consortium::start().await;
    let org1 = net.node_of("org-1");
    // The last node is org-3's second: stop it and speak with its identity instead.
    let last = net.nodes.len() - 1;
    assert_eq!(net.network.nodes[last].org.as_deref(), Some("org-3"));
    net.nodes.remove(last).shutdown().await;
    let cfg = config(&net.network.nodes[last].config);
    let signer = KeyFile::load(&cfg.key_file)
        .expect("key")
        .signer()
        .expect("signer");
    let read = |p: &Path| std::fs::read_to_string(p).expect("tls file");
    let tls = trellis_node::net::TlsMaterial {
        ca_pem: read(&cfg.tls.ca),
        cert_pem: read(&cfg.tls.cert),
        key_pem: read(&cfg.tls.key),
        crl_pems: vec![],
    };
    let target = config(&net.network.nodes[org1].config);
    let target_key = KeyFile::load(&target.key_file)
        .expect("key")
        .signer()
        .expect("signer")
        .public_key();
    let peer = trellis_node::net::PeerAddr {
        key: target_key,
        addr: target.p2p_listen.to_string(),
        server_name: "127.0.0.1".into(),
    };
    let (intruder, _inbound) = trellis_node::net::Network::start(
        trellis_node::net::NetConfig::new(cfg.p2p_listen, signer.public_key(), vec![peer]),
        tls,
    )
    .await
    .expect("the intruder's network starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !intruder.connected_peers().contains(&target_key) {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A well-formed scf transaction from an scf member, sent over org-3's connection.
    let tx = sign(
        "scf",
        &net.account("member-1"),
        0,
        put_record("x", "smuggled", b"y"),
    );
    let frame = trellis_types::wire::encode_frame(
        "scf",
        &trellis_types::NetMessage::Txs(vec![tx.encoded().to_vec()]),
    );
    let refused = "trellis_net_refused_frames_total{chain=\"scf\"}";
    let metric = |text: &str| trellis_node::api::metric_value(text, refused);
    loop {
        intruder.send(&target_key, frame.clone().into());
        let text = net
            .client
            .get(format!("{}/metrics", net.url(org1)))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metric(&text) > Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Refused, so never pooled: the transaction is unknown to scf.
    let (code, v) = net
        .read(
            org1,
            &format!("/v1/chains/scf/transactions/{}", tx.hash().to_hex()),
            Some(&net.account("member-1")),
        )
        .await;
    assert_eq!(code, 404, "{v}");
    intruder.shutdown().await;
    net.shutdown().await;
}
