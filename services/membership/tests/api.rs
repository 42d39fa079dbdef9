//! The membership routes over HTTP on real databases (PostgreSQL and SQLite), against a
//! stand-in node: who may do what, how relayed transactions are checked, how the beacon's
//! rejections are answered, and what each role sees of certificates.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use trellis_membership::MembershipService;
use trellis_servicekit::testing::test_databases;
use trellis_servicekit::{Db, Role, now_ms};
use trellis_types::{BeaconAction, OrgId, ProposalKind, Signer, Transaction};

struct World {
    db: Db,
    base: String,
    stub: std::sync::Arc<StubNode>,
    svc: MembershipService,
    http: reqwest::Client,
}

impl World {
    async fn new(db: Db) -> World {
        let ca = ca_files(2034);
        let (stub, node) = stub_node(ChainState::consortium()).await;
        let svc = start(&db, &node, config(&ca)).await;
        let base = serve(svc.router()).await;
        World {
            db,
            base,
            stub,
            svc,
            http: reqwest::Client::new(),
        }
    }

    async fn token(&self, role: Role, org: Option<&str>) -> String {
        token(&self.db, role, org).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            assert_eq!(
                resp.headers()["content-type"].to_str().unwrap(),
                "application/problem+json",
                "{path}"
            );
        }
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn tx_hex(signer: &Signer, nonce: u64, action: BeaconAction) -> String {
    hex::encode(Transaction::sign(CHAIN_ID, signer, nonce, action).encoded())
}

fn vote(signer: &Signer, proposal_id: u64) -> String {
    tx_hex(
        signer,
        0,
        BeaconAction::Vote {
            proposal_id,
            approve: true,
        },
    )
}

fn kind(problem: &Value) -> &str {
    problem["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("")
}

#[tokio::test]
async fn callers_without_a_token_are_refused_and_public_routes_stay_public() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        for path in [
            "/v1/members",
            "/v1/governance/proposals",
            "/v1/governance/proposals/1",
            "/v1/ca/certificates",
            "/v1/ca/certificates/0a0b",
        ] {
            let (status, body) = w.get(path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend} {path}");
            assert_eq!(kind(&body), "unauthorized");
        }
        for path in [
            "/v1/governance/proposals",
            "/v1/governance/proposals/1/votes",
            "/v1/ca/revocations",
        ] {
            let (status, _) = w.post(path, None, json!({"tx": "00"})).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend} {path}");
        }
        let (status, _) = w.get("/v1/members", Some("not.a.token")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let ca = w
            .http
            .get(format!("{}/v1/ca/ca.pem", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ca.status(), StatusCode::OK);
        assert_eq!(ca.headers()["content-type"], "application/x-pem-file");
        assert!(
            ca.text()
                .await
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        let crl = w
            .http
            .get(format!("{}/v1/ca/crl", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(crl.status(), StatusCode::OK, "{backend}");
        let metrics = w
            .http
            .get(format!("{}/v1/ca/metrics", w.base))
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn only_admins_and_operators_relay_governance_and_only_operators_revoke() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let id = w.stub.with(|s| s.open_proposal("newco"));
        let propose = tx_hex(
            &org_a(),
            0,
            BeaconAction::Propose(ProposalKind::RemoveMember {
                org: OrgId::parse("org-b", "org").unwrap(),
            }),
        );
        for role in [Role::Regulator, Role::Bank, Role::EnterpriseMember] {
            let t = w.token(role, Some("org-a")).await;
            let (status, body) = w
                .post("/v1/governance/proposals", Some(&t), json!({"tx": propose}))
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {role}: {body}");
            let (status, _) = w
                .post(
                    &format!("/v1/governance/proposals/{id}/votes"),
                    Some(&t),
                    json!({"tx": vote(&org_a(), id)}),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {role}");
            let (status, _) = w
                .post(
                    "/v1/ca/revocations",
                    Some(&t),
                    json!({"serial": "7a01", "reason": "key_compromise"}),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {role}");
        }
        // Operators may propose but not vote (votes are the member orgs').
        let op = w.token(Role::Operator, None).await;
        let (status, _) = w
            .post(
                &format!("/v1/governance/proposals/{id}/votes"),
                Some(&op),
                json!({"tx": vote(&org_a(), id)}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend}");
        // Nothing reached the chain.
        assert!(w.stub.with(|s| s.received.is_empty()), "{backend}");
        assert!(w.stub.with(|s| s.proposals[&id].yes.is_empty()));
    }
}

#[tokio::test]
async fn relayed_transactions_are_checked_before_they_reach_the_chain() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let id = w.stub.with(|s| s.open_proposal("newco"));
        let admin_a = w.token(Role::EnterpriseAdmin, Some("org-a")).await;
        let votes = format!("/v1/governance/proposals/{id}/votes");

        // Malformed hex, and bytes that are no transaction: 400 naming `tx`.
        for bad in ["zz", "0102", ""] {
            let (status, body) = w.post(&votes, Some(&admin_a), json!({"tx": bad})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{backend} {bad:?}: {body}");
            assert_eq!(body["field"], "tx");
        }
        let (status, body) = w
            .post(
                "/v1/governance/proposals",
                Some(&admin_a),
                json!({"tx": "xyz"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{backend}");
        assert_eq!(body["field"], "tx");
        // Missing field: the JSON extractor names it.
        let (status, body) = w.post(&votes, Some(&admin_a), json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "tx");

        // A vote on another proposal: 422 naming `tx`.
        let (status, body) = w
            .post(
                &votes,
                Some(&admin_a),
                json!({"tx": vote(&org_a(), id + 1)}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend}: {body}"
        );
        assert_eq!(body["field"], "tx");
        // Not a vote at all, or not a proposal.
        let anchor = tx_hex(
            &org_a(),
            0,
            BeaconAction::RevokeCertificate {
                serial: vec![1],
                reason: 1,
            },
        );
        let (status, _) = w.post(&votes, Some(&admin_a), json!({"tx": anchor})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, body) = w
            .post(
                "/v1/governance/proposals",
                Some(&admin_a),
                json!({"tx": vote(&org_a(), id)}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "tx");
        // Another chain; a broken signature.
        let other_chain = hex::encode(
            Transaction::sign(
                "another-chain",
                &org_a(),
                0,
                BeaconAction::Vote {
                    proposal_id: id,
                    approve: true,
                },
            )
            .encoded(),
        );
        let (status, body) = w
            .post(&votes, Some(&admin_a), json!({"tx": other_chain}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(kind(&body), "wrong-chain");

        // A vote whose sender is an account of another org: 403.
        let (status, body) = w
            .post(&votes, Some(&admin_a), json!({"tx": vote(&org_b(), id)}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend}: {body}");
        // A sender that is no account at all: 403.
        let (status, _) = w
            .post(&votes, Some(&admin_a), json!({"tx": vote(&signer(77), id)}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An operator relaying a member's proposal: 403 (operators relay operator accounts).
        let op = w.token(Role::Operator, None).await;
        let member_proposal = tx_hex(
            &org_a(),
            0,
            BeaconAction::Propose(ProposalKind::RemoveMember {
                org: OrgId::parse("org-b", "org").unwrap(),
            }),
        );
        let (status, _) = w
            .post(
                "/v1/governance/proposals",
                Some(&op),
                json!({"tx": member_proposal}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // The path id must be a proposal number.
        let (status, body) = w
            .post(
                "/v1/governance/proposals/x/votes",
                Some(&admin_a),
                json!({"tx": vote(&org_a(), id)}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "id");

        assert!(
            w.stub.with(|s| s.received.is_empty()),
            "{backend}: nothing submitted"
        );
    }
}

#[tokio::test]
async fn votes_and_proposals_are_relayed_and_rejections_mapped() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let id = w.stub.with(|s| s.open_proposal("newco"));
        let admin_a = w.token(Role::EnterpriseAdmin, Some("org-a")).await;
        let admin_b = w.token(Role::EnterpriseAdmin, Some("org-b")).await;
        let votes = format!("/v1/governance/proposals/{id}/votes");

        let (status, body) = w
            .post(&votes, Some(&admin_a), json!({"tx": vote(&org_a(), id)}))
            .await;
        assert_eq!(status, StatusCode::OK, "{backend}: {body}");
        assert_eq!(body["id"], id);
        assert_eq!(body["yes"], json!(["org-a"]));

        // Voting again: the beacon says already-voted (the nonce moved on, so a new tx).
        let again = tx_hex(
            &org_a(),
            1,
            BeaconAction::Vote {
                proposal_id: id,
                approve: false,
            },
        );
        let (status, body) = w.post(&votes, Some(&admin_a), json!({"tx": again})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {body}");
        assert_eq!(kind(&body), "already-voted");
        // The same signed vote again: the node has it already (nonce used): 409.
        let (status, _) = w
            .post(&votes, Some(&admin_a), json!({"tx": vote(&org_a(), id)}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);

        // Beacon rejections by code.
        for (code, expected) in [
            ("proposal-expired", StatusCode::CONFLICT),
            ("proposal-closed", StatusCode::CONFLICT),
            ("not-a-member", StatusCode::FORBIDDEN),
            ("unknown-proposal", StatusCode::NOT_FOUND),
        ] {
            // The beacon consumes the nonce of a refused vote too: each case signs at org-b's
            // next nonce, on a fresh proposal.
            let (pid, nonce) = w.stub.with(|s| {
                (
                    s.open_proposal("newco"),
                    s.accounts[&key_hex(&org_b())].next_nonce,
                )
            });
            let tx = Transaction::sign(
                CHAIN_ID,
                &org_b(),
                nonce,
                BeaconAction::Vote {
                    proposal_id: pid,
                    approve: true,
                },
            );
            w.stub.with(|s| {
                s.reject
                    .insert(tx.hash().to_hex(), (code.into(), format!("because {code}")))
            });
            let (status, body) = w
                .post(
                    &format!("/v1/governance/proposals/{pid}/votes"),
                    Some(&admin_b),
                    json!({"tx": hex::encode(tx.encoded())}),
                )
                .await;
            assert_eq!(status, expected, "{backend} {code}: {body}");
            assert_eq!(kind(&body), code);
            // A refused vote changed nothing but the nonce.
            assert!(w.stub.with(|s| s.proposals[&pid].yes.is_empty()));
            assert_eq!(
                w.stub.with(|s| s.accounts[&key_hex(&org_b())].next_nonce),
                nonce + 1,
                "{backend} {code}"
            );
        }
        assert_eq!(w.stub.with(|s| s.proposals[&id].yes.clone()), vec!["org-a"]);

        // Proposals: an operator account's, relayed by an operator → 201 with the proposal.
        let op = w.token(Role::Operator, None).await;
        let set = tx_hex(
            &operator(),
            3,
            BeaconAction::Propose(ProposalKind::SetParameter {
                name: "proposal_ttl_blocks".into(),
                value: "500".into(),
            }),
        );
        let (status, body) = w
            .post("/v1/governance/proposals", Some(&op), json!({"tx": set}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {body}");
        assert_eq!(body["kind"], "set_parameter");
        assert_eq!(body["value"], "500");
        let new_id = body["id"].as_u64().unwrap();
        let (status, body) = w
            .get(
                &format!("/v1/governance/proposals/{new_id}"),
                Some(&admin_b),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["parameter"], "proposal_ttl_blocks");
        // An admin's proposal the beacon refuses as a state conflict: 409.
        let nonce = w.stub.with(|s| s.accounts[&key_hex(&org_b())].next_nonce);
        let admit = Transaction::sign(
            CHAIN_ID,
            &org_b(),
            nonce,
            BeaconAction::Propose(ProposalKind::AdmitMember {
                org: OrgId::parse("newco", "org").unwrap(),
                org_key: signer(50).public_key(),
            }),
        );
        w.stub.with(|s| {
            s.reject.insert(
                admit.hash().to_hex(),
                ("no-attestation".into(), "no attestation".into()),
            )
        });
        let (status, body) = w
            .post(
                "/v1/governance/proposals",
                Some(&admin_b),
                json!({"tx": hex::encode(admit.encoded())}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {body}");
        assert_eq!(kind(&body), "no-attestation");

        // Lists, for any role.
        let regulator = w.token(Role::Regulator, None).await;
        let (status, body) = w
            .get("/v1/governance/proposals?status=open", Some(&regulator))
            .await;
        assert_eq!(status, StatusCode::OK);
        // The first proposal, the four of the rejection cases, the parameter change.
        assert_eq!(body["proposals"].as_array().unwrap().len(), 6);
        let (status, body) = w
            .get("/v1/governance/proposals?status=maybe", Some(&regulator))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "status");
        let (status, body) = w
            .get("/v1/governance/proposals/999", Some(&regulator))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(kind(&body), "unknown-proposal");
    }
}

#[tokio::test]
async fn certificates_are_shown_by_role_and_org() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let report = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        let serial_of = |org: &str| {
            report
                .issued
                .iter()
                .find(|e| e.org == org)
                .unwrap()
                .serial
                .clone()
        };
        let (a, b) = (serial_of("org-a"), serial_of("org-b"));

        // Enterprise callers: their own org only.
        for role in [Role::EnterpriseAdmin, Role::EnterpriseMember] {
            let t = w.token(role, Some("org-a")).await;
            let (status, body) = w.get("/v1/ca/certificates", Some(&t)).await;
            assert_eq!(status, StatusCode::OK, "{backend}");
            let list = body["certificates"].as_array().unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0]["serial"], a.as_str());
            assert_eq!(list[0]["public_key"], key_hex(&org_a()));
            let (status, _) = w.get("/v1/ca/certificates?org=org-b", Some(&t)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {role}");
            let (status, _) = w.get(&format!("/v1/ca/certificates/{b}"), Some(&t)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{backend} {role}");
            let (status, body) = w.get(&format!("/v1/ca/certificates/{a}"), Some(&t)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body["pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
            assert_eq!(body["state"], "fresh");
        }
        // Without an org in the token: nothing to show.
        let orgless = w.token(Role::EnterpriseAdmin, None).await;
        let (status, _) = w.get("/v1/ca/certificates", Some(&orgless)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Regulators and banks: metadata of every certificate, no PEM.
        for role in [Role::Regulator, Role::Bank] {
            let t = w.token(role, None).await;
            let (status, body) = w.get("/v1/ca/certificates", Some(&t)).await;
            assert_eq!(status, StatusCode::OK);
            let list = body["certificates"].as_array().unwrap();
            assert_eq!(list.len(), 2, "{backend} {role}");
            for c in list {
                let mut keys: Vec<&str> =
                    c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
                keys.sort();
                assert_eq!(
                    keys,
                    ["not_after_ms", "not_before_ms", "org", "serial", "status"]
                );
            }
            let (status, body) = w.get(&format!("/v1/ca/certificates/{b}"), Some(&t)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.get("pem").is_none(), "{backend} {role}");
        }

        // Operators: everything, filtered by org on request.
        let op = w.token(Role::Operator, None).await;
        let (status, body) = w.get("/v1/ca/certificates?org=org-b", Some(&op)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["certificates"][0]["serial"], b.as_str());
        let (status, body) = w
            .get(
                &format!("/v1/ca/certificates/{}", b.to_uppercase()),
                Some(&op),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "serials in either case");
        assert_eq!(body["status"], "active");
        let (status, body) = w.get("/v1/ca/certificates/0a0b", Some(&op)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["field"], "serial");
        let (status, body) = w.get("/v1/ca/certificates/nothex", Some(&op)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "serial");
        let (status, body) = w.get("/v1/ca/certificates?org=bad%20org", Some(&op)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "org");

        // Members with their current certificates, for any role.
        let bank = w.token(Role::Bank, None).await;
        let (status, body) = w.get("/v1/members", Some(&bank)).await;
        assert_eq!(status, StatusCode::OK);
        let members = body["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert_eq!(members[0]["org"], "org-a");
        assert_eq!(members[0]["certificate"]["serial"], a.as_str());
        assert_eq!(members[0]["certificate"]["state"], "fresh");
        assert_eq!(members[2]["status"], "removed");
        assert!(members[2]["certificate"].is_null());
    }
}

#[tokio::test]
async fn operators_revoke_any_serial_once() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let report = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        let a = report.issued[0].serial.clone();
        let op = w.token(Role::Operator, None).await;

        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": a, "reason": "key_compromise"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {body}");
        assert_eq!(body["reason_code"], 1);
        assert_eq!(body["serial"], a.as_str());
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": a, "reason": "superseded"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {body}");
        assert_eq!(kind(&body), "already-revoked");
        // The beacon consumed the refused revocation's nonce too (3: committed, 4: refused).
        assert_eq!(
            w.stub
                .with(|s| s.accounts[&key_hex(&operator())].next_nonce),
            5,
            "{backend}"
        );

        // A serial the DB never saw (a node certificate), with a leading zero byte; and
        // another process holds the operator key's next nonce: the one after is used.
        let next = w.stub.with(|s| {
            let next = s.accounts[&key_hex(&operator())].next_nonce;
            s.taken.insert((key_hex(&operator()), next));
            next
        });
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": "00C0FFEE", "reason": "cessation_of_operation"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend}: {body}");
        assert_eq!(body["serial"], "c0ffee");
        assert_eq!(
            w.stub
                .with(|s| s.accounts[&key_hex(&operator())].next_nonce),
            next + 2
        );

        // Bad input names its field.
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": "xyz", "reason": "superseded"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "serial");
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": "0000", "reason": "superseded"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["field"], "serial");
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": "01", "reason": "boredom"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["field"], "reason");

        // The next pass mirrors both, marks the org certificate revoked and issues org-a a
        // new one.
        let pass = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        assert_eq!(pass.crl_entries, 2, "{backend}");
        assert_eq!(pass.issued.len(), 1, "{backend}: {pass:?}");
        assert_eq!(pass.issued[0].org, "org-a");
        let (_, body) = w.get(&format!("/v1/ca/certificates/{a}"), Some(&op)).await;
        assert_eq!(body["status"], "revoked");
        assert_eq!(body["revocation_reason"], 1);
        let (_, crl) = w.get("/v1/ca/crl", None).await;
        assert!(crl.is_null(), "PEM, not JSON");
    }
}

#[tokio::test]
async fn a_serial_the_manager_is_revoking_is_refused_as_in_flight() {
    for (backend, db) in test_databases().await {
        let w = World::new(db).await;
        let first = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        let org_b = first
            .issued
            .iter()
            .find(|e| e.org == "org-b")
            .expect("org-b certificate")
            .serial
            .clone();
        // org-b leaves; the node accepts the manager's revocation and loses it: pending.
        w.stub.with(|s| {
            s.set_member_status("org-b", false);
            s.lose_next = true;
        });
        let lost = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        assert_eq!(lost.revocations_submitted.len(), 1, "{backend}: {lost:?}");
        let pending: String = sqlx::query_scalar(
            "SELECT tx_hash FROM ca_revocation_submissions WHERE state = 'pending'",
        )
        .fetch_one(w.db.pool())
        .await
        .expect("pending submission");

        // The operator asks for the same serial: refused, naming the pending transaction;
        // nothing is signed or submitted.
        let op = w.token(Role::Operator, None).await;
        let submitted = w.stub.with(|s| s.received.len());
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": org_b.to_uppercase(), "reason": "key_compromise"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {body}");
        assert_eq!(kind(&body), "revocation-in-flight");
        assert_eq!(body["field"], "serial");
        assert!(
            body["detail"].as_str().unwrap().contains(&pending),
            "{backend}: {body}"
        );
        assert_eq!(w.stub.with(|s| s.received.len()), submitted, "{backend}");
        assert_eq!(
            count(&w.db, "SELECT COUNT(*) FROM ca_revocation_submissions").await,
            1,
            "{backend}"
        );

        // The next pass resubmits the manager's own bytes; once decided, the serial is
        // revoked, and asking again is answered by the beacon.
        let settled = w.svc.reconcile_certificates(now_ms()).await.expect("pass");
        assert_eq!(
            settled.revocations_confirmed,
            vec![org_b.clone()],
            "{backend}"
        );
        let (status, body) = w
            .post(
                "/v1/ca/revocations",
                Some(&op),
                json!({"serial": org_b, "reason": "key_compromise"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{backend}: {body}");
        assert_eq!(kind(&body), "already-revoked");
    }
}

#[test]
fn openapi_lists_every_route() {
    let doc = MembershipService::openapi();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    for p in [
        "/v1/governance/proposals",
        "/v1/governance/proposals/{id}",
        "/v1/governance/proposals/{id}/votes",
        "/v1/members",
        "/v1/ca/certificates",
        "/v1/ca/certificates/{serial}",
        "/v1/ca/revocations",
        "/v1/ca/crl",
        "/v1/ca/ca.pem",
        "/v1/ca/metrics",
    ] {
        assert!(
            paths.iter().any(|k| k.as_str() == p),
            "{p} missing: {paths:?}"
        );
    }
}
