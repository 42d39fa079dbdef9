//! Test world of the membership service: a real database (each backend), a real HTTP server
//! for the service, and a stand-in for the node's client API that serves the JSON shapes of
//! `services/node/src/registry.rs` and `api.rs` from a small in-memory registry.
//!
//! The stand-in is a test double of a remote HTTP API, not of this crate: it keeps nonces,
//! appends revocations (refusing a serial twice with `already-revoked`), records votes, and can
//! be told to reject a transaction with a given beacon code or to lose one (a node restart
//! that wiped its pool). As the node and the beacon do, it executes an account's transactions
//! in nonce order only (one ahead of the account's next nonce waits in the pool for the gap to
//! fill), and a transaction refused past the nonce check still consumes its nonce. The real
//! beacon's rules are exercised by the devnet end-to-end tests.

#![allow(dead_code)] // each test file uses part of the harness

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trellis_membership::ca::{IssuingCa, RenewalPolicy};
use trellis_membership::{
    MemberView, MembershipConfig, MembershipService, ProposalView, RevocationView,
};
use trellis_servicekit::{Db, Keyring, NodeClient, Problem, Role, TokenConfig, TokenService};
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{BeaconAction, ProposalKind, Signer, Transaction};

pub const CHAIN_ID: &str = "trellis-test-beacon";

/// Deterministic keys of the test world.
pub fn signer(seed: u8) -> Signer {
    Signer::from_seed([seed; 32])
}
pub fn key_hex(s: &Signer) -> String {
    hex::encode(s.public_key().0)
}
pub fn org_a() -> Signer {
    signer(1)
}
pub fn org_b() -> Signer {
    signer(2)
}
pub fn org_c() -> Signer {
    signer(3)
}
pub fn operator() -> Signer {
    signer(9)
}

/// A chain account as the stand-in keeps it.
#[derive(Clone, Debug)]
pub struct Account {
    pub org: String,
    /// `member`, `operator`, `regulator` or `bank`.
    pub role: String,
    pub next_nonce: u64,
}

/// The stand-in node's registry.
#[derive(Default)]
pub struct ChainState {
    pub height: u64,
    pub members: Vec<MemberView>,
    pub accounts: HashMap<String, Account>,
    pub proposals: BTreeMap<u64, ProposalView>,
    pub revocations: Vec<RevocationView>,
    /// Decided transactions by hash: the `GET /v1/transactions/{hash}` answer.
    pub txs: HashMap<String, serde_json::Value>,
    /// Transactions to reject, by hash: (beacon code, reason).
    pub reject: HashMap<String, (String, String)>,
    /// Accept the next transaction and then forget it, as a restarted node would.
    pub lose_next: bool,
    /// (account key, nonce) held by another process's pending transaction: refused at
    /// admission as `nonce-used`, and committed (the nonce moves past it) before anything else
    /// of that account executes.
    pub taken: HashSet<(String, u64)>,
    /// (account key, nonce) held by another process's transaction that sits in the pool and
    /// does not execute: refused at admission as `nonce-used`; removing it (the transaction
    /// vanished) leaves the nonce free, and a gap if later nonces were submitted.
    pub held: HashSet<(String, u64)>,
    /// Transactions admitted ahead of their account's next nonce, by (account key, nonce):
    /// they execute once the nonces before them have.
    pub pool: BTreeMap<(String, u64), Vec<u8>>,
    /// Every transaction body submitted, in order.
    pub received: Vec<Vec<u8>>,
    /// How often `GET /v1/revocations` was read.
    pub revocation_reads: u64,
}

impl ChainState {
    /// Members org-a and org-b (active) and org-c (removed), their member accounts, and an
    /// operator account.
    pub fn consortium() -> ChainState {
        let mut st = ChainState {
            height: 10,
            ..ChainState::default()
        };
        for (org, s, active) in [
            ("org-a", org_a(), true),
            ("org-b", org_b(), true),
            ("org-c", org_c(), false),
        ] {
            st.members.push(MemberView {
                org: org.into(),
                status: if active { "active" } else { "removed" }.into(),
                keys: vec![key_hex(&s)],
                admitted_height: 0,
                removed_height: (!active).then_some(5),
                proposal_id: (!active).then_some(1),
            });
            st.accounts.insert(
                key_hex(&s),
                Account {
                    org: org.into(),
                    role: if active { "member" } else { "unspecified" }.into(),
                    next_nonce: 0,
                },
            );
        }
        st.accounts.insert(
            key_hex(&operator()),
            Account {
                org: "consortium-ops".into(),
                role: "operator".into(),
                next_nonce: 3,
            },
        );
        st
    }

    pub fn set_member_status(&mut self, org: &str, active: bool) {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.org == org)
            .expect("member");
        m.status = if active { "active" } else { "removed" }.into();
        m.removed_height = (!active).then_some(self.height);
    }

    /// Adds an open proposal and returns its id.
    pub fn open_proposal(&mut self, org: &str) -> u64 {
        let id = self.proposals.keys().last().copied().unwrap_or(0) + 1;
        self.proposals
            .insert(id, proposal_view(id, org, &key_hex(&org_a())));
        id
    }

    pub fn revoke(&mut self, serial_hex: &str, reason: u32) {
        self.height += 1;
        let revoker = key_hex(&operator());
        insert_revocation(
            &mut self.revocations,
            serial_hex,
            reason,
            self.height,
            revoker,
        );
    }
}

fn proposal_view(id: u64, org: &str, proposer: &str) -> ProposalView {
    ProposalView {
        id,
        kind: "admit_member".into(),
        org: Some(org.into()),
        org_key: Some(key_hex(&signer(40 + id as u8))),
        parameter: None,
        value: None,
        proposer: proposer.into(),
        status: "open".into(),
        created_height: 10,
        expires_height: 1000,
        electorate: 2,
        approval_num: 2,
        approval_den: 3,
        needed: 2,
        yes: vec![],
        no: vec![],
        decided_height: None,
    }
}

fn insert_revocation(
    list: &mut Vec<RevocationView>,
    serial_hex: &str,
    reason: u32,
    height: u64,
    revoker: String,
) {
    let key = |s: &str| hex::decode(s).expect("hex serial");
    let at = list
        .binary_search_by(|r| key(&r.serial).cmp(&key(serial_hex)))
        .expect_err("not revoked yet");
    list.insert(
        at,
        RevocationView {
            serial: serial_hex.to_string(),
            reason,
            height,
            revoker,
        },
    );
}

/// The stand-in node.
pub struct StubNode {
    pub state: Mutex<ChainState>,
}

impl StubNode {
    pub fn with<R>(&self, f: impl FnOnce(&mut ChainState) -> R) -> R {
        f(&mut self.state.lock().expect("stub state"))
    }
}

type St = State<Arc<StubNode>>;

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    Problem::new(status, kind, detail).into_response()
}

/// What executing `tx` does to the stand-in registry: `Ok(proposal id)` or `(code, reason)`.
fn execute(st: &mut ChainState, tx: &Transaction) -> Result<Option<u64>, (String, String)> {
    let reject = |code: &str| Err((code.to_string(), format!("rejected: {code}")));
    let sender = hex::encode(tx.sender().0);
    let account = st
        .accounts
        .get(&sender)
        .cloned()
        .expect("checked at admission");
    if tx.nonce() != account.next_nonce {
        return reject("bad-nonce");
    }
    let height = st.height;
    let action = BeaconAction::decode(tx.action()).expect("the tests sign beacon actions");
    let outcome = match &action {
        BeaconAction::RevokeCertificate { serial, reason } => {
            if account.role != "operator" {
                return reject("role-not-allowed");
            }
            let serial = hex::encode(serial);
            if st.revocations.iter().any(|r| r.serial == serial) {
                return reject("already-revoked");
            }
            insert_revocation(
                &mut st.revocations,
                &serial,
                *reason,
                height,
                sender.clone(),
            );
            None
        }
        BeaconAction::Vote {
            proposal_id,
            approve,
        } => {
            if account.role != "member" {
                return reject("role-not-allowed");
            }
            let Some(p) = st.proposals.get_mut(proposal_id) else {
                return reject("unknown-proposal");
            };
            if p.yes.contains(&account.org) || p.no.contains(&account.org) {
                return reject("already-voted");
            }
            if *approve {
                p.yes.push(account.org.clone());
            } else {
                p.no.push(account.org.clone());
            }
            Some(*proposal_id)
        }
        BeaconAction::Propose(kind) => {
            if account.role != "member" && account.role != "operator" {
                return reject("role-not-allowed");
            }
            let id = st.proposals.keys().last().copied().unwrap_or(0) + 1;
            let mut view = proposal_view(id, "", &sender);
            match kind {
                ProposalKind::AdmitMember { org, org_key } => {
                    view.org = Some(org.to_string());
                    view.org_key = Some(hex::encode(org_key.0));
                }
                ProposalKind::RemoveMember { org } => {
                    view.kind = "remove_member".into();
                    view.org = Some(org.to_string());
                    view.org_key = None;
                }
                ProposalKind::SetParameter { name, value } => {
                    view.kind = "set_parameter".into();
                    view.org = None;
                    view.org_key = None;
                    view.parameter = Some(name.clone());
                    view.value = Some(value.clone());
                }
            }
            st.proposals.insert(id, view);
            Some(id)
        }
        _ => None,
    };
    Ok(outcome)
}

/// Beacon codes of checks 1–3 (chain, signature, account, nonce): a transaction refused by
/// one leaves its nonce unused; any other refusal consumes it.
const BEFORE_THE_NONCE: [&str; 4] = [
    "wrong-chain",
    "bad-signature",
    "unknown-account",
    "bad-nonce",
];

async fn submit(State(stub): St, body: Bytes) -> Response {
    let tx = match Transaction::decode(&body, DEFAULT_MAX_TX_BYTES) {
        Ok(tx) => tx,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed-transaction",
                &e.to_string(),
            );
        }
    };
    let hash = tx.hash().to_hex();
    let mut st = stub.state.lock().expect("stub state");
    st.received.push(body.to_vec());
    let accepted = Json(serde_json::json!({"hash": hash, "status": "pending"}));
    if let Some(known) = st.txs.get(&hash) {
        if known["status"] == "pending" {
            // In the pool already: a duplicate, accepted without effect.
            return (StatusCode::ACCEPTED, accepted).into_response();
        }
        // The node knows it as decided: admission sees its nonce as used.
        return problem(StatusCode::CONFLICT, "nonce-used", "nonce already used");
    }
    let sender = hex::encode(tx.sender().0);
    let Some(account) = st.accounts.get(&sender).cloned() else {
        return problem(StatusCode::FORBIDDEN, "unknown-account", "no such account");
    };
    let slot = (sender.clone(), tx.nonce());
    if tx.nonce() < account.next_nonce
        || st.taken.contains(&slot)
        || st.held.contains(&slot)
        || st.pool.contains_key(&slot)
    {
        return problem(StatusCode::CONFLICT, "nonce-used", "nonce already used");
    }
    if st.lose_next {
        st.lose_next = false;
        return (StatusCode::ACCEPTED, accepted).into_response();
    }
    st.pool.insert(slot, body.to_vec());
    st.txs.insert(
        hash.clone(),
        serde_json::json!({"hash": hash, "status": "pending"}),
    );
    run(&mut st, &sender);
    (StatusCode::ACCEPTED, accepted).into_response()
}

/// Executes `sender`'s pooled transactions while the next one's nonce is the account's next.
fn run(st: &mut ChainState, sender: &str) {
    loop {
        // Another process's pending transactions of this account commit first.
        while let Some(a) = st.accounts.get_mut(sender) {
            if !st.taken.remove(&(sender.to_string(), a.next_nonce)) {
                break;
            }
            a.next_nonce += 1;
        }
        let Some(next) = st.accounts.get(sender).map(|a| a.next_nonce) else {
            return;
        };
        let Some(bytes) = st.pool.remove(&(sender.to_string(), next)) else {
            return;
        };
        let tx = Transaction::decode(&bytes, DEFAULT_MAX_TX_BYTES).expect("admitted");
        let hash = tx.hash().to_hex();
        st.height += 1;
        let height = st.height;
        let outcome = match st.reject.get(&hash).cloned() {
            Some(forced) => Err(forced),
            None => execute(st, &tx),
        };
        let consumed = match &outcome {
            Ok(_) => true,
            Err((code, _)) => !BEFORE_THE_NONCE.contains(&code.as_str()),
        };
        if consumed && let Some(a) = st.accounts.get_mut(sender) {
            a.next_nonce += 1;
        }
        let status = match outcome {
            Ok(proposal_id) => {
                serde_json::json!({"hash": hash, "status": "committed", "height": height,
                    "proposal_id": proposal_id})
            }
            Err((code, reason)) => serde_json::json!({"hash": hash, "status": "rejected",
                "height": height, "reason": reason, "reason_code": code}),
        };
        st.txs.insert(hash, status);
    }
}

async fn tx_status(State(stub): St, Path(hash): Path<String>) -> Response {
    match stub.with(|st| st.txs.get(&hash).cloned()) {
        Some(v) => Json(v).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-transaction",
            "this node has not seen it",
        ),
    }
}

async fn account(State(stub): St, Path(key): Path<String>) -> Response {
    match stub.with(|st| st.accounts.get(&key).cloned()) {
        Some(a) => Json(
            serde_json::json!({"public_key": key, "org": a.org, "role": a.role,
            "next_nonce": a.next_nonce}),
        )
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, "unknown-account", "no such account"),
    }
}

async fn members(State(stub): St) -> Response {
    stub.with(|st| Json(serde_json::json!({"height": st.height, "members": st.members})))
        .into_response()
}

async fn revocations(State(stub): St) -> Response {
    stub.with(|st| {
        st.revocation_reads += 1;
        Json(serde_json::json!({"height": st.height, "revocations": st.revocations}))
    })
    .into_response()
}

async fn proposals(State(stub): St, Query(q): Query<HashMap<String, String>>) -> Response {
    stub.with(|st| {
        let list: Vec<&ProposalView> = st
            .proposals
            .values()
            .rev()
            .filter(|p| q.get("status").is_none_or(|s| *s == p.status))
            .collect();
        Json(serde_json::json!({"height": st.height, "proposals": list}))
    })
    .into_response()
}

async fn proposal(State(stub): St, Path(id): Path<u64>) -> Response {
    match stub.with(|st| st.proposals.get(&id).cloned()) {
        Some(p) => Json(p).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-proposal",
            "no such proposal",
        ),
    }
}

/// Serves `router` on 127.0.0.1, port 0; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// Starts a stand-in node over `state`.
pub async fn stub_node(state: ChainState) -> (Arc<StubNode>, String) {
    let stub = Arc::new(StubNode {
        state: Mutex::new(state),
    });
    let router = Router::new()
        .route("/v1/transactions", axum::routing::post(submit))
        .route("/v1/transactions/{hash}", get(tx_status))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/members", get(members))
        .route("/v1/revocations", get(revocations))
        .route("/v1/governance/proposals", get(proposals))
        .route("/v1/governance/proposals/{id}", get(proposal))
        .with_state(stub.clone());
    let url = serve(router).await;
    (stub, url)
}

/// Issuing CA files (its certificate followed by the root's, and its key PEM), issued by a
/// fresh root, valid from 2024 to the end of `until_year`.
pub fn ca_files(until_year: i32) -> (String, String) {
    let day_ms = 24 * 3600 * 1000i64;
    let days_from_civil = |y: i64| {
        // Days from 1970-01-01 to January 1st of `y` (proleptic Gregorian).
        let y = y - 1;
        365 * (y - 1969) + (y / 4 - 1969 / 4) - (y / 100 - 1969 / 100) + (y / 400 - 1969 / 400)
    };
    let from = days_from_civil(2024) * day_ms;
    let until = days_from_civil(i64::from(until_year) + 1) * day_ms;
    let root = trellis_pki::RootCa::generate("trellis test root CA", from, until).expect("root");
    let ca = root
        .issue_issuing_ca("trellis test CA", from, until)
        .expect("issuing CA");
    (ca.chain_pem(), ca.key_pem())
}

/// A manual-mode config (no manager task: tests drive the passes) with a short chain wait.
pub fn config(ca: &(String, String)) -> MembershipConfig {
    let mut c = MembershipConfig::new(
        CHAIN_ID,
        IssuingCa::from_pem(&ca.0, &ca.1).expect("CA loads"),
        operator(),
    );
    c.poll_interval = Duration::ZERO;
    c.chain_wait = Duration::from_secs(3);
    c
}

/// 10 s certificates, renewed 5 s and alerted 2 s before expiry.
pub fn short_policy() -> RenewalPolicy {
    RenewalPolicy::new(10_000, 5_000, 2_000).expect("policy")
}

pub async fn tokens(db: &Db) -> TokenService {
    // One fixed keyring so a restarted service opens the keys of the first.
    let keyring = Keyring::from_hex_keys("test", &[("test", &"42".repeat(32))]).expect("keyring");
    TokenService::new(db.clone(), keyring, TokenConfig::default())
        .await
        .expect("token service")
}

pub async fn start(db: &Db, node_url: &str, config: MembershipConfig) -> MembershipService {
    MembershipService::start(
        db.clone(),
        tokens(db).await,
        NodeClient::new(node_url).expect("node client"),
        config,
    )
    .await
    .expect("service starts")
}

/// A bearer token for `role` acting for `org`.
pub async fn token(db: &Db, role: Role, org: Option<&str>) -> String {
    tokens(db)
        .await
        .issue("tester", role, org)
        .await
        .expect("token")
        .0
}

/// The DER inside a PEM block.
pub fn pem_der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .expect("PEM parses")
        .1
        .contents
}

/// `(serial hex, reason code)` of every entry of a CRL PEM, and its CRL number; the CRL's
/// signature is checked against the CA certificate.
pub fn crl_entries(crl_pem: &str, ca_cert_pem: &str) -> (Vec<(String, Option<u8>)>, String) {
    let der = pem_der(crl_pem);
    let (_, crl) = x509_parser::parse_x509_crl(&der).expect("CRL parses");
    let ca_der = pem_der(ca_cert_pem);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA parses");
    crl.verify_signature(ca.public_key())
        .expect("CRL signed by the CA");
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                hex::encode(r.raw_serial()),
                r.reason_code().map(|(_, c)| c.0),
            )
        })
        .collect();
    let number = crl.crl_number().map(|n| n.to_string()).unwrap_or_default();
    (entries, number)
}

/// Rows of `table` (names are the test's own constants).
pub async fn count(db: &Db, sql: &'static str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .expect("count")
        .get::<i64, _>(0)
}
