//! The approval path and its chain outbox, on PostgreSQL and SQLite, against the HTTP test
//! double of the node in [`common::fake_node`] (the same path on a real devnet is tested
//! elsewhere): the attestation and the proposal reach the chain in order with allocated
//! nonces; a slow chain answers 202 and finishes later; a nonce taken by someone else is
//! re-allocated; a beacon rejection marks the application `chain_failed`; and a service that
//! dies mid-way is resumed by the next one without losing or repeating anything.

mod common;

use common::fake_node::{FakeNode, NodeState};
use common::{Auth, Options, application, credit_code, org_key, resident_id, spawn};
use serde_json::{Value, json};
use sqlx::Row;
use std::time::Duration;
use trellis_identity::{IdentityFacts, commitment};
use trellis_servicekit::testing::{fresh_database, test_databases};
use trellis_servicekit::{Backend, Db, Keyring, Role, TokenConfig, TokenService};

fn verifier_hex() -> String {
    hex::encode(common::verifier().public_key().0)
}

/// How long a synchronous approval may wait for the chain when the test expects it to finish
/// (a 200): generous, as the answer comes as soon as the proposal is on the chain.
const SETTLES: Duration = Duration::from_secs(60);

/// Polls until `what` holds of the fake node's state; panics with `never` after 30 s.
async fn until_node(node: &FakeNode, never: &str, what: impl Fn(&NodeState) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        {
            let s = node.state.lock().unwrap();
            if what(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{never} (pending: {:?}, executed: {:?})",
                s.pending.keys().collect::<Vec<_>>(),
                s.executed
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the operator view of the service at `base` (as operator token `op`) until the
/// application has `status`, or panics after `within`.
async fn wait_for(base: &str, op: &str, id: &str, status: &str, within: Duration) -> Value {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v: Value = http
            .get(format!("{base}/v1/onboarding/applications/{id}"))
            .bearer_auth(op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == status {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status} within {within:?}, still {}: {v}",
            v["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the outbox lease until no process holds it (released, or never taken).
async fn wait_for_lease_released(db: &Db) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT expires_ms FROM identity_worker_lease WHERE name = 'outbox'",
        )
        .fetch_optional(db.pool())
        .await
        .unwrap();
        if held.is_none_or(|expires| expires == 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox lease was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outbox_rows(db: &Db) -> Vec<(String, String, i64)> {
    sqlx::query("SELECT kind, state, nonce FROM identity_outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn approval_attests_and_proposes() {
    for (backend, db) in test_databases().await {
        // One node per backend, so proposal ids and nonces start afresh.
        let node = FakeNode::start().await;
        let opts = Options {
            node: node.base.clone(),
            chain_wait: SETTLES,
            ..Options::default()
        };
        let app = spawn(backend, db, opts).await;
        node.add_account(&verifier_hex(), "operator", "ops", 5);
        let op = app.operator().await;
        let (id, token) = app.apply(&application(1)).await;
        let d = app.decide(&id, &json!({"approve": true}), &op).await;
        assert_eq!(d.status, 200, "{}", d.text);
        let v = d.json();
        assert_eq!(v["status"], "proposed", "{v}");
        assert_eq!(v["proposal_id"], 1);
        assert_eq!(v["proposal_status"], "open");
        assert_eq!(v["member_active"], false);
        assert_eq!(v["org"], credit_code(1));
        let attestation_tx = v["attestation_tx"].as_str().unwrap();
        assert_eq!(attestation_tx.len(), 64);

        // On chain: the attestation of the org key with the commitment, then the proposal;
        // nonces 5 and 6 of the verifier.
        assert_eq!(
            node.executed(),
            vec![
                format!("attest {}", org_key(1)),
                format!("propose {} {}", credit_code(1), org_key(1))
            ]
        );
        {
            let s = node.state.lock().unwrap();
            assert_eq!(s.accounts[&verifier_hex()].next_nonce, 7);
            assert_eq!(
                s.attestations[&org_key(1)],
                v["commitment"].as_str().unwrap()
            );
        }
        assert_eq!(
            outbox_rows(&app.db).await,
            vec![
                ("attest".into(), "done".into(), 5),
                ("propose".into(), "done".into(), 6)
            ]
        );

        // The commitment opens with the sealed salt and the verified facts, and nothing else.
        let row =
            sqlx::query("SELECT sealed_salt, commitment FROM identity_applications WHERE id = $1")
                .bind(&id)
                .fetch_one(app.db.pool())
                .await
                .unwrap();
        let sealed: Vec<u8> = row.get(0);
        let salt: [u8; 32] = app
            .pii
            .open(&sealed, format!("{id}/salt").as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let body = application(1);
        let facts = IdentityFacts {
            credit_code: &credit_code(1),
            legal_name: body["legal_name"].as_str().unwrap(),
            representative_name: "张三",
            representative_id_number: &resident_id("19491231"),
        };
        assert_eq!(commitment(&salt, &facts).to_hex(), row.get::<String, _>(1));

        // Members vote (elsewhere); the view follows the chain.
        node.pass_proposal(1);
        let mine = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &Auth::App(token),
            )
            .await
            .json();
        assert_eq!(mine["proposal_status"], "passed");
        assert_eq!(mine["member_active"], true);
        assert!(mine.get("commitment").is_none());

        // The next approval takes the next nonces.
        let (id2, _) = app.apply(&application(2)).await;
        let d = app.decide(&id2, &json!({"approve": true}), &op).await;
        assert_eq!(d.json()["status"], "proposed", "{}", d.text);
        assert_eq!(d.json()["proposal_id"], 2);
        assert_eq!(
            node.state.lock().unwrap().accounts[&verifier_hex()].next_nonce,
            9
        );
        // Approved once.
        app.decide(&id2, &json!({"approve": true}), &op)
            .await
            .problem(409);
    }
}

#[tokio::test]
async fn a_slow_chain_answers_202_and_a_taken_nonce_is_reallocated() {
    for (backend, db) in test_databases().await {
        let node = FakeNode::start().await;
        node.add_account(&verifier_hex(), "operator", "ops", 0);
        let opts = Options {
            node: node.base.clone(),
            chain_wait: Duration::from_millis(600),
            ..Options::default()
        };
        let app = spawn(backend, db, opts).await;
        let op = app.operator().await;
        let (id, _) = app.apply(&application(1)).await;
        node.set_hold(true);
        let d = app.decide(&id, &json!({"approve": true}), &op).await;
        assert_eq!(d.status, 202, "{}", d.text);
        assert_eq!(d.json()["status"], "approved");
        // The attestation (nonce 0) waits in the node; meanwhile another transaction of the
        // verifier account takes nonce 0.
        until_node(&node, "the attestation never reached the held node", |s| {
            !s.pending.is_empty()
        })
        .await;
        assert_eq!(node.state.lock().unwrap().pending.len(), 1);
        node.bump_nonce(&verifier_hex());
        node.set_hold(false);
        let op = app.token(Role::Operator, None).await;
        let v = wait_for(&app.base, &op, &id, "proposed", SETTLES).await;
        assert_eq!(v["proposal_id"], 1);
        assert_eq!(node.executed().len(), 2, "{:?}", node.executed());
        let rows = outbox_rows(&app.db).await;
        assert_eq!(
            rows,
            vec![
                ("attest".into(), "done".into(), 1),
                ("propose".into(), "done".into(), 2)
            ]
        );
    }
}

#[tokio::test]
async fn beacon_rejections_mark_chain_failed() {
    for (backend, db) in test_databases().await {
        let node = FakeNode::start().await;
        // The verifier is a member, not an operator: the beacon refuses its attestation.
        node.add_account(&verifier_hex(), "member", "ORG9", 0);
        let opts = Options {
            node: node.base.clone(),
            chain_wait: SETTLES,
            ..Options::default()
        };
        let app = spawn(backend, db.clone(), opts).await;
        let op = app.operator().await;
        let (id, token) = app.apply(&application(1)).await;
        let d = app.decide(&id, &json!({"approve": true}), &op).await;
        assert_eq!(d.status, 200, "{}", d.text);
        let v = d.json();
        assert_eq!(v["status"], "chain_failed");
        assert_eq!(v["chain_error"], "role-not-allowed");
        assert!(v.get("proposal_id").is_none());
        let rows = outbox_rows(&app.db).await;
        assert_eq!(rows[0].1, "failed");
        assert_eq!(rows[1].1, "cancelled");
        assert!(node.executed().is_empty());
        let mine = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &Auth::App(token),
            )
            .await
            .json();
        assert_eq!(mine["status"], "chain_failed");

        // The refused attestation still consumed its nonce (0) on the beacon; the cancelled
        // proposal's nonce (1) was never used. Once the verifier may attest, the same
        // enterprise applies again (a chain_failed application does not block it) and its
        // approval goes through on the account's next nonces, 1 and 2.
        {
            let mut s = node.state.lock().unwrap();
            let verifier = s.accounts.get_mut(&verifier_hex()).unwrap();
            assert_eq!(verifier.next_nonce, 1);
            verifier.role = "operator".into();
        }
        let (again, _) = app.apply(&application(1)).await;
        let d = app.decide(&again, &json!({"approve": true}), &op).await;
        assert_eq!(d.status, 200, "{}", d.text);
        assert_eq!(d.json()["status"], "proposed", "{}", d.text);
        assert_eq!(d.json()["proposal_id"], 1);
        assert_eq!(
            outbox_rows(&app.db).await,
            vec![
                ("attest".into(), "failed".into(), 0),
                ("propose".into(), "cancelled".into(), 1),
                ("attest".into(), "done".into(), 1),
                ("propose".into(), "done".into(), 2)
            ]
        );
        assert_eq!(
            node.state.lock().unwrap().accounts[&verifier_hex()].next_nonce,
            3
        );

        // A verifier that is no account at all.
        let node2 = FakeNode::start().await;
        let opts = Options {
            node: node2.base.clone(),
            chain_wait: SETTLES,
            ..Options::default()
        };
        let (db2, _) = fresh_database(backend).await;
        let app2 = spawn(backend, db2, opts).await;
        let (id2, _) = app2.apply(&application(2)).await;
        let d = app2
            .decide(&id2, &json!({"approve": true}), &app2.operator().await)
            .await;
        assert_eq!(d.json()["status"], "chain_failed", "{}", d.text);
        assert_eq!(d.json()["chain_error"], "unknown-account");
    }
}

/// A service on its own runtime, so that dropping the runtime kills it mid-way like a crash.
struct Doomed {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn start_doomed(backend: Backend, url: String, node: String, pii: Keyring, jwt: Keyring) -> Doomed {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let db = Db::connect(&url).await.unwrap();
            let tokens = TokenService::new(db.clone(), jwt, TokenConfig::default())
                .await
                .unwrap();
            let opts = Options {
                node,
                chain_wait: Duration::from_millis(500),
                ..Options::default()
            };
            let app = common::spawn_with(backend, db, tokens, pii, opts).await;
            tx.send(app.base.clone()).unwrap();
            let _ = stopped.await;
        });
        // Dropping the runtime cancels the server and the outbox worker where they are.
        rt.shutdown_background();
    });
    let base = rx.recv().unwrap();
    Doomed { base, stop, thread }
}

#[tokio::test]
async fn a_restart_loses_nothing_and_repeats_nothing() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let node = FakeNode::start().await;
        node.add_account(&verifier_hex(), "operator", "ops", 3);
        let (db, url) = fresh_database(backend).await;
        let pii = Keyring::generate("pii1").unwrap();
        let jwt = Keyring::generate("jwt1").unwrap();

        // The first process approves while the chain holds everything, then dies with the
        // attestation submitted and the proposal still queued.
        node.set_hold(true);
        let first = start_doomed(
            backend,
            url.clone(),
            node.base.clone(),
            pii.clone(),
            jwt.clone(),
        );
        let tokens = TokenService::new(db.clone(), jwt.clone(), TokenConfig::default())
            .await
            .unwrap();
        let op = tokens.issue("op", Role::Operator, None).await.unwrap().0;
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/v1/onboarding/applications", first.base))
            .json(&application(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let resp = http
            .post(format!(
                "{}/v1/onboarding/applications/{id}/decision",
                first.base
            ))
            .bearer_auth(&op)
            .json(&json!({"approve": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        until_node(&node, "the attestation never reached the held node", |s| {
            !s.pending.is_empty()
        })
        .await;
        assert_eq!(node.state.lock().unwrap().pending.len(), 1);
        first.stop.send(()).unwrap();
        first.thread.join().unwrap();

        // While it was down the chain committed the attestation.
        node.set_hold(false);
        assert_eq!(node.executed().len(), 1);

        // The next process picks the work up (once the dead one's lease lapses), records the
        // committed attestation without sending it again, and proposes.
        let second = start_doomed(
            backend,
            url.clone(),
            node.base.clone(),
            pii.clone(),
            jwt.clone(),
        );
        let v = wait_for(&second.base, &op, &id, "proposed", SETTLES).await;
        assert_eq!(v["proposal_id"], 1);
        assert_eq!(
            node.executed(),
            vec![
                format!("attest {}", org_key(1)),
                format!("propose {} {}", credit_code(1), org_key(1))
            ]
        );
        assert_eq!(
            node.state.lock().unwrap().accounts[&verifier_hex()].next_nonce,
            5
        );
        assert_eq!(
            outbox_rows(&db).await,
            vec![
                ("attest".into(), "done".into(), 3),
                ("propose".into(), "done".into(), 4)
            ]
        );
        // Its pass ends by releasing the lease; then it stops, so the third start below is the
        // only worker left.
        wait_for_lease_released(&db).await;
        second.stop.send(()).unwrap();
        second.thread.join().unwrap();

        // A third start finds nothing to do and sends nothing. Its worker looks at the outbox
        // as it starts; one more approval through it shows when that look is over: the only
        // worker left carries the new rows after that first pass and strictly in order, so
        // anything the restart sent would reach the node before them. The node then has
        // exactly the new application's two transactions more.
        let sent = node.state.lock().unwrap().submissions;
        let opts = Options {
            node: node.base.clone(),
            chain_wait: SETTLES,
            ..Options::default()
        };
        let third = common::spawn_with(backend, db.clone(), tokens, pii, opts).await;
        let (id2, _) = third.apply(&application(2)).await;
        let d = third
            .decide(&id2, &json!({"approve": true}), &Auth::Bearer(op.clone()))
            .await;
        assert_eq!(d.status, 200, "{}", d.text);
        assert_eq!(d.json()["status"], "proposed", "{}", d.text);
        assert_eq!(d.json()["proposal_id"], 2);
        assert_eq!(node.state.lock().unwrap().submissions, sent + 2);
        assert_eq!(
            node.executed(),
            vec![
                format!("attest {}", org_key(1)),
                format!("propose {} {}", credit_code(1), org_key(1)),
                format!("attest {}", org_key(2)),
                format!("propose {} {}", credit_code(2), org_key(2))
            ]
        );
        assert_eq!(
            outbox_rows(&db).await,
            vec![
                ("attest".into(), "done".into(), 3),
                ("propose".into(), "done".into(), 4),
                ("attest".into(), "done".into(), 5),
                ("propose".into(), "done".into(), 6)
            ]
        );
    }
}
