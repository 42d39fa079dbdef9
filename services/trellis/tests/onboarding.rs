//! Onboarding end to end on a live four-validator devnet with three genesis member orgs, once
//! on SQLite and once on PostgreSQL: a fourth enterprise applies, an operator approves it (an
//! identity attestation and an admission proposal reach the beacon), two of the three members
//! vote yes with their org keys, the beacon admits it, the consortium CA issues its
//! certificate, and the new member's key then anchors evidence that commits. The services are
//! restarted in the middle of the flow and nothing is lost or duplicated. Refused votes (by a
//! non-member, twice, after expiry) change nothing on chain, and a canary planted in the
//! application's personal data reaches neither regulator nor bank nor the beacon.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use trellis::devnet;
use trellis::governance_cli;
use trellis::services::{RunningServices, ServicesConfig, Target};
use trellis_identity::domain::{credit_code_check_char, resident_id_check_char};
use trellis_node::node::{KeyFile, NodeConfig, RunningNode};
use trellis_servicekit::Backend;
use trellis_types::{BeaconAction, Digest, Signer, Tag, Transaction};

const CHAIN: &str = "onboarding-test";

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    nodes: Vec<RunningNode>,
    services: Option<RunningServices>,
    config: ServicesConfig,
    http: reqwest::Client,
}

impl World {
    async fn start(backend: Backend) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let network =
            devnet::init_layout(&dir, devnet::Layout::Consortium, 0, CHAIN).expect("init");
        let mut nodes = Vec::new();
        for n in &network.nodes {
            let env = vec![
                (
                    "TRELLIS__TUNING__BASE_TIMEOUT_MS".to_string(),
                    "500".to_string(),
                ),
                (
                    "TRELLIS__TUNING__CRL_POLL_MS".to_string(),
                    "200".to_string(),
                ),
            ];
            let config = NodeConfig::load(&n.config, env).expect("node config");
            nodes.push(
                trellis::apps::start_node(config)
                    .await
                    .expect("node starts"),
            );
        }
        let mut config = ServicesConfig::load(
            network.services_config.as_ref().expect("services config"),
            std::iter::empty(),
        )
        .expect("services config loads");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        if backend == Backend::Postgres {
            let (db, url) = trellis_servicekit::testing::fresh_database(Backend::Postgres).await;
            db.close().await;
            config.database_url = url;
        }
        let mut world = World {
            _tmp: tmp,
            dir,
            nodes,
            services: None,
            config,
            http: reqwest::Client::new(),
        };
        world.start_services().await;
        world
    }

    async fn start_services(&mut self) {
        let running = RunningServices::start(
            self.config.clone(),
            vec![Target::Identity, Target::Membership],
        )
        .await
        .expect("services start");
        self.services = Some(running);
    }

    async fn restart_services(&mut self) {
        if let Some(s) = self.services.take() {
            s.shutdown().await;
        }
        self.start_services().await;
    }

    fn api(&self) -> String {
        self.services.as_ref().expect("services running").url()
    }

    fn node(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].api_addr)
    }

    fn key_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("accounts/{name}.json"))
    }

    fn account(&self, name: &str) -> Signer {
        KeyFile::load(&self.key_file(name))
            .expect("key file")
            .signer()
            .expect("signer")
    }

    async fn token(&self, name: &str) -> String {
        governance_cli::login(&self.http, &self.api(), &self.account(name))
            .await
            .expect("login")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        (code, resp.text().await.unwrap_or_default())
    }

    async fn get_node(&self, path: &str) -> Value {
        let (code, body) = self
            .call(
                reqwest::Method::GET,
                format!("{}{path}", self.node(0)),
                None,
                None,
            )
            .await;
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json")
    }

    async fn stop(mut self) {
        if let Some(s) = self.services.take() {
            s.shutdown().await;
        }
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A unified social credit code with a valid check character.
fn credit_code(serial: u32) -> String {
    let prefix = format!("91110108MA{:07}", serial % 10_000_000);
    let bytes: [u8; 17] = prefix.as_bytes().try_into().expect("17 characters");
    format!(
        "{prefix}{}",
        credit_code_check_char(&bytes).expect("check char")
    )
}

/// A resident ID number (born 1985-04-12) with a valid check digit.
fn resident_id() -> String {
    let prefix = "11010519850412123";
    let bytes: [u8; 17] = prefix.as_bytes().try_into().expect("17 digits");
    format!(
        "{prefix}{}",
        resident_id_check_char(&bytes).expect("check digit")
    )
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).expect("random");
    seed
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && contains_bytes(&bytes, needle)
        {
            hits.push(p);
        }
    }
    hits
}

async fn onboarding_flow(backend: Backend) {
    let mut w = World::start(backend).await;
    let canary = format!("CANARY{}", hex::encode(&random_seed()[..6]).to_uppercase());
    let org_signer = Signer::from_seed(random_seed());
    let org_key = hex::encode(org_signer.public_key().0);
    let code = credit_code(u32::from_be_bytes(
        random_seed()[..4].try_into().expect("4"),
    ));
    let application = json!({
        "legal_name": "Fujian Coastal Supply Chain Co., Ltd.",
        "unified_social_credit_code": code,
        "legal_representative": { "name": format!("Li {canary}"), "id_number": resident_id() },
        "contact": { "email": format!("{}@example.com", canary.to_lowercase()), "phone": "+86 591 8888 0000" },
        "org_public_key": org_key,
    });

    // Apply through the CLI's code path, with an idempotency key: a retry is the same application.
    let file = w.dir.join("application.json");
    std::fs::write(&file, application.to_string()).expect("write application");
    let applied = governance_cli::member_apply(&w.api(), &file, Some("apply-1"))
        .await
        .expect("application accepted");
    let again = governance_cli::member_apply(&w.api(), &file, Some("apply-1"))
        .await
        .expect("idempotent retry");
    assert_eq!(applied["id"], again["id"]);
    let id = applied["id"].as_str().expect("id").to_string();
    let applicant_token = applied["token"].as_str().expect("token").to_string();
    // A second live application for the same credit code is refused.
    let (status, body) = w
        .call(
            reqwest::Method::POST,
            format!("{}/v1/onboarding/applications", w.api()),
            None,
            Some(application.clone()),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Regulator and bank never see the application; the canary is in no answer to them.
    let regulator = w.token("regulator").await;
    let bank = w.token("bank").await;
    for (who, token) in [("regulator", &regulator), ("bank", &bank)] {
        for path in [
            format!("/v1/onboarding/applications/{id}"),
            "/v1/onboarding/applications?status=pending".to_string(),
        ] {
            let (status, body) = w
                .call(
                    reqwest::Method::GET,
                    format!("{}{path}", w.api()),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(status, 403, "{who} {path}: {body}");
            assert!(!body.contains(&canary), "{who} saw the canary at {path}");
        }
    }
    // An enterprise cannot approve an application (its own or another's).
    let member1 = w.token("member-1").await;
    let (status, _) = w
        .call(
            reqwest::Method::POST,
            format!("{}/v1/onboarding/applications/{id}/decision", w.api()),
            Some(&member1),
            Some(json!({ "approve": true })),
        )
        .await;
    assert_eq!(status, 403);

    // The operator reviews (sees the application in the pending list) and approves through the
    // CLI's code path: attestation and admission proposal reach the beacon.
    let operator = w.token("operator").await;
    let pending = governance_cli::member_pending(&w.api(), &w.key_file("operator"))
        .await
        .expect("pending list");
    assert!(pending.to_string().contains(&id), "{pending}");
    let decided = governance_cli::member_decide(&w.api(), &w.key_file("operator"), &id, true, None)
        .await
        .expect("approval");
    assert!(
        ["approved", "attested", "proposed"].contains(&decided["status"].as_str().unwrap_or("")),
        "{decided}"
    );
    let app = wait_for("the admission proposal", || {
        let w = &w;
        let id = id.clone();
        let t = applicant_token.clone();
        async move {
            let v = governance_cli::member_status(&w.api(), &id, &t)
                .await
                .ok()?;
            v["proposal_id"].as_u64().map(|_| v)
        }
    })
    .await;
    let proposal = app["proposal_id"].as_u64().expect("proposal id");
    assert!(
        !app.to_string().contains(&resident_id()),
        "applicant view shows the ID number"
    );
    let attestation = w.get_node(&format!("/v1/attestations/{org_key}")).await;
    assert_eq!(attestation["level"], 2);

    // Restart the services in the middle of the flow: same application, same single proposal.
    w.restart_services().await;
    let after = governance_cli::member_status(&w.api(), &id, &applicant_token)
        .await
        .expect("status after restart");
    assert_eq!(after["proposal_id"].as_u64(), Some(proposal));
    let proposals = w.get_node("/v1/governance/proposals").await;
    let for_org: Vec<&Value> = proposals["proposals"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|p| p["org"] == code)
        .collect();
    assert_eq!(
        for_org.len(),
        1,
        "exactly one admission proposal: {proposals}"
    );

    // A non-member (the regulator's key) may not vote: refused, nothing changes on chain.
    let refused =
        governance_cli::governance_vote(&w.api(), &w.key_file("regulator"), proposal, true).await;
    assert!(refused.is_err(), "a regulator voted");
    let p = w
        .get_node(&format!("/v1/governance/proposals/{proposal}"))
        .await;
    assert_eq!(p["yes"], json!([]));
    assert_eq!(p["status"], "open");

    // Two of the three members vote yes with their org keys (the CLI's code path).
    let first = governance_cli::governance_vote(&w.api(), &w.key_file("member-1"), proposal, true)
        .await
        .expect("member-1 votes");
    assert_eq!(first["status"], "open");
    let nonce = |name: &'static str| {
        let w = &w;
        async move {
            let key = hex::encode(w.account(name).public_key().0);
            w.get_node(&format!("/v1/accounts/{key}")).await["next_nonce"].clone()
        }
    };
    let nonce_before = nonce("member-1").await;
    let double =
        governance_cli::governance_vote(&w.api(), &w.key_file("member-1"), proposal, true).await;
    let err = format!("{:#}", double.expect_err("a double vote was accepted"));
    assert!(err.contains("409"), "double vote: {err}");
    let p = w
        .get_node(&format!("/v1/governance/proposals/{proposal}"))
        .await;
    assert_eq!(
        p["yes"],
        json!(["org-1"]),
        "a refused vote changed the tally"
    );
    assert_eq!(
        nonce("member-1").await,
        nonce_before,
        "a refused vote reached the chain"
    );
    let second = governance_cli::governance_vote(&w.api(), &w.key_file("member-2"), proposal, true)
        .await
        .expect("member-2 votes");
    assert_eq!(second["status"], "passed", "{second}");
    let member = w.get_node(&format!("/v1/members/{code}")).await;
    assert_eq!(member["status"], "active");
    assert_eq!(member["keys"], json!([org_key]));
    let status = governance_cli::member_status(&w.api(), &id, &applicant_token)
        .await
        .expect("status");
    assert!(
        status.to_string().contains("active") || status.to_string().contains("passed"),
        "{status}"
    );

    // The consortium CA issues the new member's org certificate for its org key, 90 days.
    let certs = wait_for("the org certificate", || {
        let w = &w;
        let operator = operator.clone();
        let code = code.clone();
        async move {
            let (status, body) = w
                .call(
                    reqwest::Method::GET,
                    format!("{}/v1/ca/certificates?org={code}", w.api()),
                    Some(&operator),
                    None,
                )
                .await;
            let v = json(&body);
            (status == 200 && v["certificates"].as_array().is_some_and(|a| !a.is_empty()))
                .then_some(v)
        }
    })
    .await;
    let cert = &certs["certificates"][0];
    assert_eq!(cert["org"], code.as_str());
    assert_eq!(cert["status"], "active");
    assert_eq!(cert["public_key"], org_key.as_str());
    let days = (cert["not_after_ms"].as_i64().unwrap_or(0)
        - cert["not_before_ms"].as_i64().unwrap_or(0))
        / 86_400_000;
    assert_eq!(days, 90, "{cert}");

    // The new member's key now anchors evidence that commits.
    let tx = Transaction::sign(
        CHAIN,
        &org_signer,
        0,
        BeaconAction::Anchor {
            digest: Digest::of(canary.as_bytes()),
            tag: Tag::parse("first-invoice").expect("tag"),
        },
    );
    let (status, body) = w
        .call(
            reqwest::Method::POST,
            format!("{}/v1/transactions", w.node(1)),
            None,
            Some(json!({ "tx": hex::encode(tx.encoded()) })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let committed = wait_for("the new member's anchor", || {
        let w = &w;
        let hash = tx.hash().to_hex();
        async move {
            let (_, body) = w
                .call(
                    reqwest::Method::GET,
                    format!("{}/v1/transactions/{hash}", w.node(1)),
                    None,
                    None,
                )
                .await;
            let v = json(&body);
            (v["status"] == "committed" || v["status"] == "rejected").then_some(v)
        }
    })
    .await;
    assert_eq!(committed["status"], "committed", "{committed}");

    // Votes after expiry: shorten the voting period by a passed proposal (3 of 4 members now),
    // open a proposal, let it expire, then vote.
    let set = governance_cli::governance_propose(
        &w.api(),
        &w.key_file("member-1"),
        governance_cli::Proposal::Set {
            name: "proposal_ttl_blocks".into(),
            value: "4".into(),
        },
    )
    .await
    .expect("parameter proposal");
    let set_id = set["id"].as_u64().expect("id");
    for m in ["member-1", "member-2", "member-3"] {
        governance_cli::governance_vote(&w.api(), &w.key_file(m), set_id, true)
            .await
            .expect("vote on the parameter");
    }
    let params = w.get_node("/v1/governance/params").await;
    assert_eq!(params["proposal_ttl_blocks"], 4, "{params}");
    let short = governance_cli::governance_propose(
        &w.api(),
        &w.key_file("member-2"),
        governance_cli::Proposal::Set {
            name: "approval_threshold".into(),
            value: "3/4".into(),
        },
    )
    .await
    .expect("short-lived proposal");
    let short_id = short["id"].as_u64().expect("id");
    let expires = short["expires_height"].as_u64().expect("expires");
    wait_for("the proposal to expire", || {
        let w = &w;
        async move {
            let s = w.get_node("/v1/status").await;
            (s["state_height"].as_u64().unwrap_or(0) > expires + 1).then_some(s)
        }
    })
    .await;
    let nonce_before = nonce("member-3").await;
    let late =
        governance_cli::governance_vote(&w.api(), &w.key_file("member-3"), short_id, true).await;
    let err = format!("{:#}", late.expect_err("a vote after expiry was accepted"));
    assert!(err.contains("409"), "late vote: {err}");
    let p = w
        .get_node(&format!("/v1/governance/proposals/{short_id}"))
        .await;
    assert_eq!(p["status"], "expired");
    assert_eq!(p["yes"], json!([]));
    assert_eq!(
        nonce("member-3").await,
        nonce_before,
        "a late vote reached the chain"
    );

    // The canary is nowhere in what a regulator or bank can read, nor on the beacon.
    for token in [&regulator, &bank] {
        for path in [
            "/v1/members",
            "/v1/governance/proposals",
            &format!("/v1/ca/certificates?org={code}"),
        ] {
            let (_, body) = w
                .call(
                    reqwest::Method::GET,
                    format!("{}{path}", w.api()),
                    Some(token),
                    None,
                )
                .await;
            assert!(!body.contains(&canary), "canary leaked at {path}");
        }
    }
    for path in [
        "/v1/members".to_string(),
        "/v1/governance/proposals".to_string(),
        format!("/v1/attestations/{org_key}"),
    ] {
        let v = w.get_node(&path).await;
        assert!(
            !v.to_string().contains(&canary),
            "canary on the beacon at {path}"
        );
    }
    let lower = canary.to_lowercase();
    let nodes: Vec<PathBuf> = std::fs::read_dir(w.dir.join("nodes"))
        .expect("nodes dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(nodes.len(), 6, "the consortium's six nodes");
    for node_dir in &nodes {
        let node = node_dir.display();
        let data = node_dir.join("data");
        assert!(
            files_containing(&data, canary.as_bytes()).is_empty(),
            "canary in {node}'s store"
        );
        assert!(
            files_containing(&data, lower.as_bytes()).is_empty(),
            "canary email in {node}'s store"
        );
    }

    // Revocations are beacon transactions; the CA rewrites the CRL file and the nodes reload it
    // without restarting: the fourth node's certificate (serial 4) is revoked and its links
    // are cut (the first node then keeps four of its five peers).
    let genesis: Value = serde_json::from_str(
        &std::fs::read_to_string(w.dir.join("genesis.json")).expect("genesis"),
    )
    .expect("genesis json");
    let v4 = genesis["validators"][3]["consensus_key"]
        .as_str()
        .expect("key")
        .to_string();
    let (status, body) = w
        .call(
            reqwest::Method::POST,
            format!("{}/v1/ca/revocations", w.api()),
            Some(&member1),
            Some(json!({ "serial": "04", "reason": "key_compromise" })),
        )
        .await;
    assert_eq!(status, 403, "a member revoked a certificate: {body}");
    let (status, body) = w
        .call(
            reqwest::Method::POST,
            format!("{}/v1/ca/revocations", w.api()),
            Some(&operator),
            Some(json!({ "serial": "04", "reason": "key_compromise" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let revoked = w.get_node("/v1/revocations").await;
    assert_eq!(revoked["revocations"][0]["serial"], "04", "{revoked}");
    wait_for("the fourth node to be cut off", || {
        let w = &w;
        let v4 = v4.clone();
        async move {
            let s = w.get_node("/v1/status").await;
            let peers = s["peers"].as_array()?;
            (!peers.iter().any(|p| p == v4.as_str()) && peers.len() == 4).then_some(s)
        }
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboarding_on_sqlite() {
    onboarding_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn onboarding_on_postgres() {
    onboarding_flow(Backend::Postgres).await;
}
