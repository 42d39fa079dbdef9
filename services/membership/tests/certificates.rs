//! The certificate manager on real databases (PostgreSQL and SQLite) against a stand-in node:
//! issuing for every active member, renewal, the expiry alert, revoking removed members'
//! certificates without duplicates across restarts, and the CRL file.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use trellis_membership::ca::RenewalPolicy;
use trellis_servicekit::testing::test_databases;
use trellis_servicekit::{Role, now_ms};
use x509_parser::extensions::GeneralName;

async fn metrics_text(base: &str) -> String {
    let resp = reqwest::get(format!("{base}/v1/ca/metrics"))
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("text")
}

/// `GET /v1/ca/crl`: the status and the body.
async fn get_crl(base: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}/v1/ca/crl"))
        .await
        .expect("crl");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("text"))
}

/// The URL of a port nothing listens on: a node that cannot be reached.
async fn unreachable_node() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

async fn revoke(base: &str, token: &str, serial: &str, reason: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/ca/revocations"))
        .bearer_auth(token)
        .json(&json!({"serial": serial, "reason": reason}))
        .send()
        .await
        .expect("revocation request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        .parse()
        .expect("number")
}

#[tokio::test]
async fn issues_one_certificate_per_active_member_and_not_again_after_restart() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let (_stub, node) = stub_node(ChainState::consortium()).await;
        let svc = start(&db, &node, config(&ca)).await;
        let now = now_ms();
        let report = svc.reconcile_certificates(now).await.expect("pass");
        let issued: Vec<_> = report.issued.iter().map(|e| e.org.as_str()).collect();
        assert_eq!(issued, ["org-a", "org-b"], "{backend}");
        assert!(
            report.renewed.is_empty() && report.failures.is_empty(),
            "{backend}: {report:?}"
        );

        // Each certificate certifies the org key, names the org, and chains to the CA.
        let ca_der = pem_der(&ca.0);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
        for (event, key) in report.issued.iter().zip([org_a(), org_b()]) {
            let pem: String = sqlx::query_scalar(
                "SELECT pem FROM ca_certificates WHERE serial_hex = $1 AND status = 'active'",
            )
            .bind(&event.serial)
            .fetch_one(db.pool())
            .await
            .expect("stored");
            let der = pem_der(&pem);
            let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parses");
            assert_eq!(
                cert.public_key().subject_public_key.data.as_ref(),
                key.public_key().0.as_slice(),
                "{backend}: SPKI is the org key"
            );
            assert_eq!(hex::encode(cert.raw_serial()), event.serial);
            let san = cert.subject_alternative_name().expect("ok").expect("SAN");
            assert_eq!(
                san.value.general_names,
                vec![GeneralName::URI(&format!("trellis:org:{}", event.org))]
            );
            cert.verify_signature(Some(ca_cert.public_key()))
                .expect("signed by the CA");
            assert_eq!(
                cert.validity().not_after.timestamp() * 1000,
                now - now % 1000 + RenewalPolicy::default().validity_ms()
            );
        }

        let base = serve(svc.router()).await;
        let text = metrics_text(&base).await;
        assert_eq!(metric(&text, "trellis_ca_certificates_issued_total"), 2);
        assert_eq!(metric(&text, "trellis_ca_certificates_renewed_total"), 0);

        // A second pass, and a restarted service on the same database, issue nothing.
        let again = svc.reconcile_certificates(now + 1000).await.expect("pass");
        assert!(
            again.issued.is_empty() && again.renewed.is_empty(),
            "{backend}"
        );
        drop(svc);
        let restarted = start(&db, &node, config(&ca)).await;
        let after = restarted
            .reconcile_certificates(now + 2000)
            .await
            .expect("pass");
        assert!(
            after.issued.is_empty() && after.renewed.is_empty(),
            "{backend}: {after:?}"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM ca_certificates").await, 2);
        let base = serve(restarted.router()).await;
        assert_eq!(
            metric(
                &metrics_text(&base).await,
                "trellis_ca_certificates_issued_total"
            ),
            0
        );
    }
}

#[tokio::test]
async fn renewal_supersedes_the_old_certificate() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let mut state = ChainState::consortium();
        state.members.retain(|m| m.org == "org-a");
        let (_stub, node) = stub_node(state).await;
        let mut cfg = config(&ca);
        cfg.policy = short_policy();
        let svc = start(&db, &node, cfg).await;
        let base = serve(svc.router()).await;

        let t0 = now_ms();
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        assert_eq!(first.issued.len(), 1, "{backend}");
        let old = first.issued[0].serial.clone();

        // 6 s left (or a little less, validity starts on a whole second): still fresh.
        let quiet = svc.reconcile_certificates(t0 + 4_000).await.expect("pass");
        assert!(quiet.renewed.is_empty(), "{backend}: {quiet:?}");

        // Within 5 s of expiry: renewed.
        let due = svc.reconcile_certificates(t0 + 5_500).await.expect("pass");
        assert_eq!(due.renewed.len(), 1, "{backend}: {due:?}");
        assert!(due.issued.is_empty());
        assert_eq!(due.superseded[0].serial, old);
        let new = due.renewed[0].serial.clone();
        assert_ne!(new, old);
        let row: (String, Option<String>) = sqlx::query_as(
            "SELECT status, superseded_by FROM ca_certificates WHERE serial_hex = $1",
        )
        .bind(&old)
        .fetch_one(db.pool())
        .await
        .expect("old row");
        assert_eq!(
            row,
            ("superseded".to_string(), Some(new.clone())),
            "{backend}"
        );
        let active: Vec<String> =
            sqlx::query_scalar("SELECT serial_hex FROM ca_certificates WHERE status = 'active'")
                .fetch_all(db.pool())
                .await
                .expect("active");
        assert_eq!(active, vec![new.clone()]);

        let text = metrics_text(&base).await;
        assert_eq!(metric(&text, "trellis_ca_certificates_renewed_total"), 1);
        assert_eq!(metric(&text, "trellis_ca_certificates_issued_total"), 2);
        assert_eq!(metric(&text, "trellis_ca_certificates_expiring"), 0);

        // The renewed certificate is fresh: nothing more to do.
        let calm = svc.reconcile_certificates(t0 + 6_000).await.expect("pass");
        assert!(
            calm.renewed.is_empty() && calm.issued.is_empty(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn expiring_gauge_counts_a_certificate_that_could_not_be_renewed() {
    // The CA expires at the start of 2031: a certificate issued 12 s before can be issued
    // (10 s validity) but not renewed (its successor would outlive the CA).
    let ca = ca_files(2030);
    let ca_end_ms: i64 = 1_924_992_000_000; // 2031-01-01T00:00:00Z
    for (backend, db) in test_databases().await {
        let mut state = ChainState::consortium();
        state.members.retain(|m| m.org == "org-a");
        let (_stub, node) = stub_node(state).await;
        let mut cfg = config(&ca);
        cfg.policy = short_policy();
        let svc = start(&db, &node, cfg).await;
        let base = serve(svc.router()).await;

        let t0 = ca_end_ms - 12_000;
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        assert_eq!(first.issued.len(), 1, "{backend}: {first:?}");

        // Renewal due, but refused by the CA: not yet an alert.
        let due = svc.reconcile_certificates(t0 + 6_000).await.expect("pass");
        assert!(due.renewed.is_empty(), "{backend}");
        assert_eq!(due.failures.len(), 1, "{backend}: {due:?}");
        assert_eq!(due.expiring, 0);
        assert_eq!(
            metric(
                &metrics_text(&base).await,
                "trellis_ca_certificates_expiring"
            ),
            0
        );

        // 1.5 s left: in the alert window, still not renewed.
        let alert = svc.reconcile_certificates(t0 + 8_500).await.expect("pass");
        assert_eq!(alert.expiring, 1, "{backend}: {alert:?}");
        let text = metrics_text(&base).await;
        assert_eq!(metric(&text, "trellis_ca_certificates_expiring"), 1);
        assert_eq!(metric(&text, "trellis_ca_certificates_expired"), 0);

        // Past not_after: expired, no longer "expiring".
        svc.reconcile_certificates(t0 + 10_500).await.expect("pass");
        let text = metrics_text(&base).await;
        assert_eq!(metric(&text, "trellis_ca_certificates_expiring"), 0);
        assert_eq!(metric(&text, "trellis_ca_certificates_expired"), 1);
    }
}

#[tokio::test]
async fn removed_members_are_revoked_once_and_the_crl_file_follows_the_beacon() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let crl_path = dir.path().join("crl.pem");
        // A node certificate revoked earlier (issued by `devnet init`, unknown to the DB).
        let node_serial = "7a01";
        let mut state = ChainState::consortium();
        state.revoke(node_serial, 1);
        let (stub, node) = stub_node(state).await;
        let mut cfg = config(&ca);
        cfg.crl_path = Some(crl_path.clone());
        let svc = start(&db, &node, cfg).await;

        let t0 = now_ms();
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        assert!(first.crl_written, "{backend}");
        assert_eq!(first.crl_entries, 1);
        let pem = std::fs::read_to_string(&crl_path).expect("CRL file");
        let (entries, number) = crl_entries(&pem, &ca.0);
        assert_eq!(
            entries,
            vec![(node_serial.to_string(), Some(1))],
            "{backend}"
        );
        assert_eq!(number, stub.with(|s| s.height).to_string());

        // Nothing changed: the file is left alone.
        let quiet = svc.reconcile_certificates(t0 + 1000).await.expect("pass");
        assert!(!quiet.crl_written, "{backend}");

        // org-b leaves: its certificate is revoked (cessation of operation) by the CA
        // operator, the CRL file is rewritten with it.
        let org_b_serial = first
            .issued
            .iter()
            .find(|e| e.org == "org-b")
            .expect("org-b certificate")
            .serial
            .clone();
        stub.with(|s| s.set_member_status("org-b", false));
        let nonce_before = stub.with(|s| s.accounts[&key_hex(&operator())].next_nonce);
        let removal = svc.reconcile_certificates(t0 + 2000).await.expect("pass");
        assert_eq!(
            removal.revocations_submitted.len(),
            1,
            "{backend}: {removal:?}"
        );
        assert_eq!(removal.revocations_confirmed, vec![org_b_serial.clone()]);
        assert!(removal.crl_written);
        assert_eq!(
            stub.with(|s| s.accounts[&key_hex(&operator())].next_nonce),
            nonce_before + 1
        );
        let revoked = stub.with(|s| s.revocations.clone());
        let ours = revoked
            .iter()
            .find(|r| r.serial == org_b_serial)
            .expect("on the beacon");
        assert_eq!(ours.reason, 5);
        assert_eq!(ours.revoker, key_hex(&operator()));
        let pem = std::fs::read_to_string(&crl_path).expect("CRL file");
        let (entries, _) = crl_entries(&pem, &ca.0);
        let serials: HashSet<_> = entries.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(
            serials,
            HashSet::from([node_serial.to_string(), org_b_serial.clone()]),
            "{backend}"
        );
        let status: String =
            sqlx::query_scalar("SELECT status FROM ca_certificates WHERE serial_hex = $1")
                .bind(&org_b_serial)
                .fetch_one(db.pool())
                .await
                .expect("row");
        assert_eq!(status, "revoked", "{backend}");

        // The public CRL endpoint says the same.
        let base = serve(svc.router()).await;
        let resp = reqwest::get(format!("{base}/v1/ca/crl"))
            .await
            .expect("crl");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "application/x-pem-file"
        );
        let (served, _) = crl_entries(&resp.text().await.unwrap(), &ca.0);
        assert_eq!(served.len(), 2);
        assert_eq!(
            metric(&metrics_text(&base).await, "trellis_ca_crl_entries"),
            2
        );

        // A restarted service neither signs the revocation again nor re-issues.
        let submitted = stub.with(|s| s.received.len());
        drop(svc);
        let restarted = start(&db, &node, {
            let mut c = config(&ca);
            c.crl_path = Some(crl_path.clone());
            c
        })
        .await;
        let after = restarted
            .reconcile_certificates(t0 + 3000)
            .await
            .expect("pass");
        assert!(
            after.revocations_submitted.is_empty(),
            "{backend}: {after:?}"
        );
        assert!(after.issued.is_empty());
        assert!(!after.crl_written);
        assert_eq!(stub.with(|s| s.received.len()), submitted);

        // The file is written again when it disappears.
        std::fs::remove_file(&crl_path).expect("rm");
        let rewritten = restarted
            .reconcile_certificates(t0 + 4000)
            .await
            .expect("pass");
        assert!(rewritten.crl_written && crl_path.exists(), "{backend}");
    }
}

#[tokio::test]
async fn a_revocation_lost_by_the_node_is_resubmitted_byte_for_byte_after_restart() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let (stub, node) = stub_node(ChainState::consortium()).await;
        let svc = start(&db, &node, config(&ca)).await;
        let t0 = now_ms();
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        let org_a_serial = first.issued[0].serial.clone();

        // org-a leaves, and the node loses the revocation (accepted, then restarted).
        stub.with(|s| {
            s.set_member_status("org-a", false);
            s.lose_next = true;
        });
        let lost = svc.reconcile_certificates(t0 + 1000).await.expect("pass");
        assert_eq!(lost.revocations_submitted.len(), 1, "{backend}");
        assert!(lost.revocations_confirmed.is_empty(), "{backend}: {lost:?}");
        let pending: i64 = count(
            &db,
            "SELECT COUNT(*) FROM ca_revocation_submissions WHERE state = 'pending'",
        )
        .await;
        assert_eq!(pending, 1, "{backend}");

        // A new process on the same database: looks the transaction up, finds the node does
        // not know it, submits the very same bytes.
        drop(svc);
        let restarted = start(&db, &node, config(&ca)).await;
        let settled = restarted
            .reconcile_certificates(t0 + 2000)
            .await
            .expect("pass");
        assert!(
            settled.revocations_submitted.is_empty(),
            "{backend}: {settled:?}"
        );
        assert_eq!(settled.revocations_confirmed, vec![org_a_serial.clone()]);
        let received = stub.with(|s| s.received.clone());
        assert_eq!(received.len(), 2, "{backend}");
        assert_eq!(
            received[0], received[1],
            "{backend}: same bytes, same nonce"
        );
        assert_eq!(
            stub.with(|s| s
                .revocations
                .iter()
                .filter(|r| r.serial == org_a_serial)
                .count()),
            1
        );
    }
}

/// A DNS resolver that resolves nothing (the node is addressed by IP) and is only there to
/// be owned by one HTTP client: once it is dropped, so is the client that held it.
struct ClientTracer;

impl reqwest::dns::Resolve for ClientTracer {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_string();
        Box::pin(async move { Err(format!("the test resolves no names ({name})").into()) })
    }
}

#[tokio::test]
async fn the_manager_task_runs_on_its_own_and_stops_with_the_service() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let (stub, node) = stub_node(ChainState::consortium()).await;
        let mut cfg = config(&ca);
        cfg.poll_interval = std::time::Duration::from_millis(100);
        // The service's node client, and with it the service's state, can be seen to go.
        let tracer = std::sync::Arc::new(ClientTracer);
        let client_alive = std::sync::Arc::downgrade(&tracer);
        let http = reqwest::Client::builder()
            .dns_resolver(tracer)
            .build()
            .expect("http client");
        let svc = trellis_membership::MembershipService::start(
            db.clone(),
            tokens(&db).await,
            trellis_servicekit::NodeClient::with_client(http, node.clone()),
            cfg,
        )
        .await
        .expect("service starts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while count(&db, "SELECT COUNT(*) FROM ca_certificates").await < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: nothing issued"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(client_alive.upgrade().is_some(), "{backend}");
        drop(svc);
        // Once the service is gone the task stops. The task holds the service only while a
        // pass runs; when nothing holds it any more its state, the node client included, is
        // dropped, and no pass can ever start again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while client_alive.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: the manager task kept the dropped service alive"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // So a new member gets no certificate, though a pass would issue it one.
        stub.with(|s| s.set_member_status("org-c", true));
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM ca_certificates").await,
            2,
            "{backend}"
        );
        let pass = start(&db, &node, config(&ca))
            .await
            .reconcile_certificates(now_ms())
            .await
            .expect("pass");
        assert_eq!(pass.issued.len(), 1, "{backend}: {pass:?}");
        assert_eq!(pass.issued[0].org, "org-c", "{backend}");
    }
}

#[tokio::test]
async fn an_org_readmitted_with_a_new_key_gets_a_new_certificate_and_the_old_one_is_revoked() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let (stub, node) = stub_node(ChainState::consortium()).await;
        let svc = start(&db, &node, config(&ca)).await;
        let t0 = now_ms();
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        let old = first.issued[0].serial.clone();
        let new_key = signer(4);
        stub.with(|s| s.members[0].keys = vec![key_hex(&new_key)]);

        let pass = svc.reconcile_certificates(t0 + 1000).await.expect("pass");
        assert_eq!(pass.issued.len(), 1, "{backend}: {pass:?}");
        assert!(pass.renewed.is_empty());
        assert_eq!(pass.superseded[0].serial, old);
        assert_eq!(pass.revocations_confirmed, vec![old.clone()]);
        let reason = stub.with(|s| {
            s.revocations
                .iter()
                .find(|r| r.serial == old)
                .map(|r| r.reason)
        });
        assert_eq!(reason, Some(4), "{backend}: superseded");
        let key: String = sqlx::query_scalar(
            "SELECT public_key_hex FROM ca_certificates WHERE status = 'active' AND org = 'org-a'",
        )
        .fetch_one(db.pool())
        .await
        .expect("current");
        assert_eq!(key, key_hex(&new_key));
    }
}

#[tokio::test]
async fn the_public_crl_is_the_last_one_built_and_requests_never_sign_one() {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        // Nothing built yet and the node cannot be reached: 503, nothing recorded.
        let offline = start(&db, &unreachable_node().await, config(&ca)).await;
        let (status, _) = get_crl(&serve(offline.router()).await).await;
        assert_eq!(status, 503, "{backend}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM ca_crl_state").await, 0);

        let mut state = ChainState::consortium();
        state.revoke("7a01", 1);
        let (stub, node) = stub_node(state).await;
        let svc = start(&db, &node, config(&ca)).await;
        let base = serve(svc.router()).await;

        // Still nothing built: the first request builds one, once, and records it.
        let (status, first) = get_crl(&base).await;
        assert_eq!(status, 200, "{backend}");
        let (entries, _) = crl_entries(&first, &ca.0);
        assert_eq!(entries, vec![("7a01".to_string(), Some(1))], "{backend}");
        assert_eq!(stub.with(|s| s.revocation_reads), 1, "{backend}");
        let built_ms: i64 = sqlx::query_scalar("SELECT built_ms FROM ca_crl_state")
            .fetch_one(db.pool())
            .await
            .expect("recorded");

        // Later requests serve that very CRL (ECDSA signs differently each time, so equal
        // bytes mean nothing was signed again), without reading the node or writing the
        // database, even when the beacon's list has changed meanwhile.
        stub.with(|s| s.revoke("7a02", 1));
        for _ in 0..25 {
            assert_eq!(get_crl(&base).await, (200, first.clone()), "{backend}");
        }
        assert_eq!(stub.with(|s| s.revocation_reads), 1, "{backend}");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM ca_revocations").await, 1);
        let unchanged: i64 = sqlx::query_scalar("SELECT built_ms FROM ca_crl_state")
            .fetch_one(db.pool())
            .await
            .expect("recorded");
        assert_eq!(unchanged, built_ms, "{backend}");

        // The manager rebuilds it because the list changed; requests serve the new one at
        // once. A pass with nothing new builds nothing.
        let pass = svc.reconcile_certificates(now_ms()).await.expect("pass");
        assert!(pass.crl_built && !pass.crl_written, "{backend}: {pass:?}");
        let (_, second) = get_crl(&base).await;
        assert_ne!(second, first, "{backend}");
        let (entries, number) = crl_entries(&second, &ca.0);
        assert_eq!(entries.len(), 2, "{backend}");
        assert_eq!(number, stub.with(|s| s.height).to_string());
        let quiet = svc.reconcile_certificates(now_ms()).await.expect("pass");
        assert!(!quiet.crl_built, "{backend}: {quiet:?}");
        assert_eq!(get_crl(&base).await, (200, second.clone()), "{backend}");

        // Another process on the same database serves the recorded CRL without its node.
        let other = start(&db, &unreachable_node().await, config(&ca)).await;
        assert_eq!(
            get_crl(&serve(other.router()).await).await,
            (200, second),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn the_operators_pending_revocation_is_left_alone_and_signed_again_when_stranded_behind_a_nonce_gap()
 {
    let ca = ca_files(2034);
    for (backend, db) in test_databases().await {
        let (stub, node) = stub_node(ChainState::consortium()).await;
        let svc = start(&db, &node, config(&ca)).await;
        let base = serve(svc.router()).await;
        let t0 = now_ms();
        let first = svc.reconcile_certificates(t0).await.expect("pass");
        let org_b_serial = first
            .issued
            .iter()
            .find(|e| e.org == "org-b")
            .expect("org-b certificate")
            .serial
            .clone();
        let op_key = key_hex(&operator());
        let next_nonce = |stub: &StubNode| stub.with(|s| s.accounts[&op_key].next_nonce);
        let n = next_nonce(&stub);
        let op = token(&db, Role::Operator, None).await;

        // Another process's transaction holds the operator key's next nonce in the pool and
        // does not execute. The operator revokes org-b's certificate: signed at n + 1, it
        // waits behind n and the request times out; it stays pending.
        stub.with(|s| s.held.insert((op_key.clone(), n)));
        let (status, body) = revoke(&base, &op, &org_b_serial, "key_compromise").await;
        assert_eq!(status, 504, "{backend}: {body}");
        let stranded: String = sqlx::query_scalar(
            "SELECT tx_hash FROM ca_revocation_submissions WHERE state = 'pending' AND nonce = $1",
        )
        .bind(i64::try_from(n + 1).unwrap())
        .fetch_one(db.pool())
        .await
        .expect("pending at n + 1");
        // Asking again signs nothing.
        let submitted = stub.with(|s| s.received.len());
        let (status, body) = revoke(&base, &op, &org_b_serial, "key_compromise").await;
        assert_eq!(status, 409, "{backend}: {body}");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .ends_with("/revocation-in-flight")
        );
        assert_eq!(stub.with(|s| s.received.len()), submitted);

        // org-b leaves. The manager leaves the operator's revocation of its certificate
        // alone; trying the gap at n finds it held (no gap after all) and changes nothing.
        stub.with(|s| s.set_member_status("org-b", false));
        let held = svc.reconcile_certificates(t0 + 1000).await.expect("pass");
        assert!(held.revocations_submitted.is_empty(), "{backend}: {held:?}");
        assert!(held.revocations_confirmed.is_empty(), "{backend}: {held:?}");
        let pending: Vec<String> = sqlx::query_scalar(
            "SELECT tx_hash FROM ca_revocation_submissions WHERE state = 'pending'",
        )
        .fetch_all(db.pool())
        .await
        .expect("pending");
        assert_eq!(pending, vec![stranded.clone()], "{backend}");
        assert_eq!(next_nonce(&stub), n, "{backend}");

        // The other process's transaction vanishes: nothing will ever use nonce n. The next
        // pass signs the stranded revocation again at n (the operator's reason kept); it
        // commits, and the stranded bytes, executed next, are refused as already revoked
        // (consuming n + 1).
        stub.with(|s| s.held.clear());
        let filled = svc.reconcile_certificates(t0 + 2000).await.expect("pass");
        assert_eq!(
            filled.revocations_confirmed,
            vec![org_b_serial.clone()],
            "{backend}: {filled:?}"
        );
        assert!(filled.revocations_submitted.is_empty(), "{backend}");
        assert!(filled.crl_built, "{backend}");
        let on_beacon: Vec<u32> = stub.with(|s| {
            s.revocations
                .iter()
                .filter(|r| r.serial == org_b_serial)
                .map(|r| r.reason)
                .collect()
        });
        assert_eq!(on_beacon, vec![1], "{backend}");
        assert_eq!(next_nonce(&stub), n + 2, "{backend}");
        assert_eq!(
            stub.with(|s| s.txs[&stranded]["reason_code"].clone()),
            "already-revoked"
        );
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, nonce FROM ca_revocation_submissions WHERE serial_hex = $1 \
             AND state <> 'dropped' ORDER BY nonce",
        )
        .bind(&org_b_serial)
        .fetch_all(db.pool())
        .await
        .expect("rows");
        let n = i64::try_from(n).unwrap();
        assert_eq!(
            rows,
            vec![
                ("committed".to_string(), n),
                ("replaced".to_string(), n + 1)
            ],
            "{backend}"
        );

        // Nonces go on from the node's: the next revocation is signed at n + 2 and commits.
        let (status, body) = revoke(&base, &op, "c0ffee", "superseded").await;
        assert_eq!(status, 201, "{backend}: {body}");
        assert_eq!(
            next_nonce(&stub),
            u64::try_from(n).unwrap() + 3,
            "{backend}"
        );
    }
}

/// Every CRL block of a PEM file, in order, as `(issuer DER, serials)`, each signature
/// checked against the certificate (PEM) expected to have signed it.
fn crls_signed_by(pem: &str, signers: &[&str]) -> Vec<HashSet<String>> {
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|b| b.expect("PEM block").contents)
        .collect();
    assert_eq!(blocks.len(), signers.len(), "one CRL per issuer");
    blocks
        .iter()
        .zip(signers)
        .map(|(der, signer)| {
            let (_, crl) = x509_parser::parse_x509_crl(der).expect("CRL parses");
            let signer_der = pem_der(signer);
            let (_, cert) = x509_parser::parse_x509_certificate(&signer_der).expect("signer");
            crl.verify_signature(cert.public_key())
                .expect("signed by its issuer");
            assert_eq!(crl.issuer().as_raw(), cert.subject().as_raw());
            crl.iter_revoked_certificates()
                .map(|r| hex::encode(r.raw_serial()))
                .collect()
        })
        .collect()
}

/// Org certificates issued outside the service (the genesis orgs' by `devnet init`, here by
/// the issuing CA a rotation replaced) are adopted rather than issued again, and revoked when
/// their member leaves — which is what cuts the nodes chained through them. The CRL file holds
/// one CRL per issuer the service signs for: the current issuing CA, the previous one, and the
/// org that delegated its node CRL, each listing the whole revocation list.
#[tokio::test]
async fn adopted_org_certificates_are_managed_and_every_issuer_signs_the_crl() {
    use trellis_membership::ca::{IssuingCa, OrgCa};
    let ca = ca_files(2034);
    let previous = ca_files(2034);
    let day_ms = 24 * 3600 * 1000;
    for (backend, db) in test_databases().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let crl_path = dir.path().join("crl.pem");
        let node_serial = "7a01";
        let mut state = ChainState::consortium();
        state.revoke(node_serial, 1);
        let (stub, node) = stub_node(state).await;
        let old = IssuingCa::from_pem(&previous.0, &previous.1).expect("old CA");
        let t0 = now_ms();
        let adopted = old
            .issue_org_certificate("org-a", org_a().public_key().0, t0 - 1000, 365 * day_ms)
            .expect("org-a's certificate");
        let org_a_chain = trellis_pki::chain_pem(&[adopted.pem.clone(), old.chain_pem()]);
        let delegated = OrgCa::from_seed(&org_a_chain, [1; 32]).expect("org-a");
        let configured = || {
            let mut cfg = config(&ca);
            cfg.crl_path = Some(crl_path.clone());
            cfg.previous_cas = vec![IssuingCa::from_pem(&previous.0, &previous.1).expect("old CA")];
            cfg.org_certificates = vec![adopted.pem.clone()];
            cfg.delegated_orgs = vec![OrgCa::from_seed(&org_a_chain, [1; 32]).expect("org-a")];
            cfg
        };
        let svc = start(&db, &node, configured()).await;

        let first = svc.reconcile_certificates(t0).await.expect("pass");
        let issued: Vec<_> = first.issued.iter().map(|e| e.org.as_str()).collect();
        assert_eq!(issued, ["org-b"], "{backend}: org-a's was adopted");
        let stored: String = sqlx::query_scalar(
            "SELECT serial_hex FROM ca_certificates WHERE org = 'org-a' AND status = 'active'",
        )
        .fetch_one(db.pool())
        .await
        .expect("org-a's current certificate");
        assert_eq!(stored, adopted.serial_hex, "{backend}");
        let signers = [ca.0.as_str(), previous.0.as_str(), delegated.cert_pem()];
        let pem = std::fs::read_to_string(&crl_path).expect("CRL file");
        for listed in crls_signed_by(&pem, &signers) {
            assert_eq!(
                listed,
                HashSet::from([node_serial.to_string()]),
                "{backend}"
            );
        }

        // org-a leaves: the adopted certificate is revoked, on every issuer's CRL.
        stub.with(|s| s.set_member_status("org-a", false));
        let removal = svc.reconcile_certificates(t0 + 1000).await.expect("pass");
        assert_eq!(
            removal.revocations_confirmed,
            vec![adopted.serial_hex.clone()],
            "{backend}: {removal:?}"
        );
        let pem = std::fs::read_to_string(&crl_path).expect("CRL file");
        for listed in crls_signed_by(&pem, &signers) {
            assert_eq!(
                listed,
                HashSet::from([node_serial.to_string(), adopted.serial_hex.clone()]),
                "{backend}"
            );
        }

        // A restart adopts nothing twice.
        drop(svc);
        let restarted = start(&db, &node, configured()).await;
        let after = restarted
            .reconcile_certificates(t0 + 2000)
            .await
            .expect("pass");
        assert!(after.issued.is_empty(), "{backend}: {after:?}");
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM ca_certificates").await,
            2,
            "{backend}"
        );

        // A certificate none of its issuing CAs signed is refused at start.
        let stranger = ca_files(2034);
        let foreign = IssuingCa::from_pem(&stranger.0, &stranger.1)
            .expect("CA")
            .issue_org_certificate("org-b", org_b().public_key().0, t0, day_ms)
            .expect("foreign certificate");
        let mut cfg = config(&ca);
        cfg.org_certificates = vec![foreign.pem];
        let refused = trellis_membership::MembershipService::start(
            db.clone(),
            tokens(&db).await,
            trellis_servicekit::NodeClient::new(&node).expect("node client"),
            cfg,
        )
        .await;
        assert!(refused.is_err(), "{backend}");
    }
}
