//! Four `trellis node` processes from `trellis devnet init`, under load; one validator is
//! killed with SIGKILL mid-load and restarted. Every accepted transaction commits exactly once
//! and all validators agree on blocks and state roots.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use trellis::devnet::Network;
use trellis_node::node::KeyFile;
use trellis_types::{BeaconAction, Digest, Tag, Transaction};

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
