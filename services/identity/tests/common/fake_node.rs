//! An HTTP test double of the few node client-API endpoints the identity service calls
//! (`/v1/accounts/{key}`, `/v1/transactions`, `/v1/transactions/{hash}`,
//! `/v1/governance/proposals/{id}`, `/v1/members/{org}`), with the beacon rules the outbox
//! depends on: per-account nonces that every executed transaction raises, a refused one
//! included (as the beacon does past its signature and nonce checks), attestations by operator
//! accounts only, admission proposals only for attested keys. Real transactions are
//! decoded and their signatures checked with `trellis_types`. End-to-end runs against a real
//! devnet are done elsewhere; this double lets the outbox's ordering, nonce and restart logic
//! be exercised here.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use trellis_types::{BeaconAction, ProposalKind, Transaction};

#[derive(Clone, Debug)]
pub struct Account {
    pub org: String,
    pub role: String,
    pub next_nonce: u64,
}

#[derive(Clone, Debug)]
pub struct TxRecord {
    pub status: &'static str,
    pub height: u64,
    pub reason_code: Option<String>,
    pub proposal_id: Option<u64>,
}

#[derive(Default)]
pub struct NodeState {
    pub accounts: HashMap<String, Account>,
    pub txs: HashMap<String, TxRecord>,
    /// Admitted, not yet executed: (sender hex, nonce) -> tx.
    pub pending: BTreeMap<(String, u64), Transaction>,
    /// While true, admitted transactions wait (a slow chain).
    pub hold: bool,
    pub height: u64,
    pub attestations: HashMap<String, String>,
    /// id -> (org, org key hex, status)
    pub proposals: BTreeMap<u64, (String, String, String)>,
    /// org -> keys
    pub members: HashMap<String, Vec<String>>,
    /// Members that were removed (still listed, with status `removed`).
    pub removed: HashSet<String>,
    /// Every executed transaction's action, in order, for duplicate checks.
    pub executed: Vec<String>,
    /// Submissions received (including duplicates).
    pub submissions: usize,
}

#[derive(Clone)]
pub struct FakeNode {
    pub base: String,
    pub state: Arc<Mutex<NodeState>>,
}

impl FakeNode {
    pub async fn start() -> FakeNode {
        let state = Arc::new(Mutex::new(NodeState::default()));
        let router = Router::new()
            .route("/v1/accounts/{key}", get(account))
            .route("/v1/transactions", post(submit))
            .route("/v1/transactions/{hash}", get(tx_status))
            .route("/v1/governance/proposals/{id}", get(proposal))
            .route("/v1/members/{org}", get(member))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        FakeNode {
            base: format!("http://{addr}"),
            state,
        }
    }

    pub fn add_account(&self, key_hex: &str, role: &str, org: &str, next_nonce: u64) {
        self.state.lock().unwrap().accounts.insert(
            key_hex.to_string(),
            Account {
                org: org.to_string(),
                role: role.to_string(),
                next_nonce,
            },
        );
    }

    pub fn set_hold(&self, hold: bool) {
        let mut s = self.state.lock().unwrap();
        s.hold = hold;
        if !hold {
            execute_ready(&mut s);
        }
    }

    /// Another transaction of `key` took its next nonce.
    pub fn bump_nonce(&self, key_hex: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(a) = s.accounts.get_mut(key_hex) {
            a.next_nonce += 1;
        }
    }

    pub fn pass_proposal(&self, id: u64) {
        let mut s = self.state.lock().unwrap();
        let Some((org, key, status)) = s.proposals.get_mut(&id) else {
            panic!("no proposal {id}");
        };
        *status = "passed".into();
        let (org, key) = (org.clone(), key.clone());
        s.members.insert(org, vec![key]);
    }

    /// `org` is an active member holding `key_hex`.
    pub fn add_member(&self, org: &str, key_hex: &str) {
        let mut s = self.state.lock().unwrap();
        s.removed.remove(org);
        s.members.insert(org.to_string(), vec![key_hex.to_string()]);
    }

    /// `org` was removed from the consortium.
    pub fn remove_member(&self, org: &str) {
        self.state.lock().unwrap().removed.insert(org.to_string());
    }

    pub fn executed(&self) -> Vec<String> {
        self.state.lock().unwrap().executed.clone()
    }
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({
            "type": format!("https://trellis.dev/problems/{kind}"),
            "title": status.canonical_reason(),
            "status": status.as_u16(),
            "detail": detail,
        })),
    )
        .into_response();
    resp.headers_mut()
        .insert("content-type", "application/problem+json".parse().unwrap());
    resp
}

type St = State<Arc<Mutex<NodeState>>>;

async fn account(State(st): St, Path(key): Path<String>) -> Response {
    let s = st.lock().unwrap();
    match s.accounts.get(&key) {
        Some(a) => Json(json!({
            "public_key": key, "org": a.org, "role": a.role, "next_nonce": a.next_nonce,
        }))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, "unknown-account", "no such account"),
    }
}

async fn submit(State(st): St, body: Bytes) -> Response {
    let tx = match Transaction::decode(&body, 64 * 1024) {
        Ok(tx) => tx,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-transaction",
                &e.to_string(),
            );
        }
    };
    if tx.verify_signature().is_err() {
        return problem(StatusCode::BAD_REQUEST, "bad-signature", "signature");
    }
    let hash = tx.hash().to_hex();
    let sender = hex::encode(tx.sender().0);
    let mut s = st.lock().unwrap();
    s.submissions += 1;
    let known = s.txs.contains_key(&hash)
        || s.pending
            .get(&(sender.clone(), tx.nonce()))
            .is_some_and(|p| p.hash() == tx.hash());
    if known {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"hash": hash, "status": "duplicate"})),
        )
            .into_response();
    }
    let Some(acct) = s.accounts.get(&sender) else {
        return problem(StatusCode::FORBIDDEN, "unknown-account", "sender");
    };
    if tx.nonce() < acct.next_nonce || s.pending.contains_key(&(sender.clone(), tx.nonce())) {
        return problem(StatusCode::CONFLICT, "nonce-used", "nonce used");
    }
    if tx.nonce() > acct.next_nonce + 1000 {
        return problem(StatusCode::CONFLICT, "nonce-too-far-ahead", "too far");
    }
    s.pending.insert((sender, tx.nonce()), tx);
    if !s.hold {
        execute_ready(&mut s);
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"hash": hash, "status": "pending"})),
    )
        .into_response()
}

/// Executes every pending transaction whose nonce is its account's next.
fn execute_ready(s: &mut NodeState) {
    loop {
        let ready: Option<(String, u64)> = s
            .pending
            .keys()
            .find(|(sender, nonce)| {
                s.accounts
                    .get(sender)
                    .is_some_and(|a| a.next_nonce == *nonce)
            })
            .cloned();
        let Some(k) = ready else { return };
        let tx = s.pending.remove(&k).expect("present");
        s.height += 1;
        let height = s.height;
        let role = s.accounts[&k.0].role.clone();
        let action = BeaconAction::decode(tx.action()).expect("the tests sign beacon actions");
        let outcome: Result<Option<u64>, &str> = match &action {
            BeaconAction::AttestIdentity {
                subject,
                commitment,
                ..
            } => {
                if role != "operator" {
                    Err("role-not-allowed")
                } else {
                    s.attestations
                        .insert(hex::encode(subject.0), commitment.to_hex());
                    s.executed
                        .push(format!("attest {}", hex::encode(subject.0)));
                    Ok(None)
                }
            }
            BeaconAction::Propose(ProposalKind::AdmitMember { org, org_key }) => {
                let key = hex::encode(org_key.0);
                if !s.attestations.contains_key(&key) {
                    Err("no-attestation")
                } else {
                    let id = s.proposals.len() as u64 + 1;
                    s.proposals
                        .insert(id, (org.as_str().to_string(), key.clone(), "open".into()));
                    s.executed.push(format!("propose {} {key}", org.as_str()));
                    Ok(Some(id))
                }
            }
            _ => Err("role-not-allowed"),
        };
        // Past the signature and nonce checks the nonce is consumed, whatever the action's fate.
        s.accounts.get_mut(&k.0).expect("account").next_nonce += 1;
        let record = match outcome {
            Ok(proposal_id) => TxRecord {
                status: "committed",
                height,
                reason_code: None,
                proposal_id,
            },
            Err(code) => TxRecord {
                status: "rejected",
                height,
                reason_code: Some(code.to_string()),
                proposal_id: None,
            },
        };
        s.txs.insert(tx.hash().to_hex(), record);
    }
}

async fn tx_status(State(st): St, Path(hash): Path<String>) -> Response {
    let s = st.lock().unwrap();
    if let Some(r) = s.txs.get(&hash) {
        return Json(json!({
            "hash": hash, "status": r.status, "height": r.height,
            "reason": r.reason_code, "reason_code": r.reason_code, "proposal_id": r.proposal_id,
        }))
        .into_response();
    }
    if s.pending.values().any(|t| t.hash().to_hex() == hash) {
        return Json(json!({"hash": hash, "status": "pending"})).into_response();
    }
    problem(StatusCode::NOT_FOUND, "unknown-transaction", "not seen")
}

async fn proposal(State(st): St, Path(id): Path<u64>) -> Response {
    let s = st.lock().unwrap();
    match s.proposals.get(&id) {
        Some((org, key, status)) => Json(json!({
            "id": id, "kind": "admit_member", "org": org, "org_key": key, "status": status,
        }))
        .into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-proposal",
            "no such proposal",
        ),
    }
}

async fn member(State(st): St, Path(org): Path<String>) -> Response {
    let s = st.lock().unwrap();
    match s.members.get(&org) {
        Some(keys) => {
            let status = if s.removed.contains(&org) {
                "removed"
            } else {
                "active"
            };
            Json(json!({"org": org, "status": status, "keys": keys, "admitted_height": 1}))
                .into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "unknown-member", "no such member"),
    }
}
