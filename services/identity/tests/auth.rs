//! Login and API keys over HTTP, on PostgreSQL and SQLite. Key logins read the account from a
//! node: here an HTTP test double of `GET /v1/accounts/{key}` ([`common::fake_node`]).

mod common;

use common::fake_node::FakeNode;
use common::{Auth, Options, TestApp, spawn};
use serde_json::{Value, json};
use trellis_servicekit::testing::test_databases;
use trellis_servicekit::{Role, now_ms};
use trellis_types::Signer;

async fn apps(node: &FakeNode) -> Vec<TestApp> {
    let mut out = Vec::new();
    for (backend, db) in test_databases().await {
        let opts = Options {
            node: node.base.clone(),
            ..Options::default()
        };
        out.push(spawn(backend, db, opts).await);
    }
    out
}

fn key_hex(s: &Signer) -> String {
    hex::encode(s.public_key().0)
}

async fn challenge(app: &TestApp, signer: &Signer) -> String {
    let a = app
        .post_json(
            "/v1/auth/challenge",
            &json!({"public_key": key_hex(signer)}),
            &Auth::None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let v = a.json();
    assert_eq!(v["expires_in_s"], 300);
    let c = v["challenge"].as_str().unwrap().to_string();
    assert_eq!(c.len(), 64);
    c
}

fn sign(signer: &Signer, challenge_hex: &str) -> String {
    let mut msg = b"trellis/auth-challenge/v1".to_vec();
    msg.extend_from_slice(&hex::decode(challenge_hex).unwrap());
    hex::encode(signer.sign(&msg).0)
}

async fn login(app: &TestApp, signer: &Signer, challenge: &str, signature: &str) -> common::Answer {
    app.post_json(
        "/v1/auth/token",
        &json!({"public_key": key_hex(signer), "challenge": challenge, "signature": signature}),
        &Auth::None,
    )
    .await
}

/// Checks a token answer and that the token is accepted (by the JWKS-published keys).
async fn check_token(
    app: &TestApp,
    answer: &common::Answer,
    role: &str,
    org: Option<&str>,
) -> String {
    assert_eq!(answer.status, 200, "{}", answer.text);
    let v = answer.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["role"], role);
    assert_eq!(v["org"], org.map_or(Value::Null, |o| json!(o)));
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!((800..=900).contains(&expires_in), "{expires_in}");
    let token = v["access_token"].as_str().unwrap().to_string();
    let claims = app.tokens.verify(&token).await.expect("verifies");
    assert_eq!(claims.role.as_str(), role);
    assert_eq!(claims.org.as_deref(), org);
    token
}

#[tokio::test]
async fn challenge_login() {
    let node = FakeNode::start().await;
    let member = Signer::from_seed([1; 32]);
    let operator = Signer::from_seed([2; 32]);
    let regulator = Signer::from_seed([3; 32]);
    let bank = Signer::from_seed([4; 32]);
    let removed = Signer::from_seed([5; 32]);
    let stranger = Signer::from_seed([6; 32]);
    node.add_account(&key_hex(&member), "member", "ORG1", 0);
    node.add_account(&key_hex(&operator), "operator", "ops", 0);
    node.add_account(&key_hex(&regulator), "regulator", "", 0);
    node.add_account(&key_hex(&bank), "bank", "BANK1", 0);
    node.add_account(&key_hex(&removed), "unspecified", "ORG2", 3);

    for app in apps(&node).await {
        // Each chain role becomes its API role.
        for (signer, role, org) in [
            (&member, "enterprise_admin", Some("ORG1")),
            (&operator, "operator", Some("ops")),
            (&regulator, "regulator", None),
            (&bank, "bank", Some("BANK1")),
        ] {
            let c = challenge(&app, signer).await;
            let a = login(&app, signer, &c, &sign(signer, &c)).await;
            let token = check_token(&app, &a, role, org).await;
            // The token works as a caller: only the operator may list applications.
            let list = app
                .get("/v1/onboarding/applications", &Auth::Bearer(token))
                .await;
            let expected = if role == "operator" { 200 } else { 403 };
            assert_eq!(list.status.as_u16(), expected, "{role}: {}", list.text);
        }

        // A bad signature: 401, and the challenge is still usable afterwards.
        let c = challenge(&app, &member).await;
        let other = sign(&operator, &c);
        login(&app, &member, &c, &other).await.problem(401);
        let mut flipped = hex::decode(sign(&member, &c)).unwrap();
        flipped[10] ^= 1;
        login(&app, &member, &c, &hex::encode(flipped))
            .await
            .problem(401);
        let ok = login(&app, &member, &c, &sign(&member, &c)).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        // Used once: a replay is refused.
        login(&app, &member, &c, &sign(&member, &c))
            .await
            .problem(401);

        // A challenge issued to another key does not serve this one.
        let c = challenge(&app, &operator).await;
        login(&app, &member, &c, &sign(&member, &c))
            .await
            .problem(401);
        // A made-up challenge.
        let made_up = "ab".repeat(32);
        login(&app, &member, &made_up, &sign(&member, &made_up))
            .await
            .problem(401);

        // Expired: moved into the past in the database, as five minutes would.
        let c = challenge(&app, &member).await;
        sqlx::query("UPDATE identity_auth_challenges SET expires_ms = 1 WHERE challenge = $1")
            .bind(&c)
            .execute(app.db.pool())
            .await
            .unwrap();
        let a = login(&app, &member, &c, &sign(&member, &c)).await;
        let p = a.problem(401);
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");

        // A removed member's key (role unspecified): 403. A key unknown to the chain: 401.
        let c = challenge(&app, &removed).await;
        login(&app, &removed, &c, &sign(&removed, &c))
            .await
            .problem(403);
        let c = challenge(&app, &stranger).await;
        login(&app, &stranger, &c, &sign(&stranger, &c))
            .await
            .problem(401);

        // Malformed requests name the field.
        app.post_json(
            "/v1/auth/challenge",
            &json!({"public_key": "xyz"}),
            &Auth::None,
        )
        .await
        .problem_field(400, "public_key");
        app.post_json("/v1/auth/challenge", &json!({"key": "xyz"}), &Auth::None)
            .await
            .problem_field(400, "key");
        let c = challenge(&app, &member).await;
        for (body, field) in [
            (
                json!({"public_key": key_hex(&member), "challenge": c}),
                "signature",
            ),
            (
                json!({"public_key": key_hex(&member), "signature": "00"}),
                "challenge",
            ),
            (json!({"challenge": c, "signature": "00"}), "public_key"),
            (
                json!({"public_key": key_hex(&member), "challenge": "zz", "signature": sign(&member, &c)}),
                "challenge",
            ),
            (
                json!({"public_key": key_hex(&member), "challenge": c, "signature": "abcd"}),
                "signature",
            ),
            (
                json!({"api_key": "k", "public_key": key_hex(&member)}),
                "api_key",
            ),
            (json!({"password": "hunter2"}), "password"),
        ] {
            app.post_json("/v1/auth/token", &body, &Auth::None)
                .await
                .problem_field(400, field);
        }
    }
}

#[tokio::test]
async fn challenge_login_without_a_node_is_503() {
    for (backend, db) in test_databases().await {
        let app = spawn(backend, db, Options::default()).await;
        let s = Signer::from_seed([9; 32]);
        let c = challenge(&app, &s).await;
        login(&app, &s, &c, &sign(&s, &c)).await.problem(503);
    }
}

async fn create_key(app: &TestApp, auth: &Auth, body: Value) -> common::Answer {
    app.post_json("/v1/auth/api-keys", &body, auth).await
}

const DAY_MS: i64 = 86_400_000;

/// Makes a key (asserting 201); returns (id, key).
async fn new_key(app: &TestApp, auth: &Auth, body: Value) -> (String, String) {
    let a = create_key(app, auth, body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let v = a.json();
    (
        v["id"].as_str().unwrap().to_string(),
        v["api_key"].as_str().unwrap().to_string(),
    )
}

async fn key_login(app: &TestApp, api_key: &str) -> common::Answer {
    app.post_json("/v1/auth/token", &json!({"api_key": api_key}), &Auth::None)
        .await
}

async fn revoke(app: &TestApp, id: &str, auth: &Auth) -> common::Answer {
    app.send(
        app.http.delete(app.url(&format!("/v1/auth/api-keys/{id}"))),
        auth,
    )
    .await
}

/// The ids in a key list answer.
fn listed_ids(a: &common::Answer) -> Vec<String> {
    assert_eq!(a.status, 200, "{}", a.text);
    a.json()["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn api_keys_expire() {
    let node = FakeNode::start().await;
    for app in apps(&node).await {
        let op = app.operator().await;
        for days in [0, 366, 10_000] {
            create_key(
                &app,
                &op,
                json!({"role": "regulator", "label": "x", "expires_in_days": days}),
            )
            .await
            .problem_field(400, "expires_in_days");
        }
        for days in [1i64, 365] {
            let a = create_key(
                &app,
                &op,
                json!({"role": "regulator", "label": "x", "expires_in_days": days}),
            )
            .await;
            assert_eq!(a.status, 201, "{}", a.text);
            let expires = a.json()["expires_ms"].as_i64().unwrap();
            let want = now_ms() + days * DAY_MS;
            assert!(
                (want - 60_000..=want).contains(&expires),
                "{days}: {expires}"
            );
        }
        let (id, key) = new_key(
            &app,
            &op,
            json!({"role": "regulator", "label": "audit", "expires_in_days": 1}),
        )
        .await;
        check_token(&app, &key_login(&app, &key).await, "regulator", None).await;
        // A day later (moved into the past in the database): refused.
        sqlx::query("UPDATE identity_api_keys SET expires_ms = $1 WHERE id = $2")
            .bind(now_ms() - 1)
            .bind(&id)
            .execute(app.db.pool())
            .await
            .unwrap();
        let p = key_login(&app, &key).await.problem(401);
        assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
        let list = app.get("/v1/auth/api-keys", &op).await.json();
        let listed = list["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()
            .clone();
        assert_eq!(listed["active"], false, "{listed}");
        assert_eq!(listed["revoked_ms"], Value::Null);
    }
}

#[tokio::test]
async fn api_keys_are_listed_and_revoked() {
    let node = FakeNode::start().await;
    node.add_member("ORG1", &"11".repeat(32));
    node.add_member("ORG2", &"22".repeat(32));
    for app in apps(&node).await {
        let op = app.operator().await;
        let admin1 = Auth::Bearer(app.token(Role::EnterpriseAdmin, Some("ORG1")).await);
        let admin2 = Auth::Bearer(app.token(Role::EnterpriseAdmin, Some("ORG2")).await);
        let (reg_id, reg_key) =
            new_key(&app, &op, json!({"role": "regulator", "label": "audit"})).await;
        let (a1_id, a1_key) = new_key(
            &app,
            &op,
            json!({"role": "enterprise_admin", "org": "ORG1", "label": "admin"}),
        )
        .await;
        let (m1_id, m1_key) = new_key(
            &app,
            &admin1,
            json!({"role": "enterprise_member", "label": "clerk"}),
        )
        .await;
        let (m2_id, m2_key) = new_key(
            &app,
            &admin2,
            json!({"role": "enterprise_member", "label": "clerk"}),
        )
        .await;

        // Operators see every key, newest first; metadata only.
        let all = app.get("/v1/auth/api-keys", &op).await;
        assert_eq!(listed_ids(&all).len(), 4);
        let mut sorted = listed_ids(&all);
        sorted.sort();
        let mut want = vec![reg_id.clone(), a1_id.clone(), m1_id.clone(), m2_id.clone()];
        want.sort();
        assert_eq!(sorted, want);
        for key in [&reg_key, &a1_key, &m1_key, &m2_key] {
            assert!(!all.text.contains(key.as_str()), "a key is listed");
            assert!(!all.text.contains(&common::sha256_hex(key.as_bytes())));
        }
        let m1 = all.json()["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == m1_id.as_str())
            .unwrap()
            .clone();
        assert_eq!(m1["role"], "enterprise_member");
        assert_eq!(m1["org"], "ORG1");
        assert_eq!(m1["label"], "clerk");
        assert_eq!(m1["created_by"], "test-enterprise_admin");
        assert_eq!(m1["active"], true);
        assert_eq!(m1["revoked_ms"], Value::Null);
        assert!(m1.get("api_key").is_none() && m1.get("key_sha256").is_none());
        let created: Vec<i64> = all.json()["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["created_ms"].as_i64().unwrap())
            .collect();
        assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
        // One org's, and a bound.
        let mut org1 = listed_ids(&app.get("/v1/auth/api-keys?org=ORG1", &op).await);
        org1.sort();
        let mut want1 = vec![a1_id.clone(), m1_id.clone()];
        want1.sort();
        assert_eq!(org1, want1);
        assert_eq!(
            listed_ids(&app.get("/v1/auth/api-keys?limit=1", &op).await).len(),
            1
        );
        for q in ["limit=0", "limit=501", "colour=red"] {
            app.get(&format!("/v1/auth/api-keys?{q}"), &op)
                .await
                .problem(400);
        }

        // An enterprise admin sees its own org's keys only.
        let mut own = listed_ids(&app.get("/v1/auth/api-keys", &admin1).await);
        own.sort();
        assert_eq!(own, want1);
        assert_eq!(
            listed_ids(&app.get("/v1/auth/api-keys?org=ORG1", &admin1).await).len(),
            2
        );
        app.get("/v1/auth/api-keys?org=ORG2", &admin1)
            .await
            .problem(403);
        assert_eq!(
            listed_ids(&app.get("/v1/auth/api-keys", &admin2).await),
            vec![m2_id.clone()]
        );
        // Nobody else lists keys.
        for (role, org) in [
            (Role::EnterpriseMember, Some("ORG1")),
            (Role::Regulator, None),
            (Role::Bank, Some("BANK1")),
        ] {
            let auth = Auth::Bearer(app.token(role, org).await);
            app.get("/v1/auth/api-keys", &auth).await.problem(403);
            revoke(&app, &m1_id, &auth).await.problem(403);
        }
        app.get("/v1/auth/api-keys", &Auth::None).await.problem(401);
        revoke(&app, &m1_id, &Auth::None).await.problem(401);

        // Revoking: an enterprise admin only its own org's keys.
        revoke(&app, &m2_id, &admin1).await.problem(403);
        revoke(&app, &reg_id, &admin1).await.problem(403);
        check_token(
            &app,
            &key_login(&app, &m2_key).await,
            "enterprise_member",
            Some("ORG2"),
        )
        .await;
        check_token(
            &app,
            &key_login(&app, &m1_key).await,
            "enterprise_member",
            Some("ORG1"),
        )
        .await;
        let r = revoke(&app, &m1_id, &admin1).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["id"], m1_id.as_str());
        assert_eq!(v["active"], false);
        assert_eq!(v["revoked_by"], "test-enterprise_admin");
        let revoked_ms = v["revoked_ms"].as_i64().unwrap();
        assert!(revoked_ms <= now_ms());
        let p = key_login(&app, &m1_key).await.problem(401);
        assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
        // Again: nothing changes.
        let again = revoke(&app, &m1_id, &admin1).await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.json()["revoked_ms"], revoked_ms);
        // Operators revoke any key; unknown ids are 404.
        assert_eq!(revoke(&app, &reg_id, &op).await.status, 200);
        key_login(&app, &reg_key).await.problem(401);
        assert_eq!(revoke(&app, &m2_id, &op).await.status, 200);
        key_login(&app, &m2_key).await.problem(401);
        revoke(&app, &"0".repeat(32), &op).await.problem(404);
        revoke(&app, &"0".repeat(32), &admin1).await.problem(404);
        // The others still log in; the listing shows who was revoked.
        check_token(
            &app,
            &key_login(&app, &a1_key).await,
            "enterprise_admin",
            Some("ORG1"),
        )
        .await;
        let listed = app.get("/v1/auth/api-keys", &op).await.json();
        for k in listed["api_keys"].as_array().unwrap() {
            let active = k["id"] == a1_id.as_str();
            assert_eq!(k["active"], active, "{k}");
            assert_eq!(k["revoked_ms"].is_null(), active, "{k}");
        }
    }
}

#[tokio::test]
async fn enterprise_api_keys_need_an_active_member() {
    let node = FakeNode::start().await;
    for app in apps(&node).await {
        let op = app.operator().await;
        let (_, member_key) = new_key(
            &app,
            &op,
            json!({"role": "enterprise_member", "org": "ORG7", "label": "erp"}),
        )
        .await;
        let (_, admin_key) = new_key(
            &app,
            &op,
            json!({"role": "enterprise_admin", "org": "ORG7", "label": "admin"}),
        )
        .await;
        let (_, bank_key) = new_key(
            &app,
            &op,
            json!({"role": "bank", "org": "BANK1", "label": "bank"}),
        )
        .await;
        // Not (yet) a member: 403.
        for key in [&member_key, &admin_key] {
            let p = key_login(&app, key).await.problem(403);
            assert!(p["detail"].as_str().unwrap().contains("member"), "{p}");
        }
        // Admitted: the keys work.
        node.add_member("ORG7", &"77".repeat(32));
        check_token(
            &app,
            &key_login(&app, &member_key).await,
            "enterprise_member",
            Some("ORG7"),
        )
        .await;
        check_token(
            &app,
            &key_login(&app, &admin_key).await,
            "enterprise_admin",
            Some("ORG7"),
        )
        .await;
        // Removed: they stop working.
        node.remove_member("ORG7");
        for key in [&member_key, &admin_key] {
            key_login(&app, key).await.problem(403);
        }
        // Other roles do not depend on membership.
        check_token(
            &app,
            &key_login(&app, &bank_key).await,
            "bank",
            Some("BANK1"),
        )
        .await;
        // The next backend starts with ORG7 unknown again.
        let mut s = node.state.lock().unwrap();
        s.members.remove("ORG7");
        s.removed.remove("ORG7");
    }
    // Without a node an enterprise key cannot be checked: 503. Other keys need no node.
    for (backend, db) in test_databases().await {
        let app = spawn(backend, db, Options::default()).await;
        let op = app.operator().await;
        let (_, member_key) = new_key(
            &app,
            &op,
            json!({"role": "enterprise_member", "org": "ORG7", "label": "erp"}),
        )
        .await;
        let (_, reg_key) = new_key(&app, &op, json!({"role": "regulator", "label": "r"})).await;
        key_login(&app, &member_key).await.problem(503);
        check_token(&app, &key_login(&app, &reg_key).await, "regulator", None).await;
    }
}

#[tokio::test]
async fn api_keys() {
    let node = FakeNode::start().await;
    node.add_member("ORG1", &"11".repeat(32));
    for app in apps(&node).await {
        let op = app.operator().await;
        // An operator makes a key for an enterprise member.
        let a = create_key(
            &app,
            &op,
            json!({"role": "enterprise_member", "org": "ORG1", "label": "erp sync"}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
        let created = a.json();
        let api_key = created["api_key"].as_str().unwrap().to_string();
        assert!(api_key.starts_with("trk_"));
        // 90 days unless asked otherwise.
        let expires = created["expires_ms"].as_i64().unwrap();
        let in_90_days = now_ms() + 90 * DAY_MS;
        assert!(
            (in_90_days - 60_000..=in_90_days).contains(&expires),
            "{created}"
        );
        // Only its hash is stored.
        let stored: Vec<String> = sqlx::query("SELECT key_sha256 FROM identity_api_keys")
            .fetch_all(app.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| sqlx::Row::get(r, 0))
            .collect();
        assert_eq!(stored, vec![common::sha256_hex(api_key.as_bytes())]);

        let t = app
            .post_json("/v1/auth/token", &json!({"api_key": api_key}), &Auth::None)
            .await;
        check_token(&app, &t, "enterprise_member", Some("ORG1")).await;
        app.post_json(
            "/v1/auth/token",
            &json!({"api_key": "trk_nope"}),
            &Auth::None,
        )
        .await
        .problem(401);
        app.post_json("/v1/auth/token", &json!({"api_key": ""}), &Auth::None)
            .await
            .problem_field(400, "api_key");

        // Operators may make any role; enterprise roles need an org.
        let a = create_key(&app, &op, json!({"role": "regulator", "label": "audit"})).await;
        assert_eq!(a.status, 201, "{}", a.text);
        let reg_key = a.json()["api_key"].as_str().unwrap().to_string();
        let t = app
            .post_json("/v1/auth/token", &json!({"api_key": reg_key}), &Auth::None)
            .await;
        check_token(&app, &t, "regulator", None).await;
        create_key(&app, &op, json!({"role": "enterprise_admin", "label": "x"}))
            .await
            .problem_field(400, "org");
        create_key(&app, &op, json!({"role": "king", "label": "x"}))
            .await
            .problem_field(400, "role");
        create_key(
            &app,
            &op,
            json!({"role": "bank", "org": "bad org!", "label": "x"}),
        )
        .await
        .problem_field(400, "org");
        create_key(&app, &op, json!({"role": "bank", "label": ""}))
            .await
            .problem_field(400, "label");

        // An enterprise admin: enterprise_member keys for its own org only.
        let admin = Auth::Bearer(app.token(Role::EnterpriseAdmin, Some("ORG1")).await);
        let a = create_key(
            &app,
            &admin,
            json!({"role": "enterprise_member", "label": "clerk"}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
        assert_eq!(a.json()["org"], "ORG1");
        let a = create_key(
            &app,
            &admin,
            json!({"role": "enterprise_member", "org": "ORG1", "label": "clerk"}),
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.text);
        create_key(
            &app,
            &admin,
            json!({"role": "enterprise_member", "org": "ORG2", "label": "x"}),
        )
        .await
        .problem(403);
        for role in ["enterprise_admin", "operator", "regulator", "bank"] {
            create_key(&app, &admin, json!({"role": role, "label": "x"}))
                .await
                .problem(403);
        }
        // Nobody else makes keys.
        for (role, org) in [
            (Role::EnterpriseMember, Some("ORG1")),
            (Role::Regulator, None),
            (Role::Bank, Some("BANK1")),
        ] {
            let auth = Auth::Bearer(app.token(role, org).await);
            create_key(
                &app,
                &auth,
                json!({"role": "enterprise_member", "org": "ORG1", "label": "x"}),
            )
            .await
            .problem(403);
        }
        create_key(&app, &Auth::None, json!({"role": "bank", "label": "x"}))
            .await
            .problem(401);
    }
}

#[tokio::test]
async fn key_rotation_and_jwks() {
    for (backend, db) in test_databases().await {
        let app = spawn(backend, db, Options::default()).await;
        let jwks = app.get("/.well-known/jwks.json", &Auth::None).await;
        assert_eq!(jwks.status, 200);
        let before = jwks.json()["keys"].as_array().unwrap().len();
        assert_eq!(before, 1);
        let old_token = app.token(Role::Operator, None).await;

        for (role, org) in [
            (Role::Regulator, None),
            (Role::EnterpriseAdmin, Some("ORG1")),
        ] {
            let auth = Auth::Bearer(app.token(role, org).await);
            app.post_json("/v1/auth/keys/rotate", &json!({}), &auth)
                .await
                .problem(403);
        }
        app.post_json("/v1/auth/keys/rotate", &json!({}), &Auth::None)
            .await
            .problem(401);

        let r = app
            .post_json(
                "/v1/auth/keys/rotate",
                &json!({}),
                &Auth::Bearer(old_token.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let kid = r.json()["kid"].as_str().unwrap().to_string();
        let keys = app.get("/.well-known/jwks.json", &Auth::None).await.json();
        let kids: Vec<&str> = keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert!(kids.contains(&kid.as_str()));
        // Tokens of the old key still work; new ones carry the new kid.
        let list = app
            .get("/v1/onboarding/applications", &Auth::Bearer(old_token))
            .await;
        assert_eq!(list.status, 200);
        assert_eq!(
            app.tokens.signing_kid().await.as_deref(),
            Some(kid.as_str())
        );
    }
}
