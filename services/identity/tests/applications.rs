//! Onboarding applications over HTTP, on PostgreSQL and SQLite: field validation, duplicates,
//! idempotency, who may see what, documents, and the rejection path of the review.

mod common;

use common::{
    Auth, Options, TestApp, application, credit_code, org_key, resident_id, sha256_hex, spawn,
};
use serde_json::{Value, json};
use sqlx::Row;
use trellis_servicekit::testing::test_databases;
use trellis_servicekit::{Backend, Claims, Role};

async fn apps() -> Vec<TestApp> {
    let mut out = Vec::new();
    for (backend, db) in test_databases().await {
        out.push(spawn(backend, db, Options::default()).await);
    }
    out
}

/// Sets `path` (dotted) in `v` to `value`, or removes it when `value` is None.
fn edit(mut v: Value, path: &str, value: Option<Value>) -> Value {
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().unwrap();
    let mut cur = &mut v;
    for p in parents {
        cur = cur.get_mut(*p).unwrap();
    }
    let obj = cur.as_object_mut().unwrap();
    match value {
        Some(x) => {
            obj.insert(last.to_string(), x);
        }
        None => {
            obj.remove(*last);
        }
    }
    v
}

#[tokio::test]
async fn every_invalid_field_is_a_400_naming_it() {
    let good_code = credit_code(1);
    let wrong_check = {
        let mut c = good_code.clone();
        let last = c.pop().unwrap();
        c.push(if last == '0' { '1' } else { '0' });
        c
    };
    let good_id = resident_id("19491231");
    let wrong_id_check = {
        let mut c = good_id.clone();
        let last = c.pop().unwrap();
        c.push(if last == '0' { '1' } else { '0' });
        c
    };
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        (
            "unified_social_credit_code",
            Some(json!(wrong_check)),
            "unified_social_credit_code",
        ),
        (
            "unified_social_credit_code",
            Some(json!("91350100")),
            "unified_social_credit_code",
        ),
        (
            "legal_representative.id_number",
            Some(json!(wrong_id_check)),
            "legal_representative.id_number",
        ),
        // 30 February.
        (
            "legal_representative.id_number",
            Some(json!(resident_id("19490230"))),
            "legal_representative.id_number",
        ),
        // Born in the future.
        (
            "legal_representative.id_number",
            Some(json!(resident_id("30000101"))),
            "legal_representative.id_number",
        ),
        (
            "legal_representative.name",
            Some(json!("  ")),
            "legal_representative.name",
        ),
        ("legal_name", Some(json!("")), "legal_name"),
        (
            "contact.email",
            Some(json!("not-an-email")),
            "contact.email",
        ),
        ("contact.email", Some(json!("a@localhost")), "contact.email"),
        ("contact.phone", Some(json!("call me")), "contact.phone"),
        ("org_public_key", Some(json!("abcd")), "org_public_key"),
        // Not a curve point.
        (
            "org_public_key",
            Some(json!(format!("02{}", "00".repeat(31)))),
            "org_public_key",
        ),
        // Unknown fields, top level and nested.
        ("extra", Some(json!(1)), "extra"),
        (
            "legal_representative.age",
            Some(json!(40)),
            "legal_representative.age",
        ),
        // Missing fields.
        ("contact.phone", None, "contact.phone"),
        ("org_public_key", None, "org_public_key"),
        // Wrong type.
        (
            "legal_representative.id_number",
            Some(json!(110105)),
            "legal_representative.id_number",
        ),
    ];
    for app in apps().await {
        for (path, value, field) in &cases {
            let body = edit(application(1), path, value.clone());
            let a = app
                .post_json("/v1/onboarding/applications", &body, &Auth::None)
                .await;
            let p = a.problem_field(400, field);
            assert!(
                !p["detail"].as_str().unwrap().is_empty(),
                "{}: {p}",
                app.backend
            );
        }
        // Not JSON at all.
        let a = app
            .send(
                app.http
                    .post(app.url("/v1/onboarding/applications"))
                    .header("content-type", "text/plain")
                    .body("hello"),
                &Auth::None,
            )
            .await;
        a.problem(400);
        // Nothing was stored.
        let list = app
            .get("/v1/onboarding/applications", &app.operator().await)
            .await;
        assert_eq!(list.json()["applications"].as_array().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn duplicates_are_409_until_rejected() {
    for app in apps().await {
        let (id, _) = app.apply(&application(1)).await;
        // Same credit code.
        let a = app
            .post_json("/v1/onboarding/applications", &application(1), &Auth::None)
            .await;
        let p = a.problem_field(409, "unified_social_credit_code");
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .ends_with("/duplicate-application")
        );
        // Another credit code, same org key.
        let same_key = edit(application(2), "org_public_key", Some(json!(org_key(1))));
        let a = app
            .post_json("/v1/onboarding/applications", &same_key, &Auth::None)
            .await;
        a.problem_field(409, "org_public_key");
        // After a rejection the enterprise may apply again.
        let op = app.operator().await;
        let d = app
            .decide(
                &id,
                &json!({"approve": false, "reason": "licence expired"}),
                &op,
            )
            .await;
        assert_eq!(d.status, 200, "{}", d.text);
        app.apply(&application(1)).await;
    }
}

#[tokio::test]
async fn idempotent_retries() {
    for app in apps().await {
        let send = |body: String, key: &'static str| {
            app.http
                .post(app.url("/v1/onboarding/applications"))
                .header("content-type", "application/json")
                .header("Idempotency-Key", key)
                .body(body)
        };
        let body = application(3);
        let first = app
            .send(send(body.to_string(), "retry-1"), &Auth::None)
            .await;
        assert_eq!(first.status, 201, "{}", first.text);
        // The same request again: the same answer, token included.
        let again = app
            .send(send(body.to_string(), "retry-1"), &Auth::None)
            .await;
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(again.json(), first.json());
        // The same document spelled differently is the same request.
        let pretty = serde_json::to_string_pretty(&body).unwrap();
        let again = app.send(send(pretty, "retry-1"), &Auth::None).await;
        assert_eq!(again.json()["id"], first.json()["id"]);
        // Another body under the same key: 422.
        let other = app
            .send(send(application(4).to_string(), "retry-1"), &Auth::None)
            .await;
        let p = other.problem(422);
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .ends_with("/idempotency-key-reused"),
            "{p}"
        );
        // Without the key the duplicate is a 409.
        let dup = app
            .post_json("/v1/onboarding/applications", &body, &Auth::None)
            .await;
        dup.problem(409);
        // The replayed token works.
        let token = first.json()["token"].as_str().unwrap().to_string();
        let id = first.json()["id"].as_str().unwrap().to_string();
        let v = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &Auth::App(token),
            )
            .await;
        assert_eq!(v.status, 200, "{}", v.text);
        // A malformed key is a 400 naming the header.
        let bad = app
            .send(
                app.http
                    .post(app.url("/v1/onboarding/applications"))
                    .json(&application(5))
                    .header("Idempotency-Key", ""),
                &Auth::None,
            )
            .await;
        bad.problem_field(400, "Idempotency-Key");
    }
}

#[tokio::test]
async fn applicant_token_opens_only_its_own_application() {
    for app in apps().await {
        let (id1, token1) = app.apply(&application(1)).await;
        let (id2, token2) = app.apply(&application(2)).await;
        let v = app
            .get(
                &format!("/v1/onboarding/applications/{id1}"),
                &Auth::App(token1.clone()),
            )
            .await;
        assert_eq!(v.status, 200, "{}", v.text);
        let v = v.json();
        assert_eq!(v["id"], id1);
        assert_eq!(v["status"], "pending");
        assert_eq!(v["org"], credit_code(1));
        assert_eq!(v["legal_representative"]["name"], "张三");
        assert!(v["legal_representative"].get("id_number").is_none(), "{v}");
        assert!(!v.to_string().contains(&resident_id("19491231")));
        assert!(v.get("decided_by").is_none());
        // Another application's token, a made-up token, an unknown id.
        app.get(
            &format!("/v1/onboarding/applications/{id1}"),
            &Auth::App(token2.clone()),
        )
        .await
        .problem(403);
        app.get(
            &format!("/v1/onboarding/applications/{id2}"),
            &Auth::App(token1.clone()),
        )
        .await
        .problem(403);
        app.get(
            &format!("/v1/onboarding/applications/{id1}"),
            &Auth::App("0".repeat(64)),
        )
        .await
        .problem(403);
        app.get(
            "/v1/onboarding/applications/nope",
            &Auth::App(token1.clone()),
        )
        .await
        .problem(403);
        // Nothing at all.
        let a = app
            .get(&format!("/v1/onboarding/applications/{id1}"), &Auth::None)
            .await;
        a.problem(401);
        // The token is not a JWT.
        app.get(
            &format!("/v1/onboarding/applications/{id1}"),
            &Auth::Bearer(token1.clone()),
        )
        .await
        .problem(401);
        // The applicant cannot decide or list.
        app.decide(&id1, &json!({"approve": true}), &Auth::App(token1.clone()))
            .await
            .problem(401);
        app.get("/v1/onboarding/applications", &Auth::App(token1))
            .await
            .problem(401);
    }
}

#[tokio::test]
async fn operators_list_and_read_everything() {
    for app in apps().await {
        let op = app.operator().await;
        let (id1, _) = app.apply(&application(1)).await;
        let (id2, _) = app.apply(&application(2)).await;
        let v = app
            .get(&format!("/v1/onboarding/applications/{id1}"), &op)
            .await;
        assert_eq!(v.status, 200, "{}", v.text);
        let v = v.json();
        assert_eq!(
            v["legal_representative"]["id_number"],
            resident_id("19491231")
        );
        assert_eq!(v["contact"]["email"], "ops1@example.cn");
        assert_eq!(v["contact"]["phone"], "+86 138-0013-8000");
        assert_eq!(v["org_public_key"], org_key(1));
        app.get("/v1/onboarding/applications/unknown", &op)
            .await
            .problem(404);

        app.decide(
            &id2,
            &json!({"approve": false, "reason": "no licence"}),
            &op,
        )
        .await;
        let list = app
            .get("/v1/onboarding/applications?status=pending", &op)
            .await;
        assert_eq!(list.status, 200, "{}", list.text);
        let list = list.json();
        let items = list["applications"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], id1);
        assert_eq!(
            items[0]["legal_representative"]["id_number"],
            resident_id("19491231")
        );
        let all = app.get("/v1/onboarding/applications", &op).await.json();
        assert_eq!(all["applications"].as_array().unwrap().len(), 2);
        let rejected = app
            .get("/v1/onboarding/applications?status=rejected", &op)
            .await
            .json();
        assert_eq!(rejected["applications"][0]["id"], id2);
        app.get("/v1/onboarding/applications?status=bogus", &op)
            .await
            .problem_field(400, "status");
        app.get("/v1/onboarding/applications?limit=0", &op)
            .await
            .problem_field(400, "limit");
        app.get("/v1/onboarding/applications?color=red", &op)
            .await
            .problem_field(400, "color");
    }
}

#[tokio::test]
async fn other_roles_get_403_and_no_personal_data() {
    for app in apps().await {
        let (id, token) = app.apply(&application(1)).await;
        let up = app
            .upload(
                &id,
                "licence.pdf",
                &sha256_hex(b"pdf"),
                b"pdf".to_vec(),
                &Auth::App(token),
            )
            .await;
        assert_eq!(up.status, 201, "{}", up.text);
        let doc = up.json()["document_id"].as_str().unwrap().to_string();
        let org = credit_code(1);
        let callers = [
            (Role::Regulator, None),
            (Role::Bank, Some("BANK1")),
            (Role::EnterpriseAdmin, Some(org.as_str())),
            (Role::EnterpriseMember, Some(org.as_str())),
        ];
        for (role, org) in callers {
            let auth = Auth::Bearer(app.token(role, org).await);
            let answers = vec![
                app.get(&format!("/v1/onboarding/applications/{id}"), &auth)
                    .await,
                app.get("/v1/onboarding/applications", &auth).await,
                app.get("/v1/onboarding/applications?status=pending", &auth)
                    .await,
                app.get(
                    &format!("/v1/onboarding/applications/{id}/documents/{doc}"),
                    &auth,
                )
                .await,
                app.upload(&id, "x.pdf", &sha256_hex(b"x"), b"x".to_vec(), &auth)
                    .await,
                // An enterprise approving (itself) is refused.
                app.decide(&id, &json!({"approve": true}), &auth).await,
                app.decide(&id, &json!({"approve": false, "reason": "no"}), &auth)
                    .await,
            ];
            for a in answers {
                a.problem(403);
                for secret in [
                    "张三",
                    "ops1@example.cn",
                    "138-0013",
                    &resident_id("19491231"),
                ] {
                    assert!(!a.text.contains(secret), "{role}: {}", a.text);
                }
            }
        }
        // Still pending: nobody but an operator decided anything.
        let v = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &app.operator().await,
            )
            .await;
        assert_eq!(v.json()["status"], "pending");
    }
}

#[tokio::test]
async fn bad_jwts_are_401() {
    for app in apps().await {
        let now = trellis_servicekit::now_ms() as u64 / 1000;
        let base = Claims {
            iss: "trellis".into(),
            aud: "trellis-api".into(),
            sub: "op".into(),
            role: Role::Operator,
            org: None,
            iat: now,
            exp: now + 600,
            jti: "t".into(),
        };
        let good = app.tokens.issue_with(&base).await.unwrap();
        assert_eq!(
            app.get("/v1/onboarding/applications", &Auth::Bearer(good))
                .await
                .status,
            200
        );
        let wrong_aud = app
            .tokens
            .issue_with(&Claims {
                aud: "another-api".into(),
                ..base.clone()
            })
            .await
            .unwrap();
        let expired = app
            .tokens
            .issue_with(&Claims {
                iat: now - 7200,
                exp: now - 3600,
                ..base.clone()
            })
            .await
            .unwrap();
        // Signed by a key this service never had.
        let (other_db, _) =
            trellis_servicekit::testing::fresh_database(trellis_servicekit::Backend::Sqlite).await;
        let stranger = trellis_servicekit::TokenService::new(
            other_db,
            trellis_servicekit::Keyring::generate("x").unwrap(),
            trellis_servicekit::TokenConfig::default(),
        )
        .await
        .unwrap();
        let unknown_key = stranger.issue_with(&base).await.unwrap();
        for (what, token) in [
            ("aud", wrong_aud),
            ("exp", expired),
            ("kid", unknown_key),
            ("junk", "a.b.c".into()),
        ] {
            for path in [
                "/v1/onboarding/applications",
                "/v1/onboarding/applications/x",
            ] {
                let a = app.get(path, &Auth::Bearer(token.clone())).await;
                a.problem(401);
                assert!(a.text.len() < 400, "{what}: {}", a.text);
            }
            app.decide("x", &json!({"approve": true}), &Auth::Bearer(token.clone()))
                .await
                .problem(401);
        }
        app.decide("x", &json!({"approve": true}), &Auth::None)
            .await
            .problem(401);
        app.get("/v1/onboarding/applications", &Auth::None)
            .await
            .problem(401);
    }
}

#[tokio::test]
async fn documents() {
    for app in apps().await {
        let (id, token) = app.apply(&application(1)).await;
        let (other, other_token) = app.apply(&application(2)).await;
        let applicant = Auth::App(token.clone());
        let pdf = b"%PDF-1.7 business licence".to_vec();
        let sha = sha256_hex(&pdf);

        // Hash mismatch, bad hash, bad name, missing parameter, oversize.
        app.upload(
            &id,
            "licence.pdf",
            &sha256_hex(b"other"),
            pdf.clone(),
            &applicant,
        )
        .await
        .problem_field(422, "sha256");
        app.upload(&id, "licence.pdf", "xyz", pdf.clone(), &applicant)
            .await
            .problem_field(400, "sha256");
        app.upload(&id, "../etc/passwd", &sha, pdf.clone(), &applicant)
            .await
            .problem_field(400, "name");
        let missing = app
            .send(
                app.http
                    .post(app.url(&format!("/v1/onboarding/applications/{id}/documents")))
                    .query(&[("name", "a.pdf")])
                    .body(pdf.clone()),
                &applicant,
            )
            .await;
        missing.problem_field(400, "sha256");
        let big = vec![7u8; Options::default().max_document_bytes + 1];
        app.upload(&id, "big.bin", &sha256_hex(&big), big.clone(), &applicant)
            .await
            .problem(413);
        // Chunked, without a Content-Length: still bounded.
        let status = chunked_upload(&app, &id, &token, &sha256_hex(&big), &big).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");
        // Another application's token; an operator; nobody.
        app.upload(
            &id,
            "licence.pdf",
            &sha,
            pdf.clone(),
            &Auth::App(other_token.clone()),
        )
        .await
        .problem(403);
        app.upload(&id, "licence.pdf", &sha, pdf.clone(), &app.operator().await)
            .await
            .problem(403);
        app.upload(&id, "licence.pdf", &sha, pdf.clone(), &Auth::None)
            .await
            .problem(401);

        // Round trip.
        let up = app
            .upload(
                &id,
                "营业执照.pdf",
                &sha.to_uppercase(),
                pdf.clone(),
                &applicant,
            )
            .await;
        assert_eq!(up.status, 201, "{}", up.text);
        let up = up.json();
        assert_eq!(up["name"], "营业执照.pdf");
        assert_eq!(up["sha256"], sha);
        assert_eq!(up["size"], pdf.len());
        let doc = up["document_id"].as_str().unwrap();
        let op = app.operator().await;
        let view = app
            .get(&format!("/v1/onboarding/applications/{id}"), &op)
            .await
            .json();
        assert_eq!(view["documents"][0]["document_id"], doc);
        assert_eq!(view["documents"][0]["name"], "营业执照.pdf");
        assert_eq!(view["documents"][0]["content_type"], "application/pdf");
        let got = app
            .send(
                app.http
                    .get(app.url(&format!("/v1/onboarding/applications/{id}/documents/{doc}"))),
                &op,
            )
            .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.bytes, pdf);
        assert_eq!(got.content_type, "application/pdf");
        // Only operators read files; a document is found only under its own application.
        app.get(
            &format!("/v1/onboarding/applications/{id}/documents/{doc}"),
            &applicant,
        )
        .await
        .problem(401);
        app.get(
            &format!("/v1/onboarding/applications/{other}/documents/{doc}"),
            &op,
        )
        .await
        .problem(404);
        // Decided applications take no more documents.
        app.decide(
            &id,
            &json!({"approve": false, "reason": "blurred scan"}),
            &op,
        )
        .await;
        let late = app
            .upload(&id, "late.pdf", &sha, pdf.clone(), &applicant)
            .await;
        late.problem(409);
    }
}

/// Uploads `body` with `Transfer-Encoding: chunked` (no Content-Length) over a raw
/// connection; returns the status line.
async fn chunked_upload(app: &TestApp, id: &str, token: &str, sha: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/onboarding/applications/{id}/documents?name=big.bin&sha256={sha} HTTP/1.1\r\n\
         Host: {addr}\r\nX-Application-Token: {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(4096) {
        // The server may answer and close before everything is sent.
        if conn
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || conn.write_all(chunk).await.is_err()
            || conn.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn rejection_path() {
    for app in apps().await {
        let op = app.operator().await;
        let (id, token) = app.apply(&application(1)).await;
        // A rejection needs a reason of 1 to 500 characters; an approval takes none.
        app.decide(&id, &json!({"approve": false}), &op)
            .await
            .problem_field(400, "reason");
        app.decide(&id, &json!({"approve": false, "reason": " "}), &op)
            .await
            .problem_field(400, "reason");
        app.decide(
            &id,
            &json!({"approve": false, "reason": "x".repeat(501)}),
            &op,
        )
        .await
        .problem_field(400, "reason");
        app.decide(&id, &json!({"approve": true, "reason": "fine"}), &op)
            .await
            .problem_field(400, "reason");
        app.decide(&id, &json!({"approve": "yes"}), &op)
            .await
            .problem_field(400, "approve");
        app.decide(&id, &json!({"approve": false, "reason": "r", "x": 1}), &op)
            .await
            .problem_field(400, "x");
        app.decide("unknown", &json!({"approve": false, "reason": "r"}), &op)
            .await
            .problem(404);

        let reason = "营业执照已过期 (licence expired)";
        let d = app
            .decide(&id, &json!({"approve": false, "reason": reason}), &op)
            .await;
        assert_eq!(d.status, 200, "{}", d.text);
        let v = d.json();
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["rejection_reason"], reason);
        assert_eq!(v["decided_by"], "test-operator");
        assert!(v["decided_ms"].as_i64().unwrap() > 0);
        assert!(v.get("attestation_tx").is_none() && v.get("commitment").is_none());
        // Decided once.
        app.decide(&id, &json!({"approve": false, "reason": "again"}), &op)
            .await
            .problem(409);
        app.decide(&id, &json!({"approve": true}), &op)
            .await
            .problem(409);
        // The applicant sees why.
        let mine = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &Auth::App(token),
            )
            .await
            .json();
        assert_eq!(mine["status"], "rejected");
        assert_eq!(mine["rejection_reason"], reason);
        assert!(mine.get("decided_by").is_none());
        // Nothing went to the outbox.
        let n: i64 = sqlx::Row::get(
            &sqlx::query("SELECT COUNT(*) FROM identity_outbox")
                .fetch_one(app.db.pool())
                .await
                .unwrap(),
            0,
        );
        assert_eq!(n, 0);
    }
}

#[tokio::test]
async fn concurrent_submissions() {
    for app in apps().await {
        // The same request, five times at once, under one Idempotency-Key: one application,
        // one answer.
        let body = application(7);
        let sends = (0..5).map(|_| {
            app.send(
                app.http
                    .post(app.url("/v1/onboarding/applications"))
                    .header("Idempotency-Key", "burst")
                    .json(&body),
                &Auth::None,
            )
        });
        let answers = futures_join_all(sends.collect()).await;
        let first = answers[0].json();
        for a in &answers {
            assert_eq!(a.status, 201, "{}: {}", app.backend, a.text);
            assert_eq!(a.json(), first);
        }
        // Without a key: one wins, the others are duplicates.
        let body = application(8);
        let sends =
            (0..5).map(|_| app.post_json("/v1/onboarding/applications", &body, &Auth::None));
        let answers = futures_join_all(sends.collect()).await;
        let created = answers.iter().filter(|a| a.status == 201).count();
        let conflicts = answers.iter().filter(|a| a.status == 409).count();
        assert_eq!((created, conflicts), (1, 4), "{}", app.backend);
        let all = app
            .get("/v1/onboarding/applications", &app.operator().await)
            .await
            .json();
        assert_eq!(all["applications"].as_array().unwrap().len(), 2);

        // Two operators deciding at once: one decision stands.
        let (id, _) = app.apply(&application(9)).await;
        let op = app.operator().await;
        let r1 = json!({"approve": false, "reason": "first"});
        let r2 = json!({"approve": false, "reason": "second"});
        let (a, b) = tokio::join!(app.decide(&id, &r1, &op), app.decide(&id, &r2, &op));
        let mut codes = [a.status.as_u16(), b.status.as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 409], "{} / {}", a.text, b.text);
    }
}

/// Runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

#[test]
fn openapi_documents_every_route() {
    let doc = trellis_identity::IdentityService::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    let paths = json["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/onboarding/applications", "post"),
        ("/v1/onboarding/applications", "get"),
        ("/v1/onboarding/applications/{id}", "get"),
        ("/v1/onboarding/applications/{id}/documents", "post"),
        ("/v1/onboarding/applications/{id}/documents/{doc_id}", "get"),
        ("/v1/onboarding/applications/{id}/decision", "post"),
        ("/v1/auth/challenge", "post"),
        ("/v1/auth/token", "post"),
        ("/v1/auth/api-keys", "post"),
        ("/v1/auth/api-keys", "get"),
        ("/v1/auth/api-keys/{id}", "delete"),
        ("/v1/auth/keys/rotate", "post"),
        ("/.well-known/jwks.json", "get"),
    ] {
        assert!(
            paths[path].get(method).is_some(),
            "{method} {path} undocumented"
        );
    }
    assert_eq!(paths.len(), 11);
    let schemas = json["components"]["schemas"].as_object().unwrap();
    for s in [
        "ApplicationRequest",
        "ApplicationView",
        "Problem",
        "TokenResponse",
        "ApiKeyRequest",
        "ApiKeyCreated",
        "ApiKeyInfo",
        "ApiKeyList",
        "DecisionRequest",
        "Status",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(json["components"]["securitySchemes"]["bearer"].is_object());
    // Listing never shows a key: its schema has no `api_key`.
    assert!(schemas["ApiKeyInfo"]["properties"].get("api_key").is_none());
    assert!(
        schemas["ApiKeyRequest"]["properties"]
            .get("expires_in_days")
            .is_some()
    );
}

/// Makes every insert into `idempotency_keys` fail, as a crash or a database error between
/// the application and its stored answer would.
async fn break_idempotency_store(app: &TestApp) {
    match app.backend {
        Backend::Postgres => {
            sqlx::raw_sql(
                "CREATE OR REPLACE FUNCTION test_refuse_idempotency() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$",
            )
            .execute(app.db.pool())
            .await
            .unwrap();
            sqlx::raw_sql(
                "CREATE TRIGGER test_refuse_idempotency BEFORE INSERT ON idempotency_keys \
                 FOR EACH ROW EXECUTE FUNCTION test_refuse_idempotency()",
            )
            .execute(app.db.pool())
            .await
            .unwrap();
        }
        Backend::Sqlite => {
            sqlx::raw_sql(
                "CREATE TRIGGER test_refuse_idempotency BEFORE INSERT ON idempotency_keys \
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
            )
            .execute(app.db.pool())
            .await
            .unwrap();
        }
    }
}

async fn repair_idempotency_store(app: &TestApp) {
    let sql = match app.backend {
        Backend::Postgres => "DROP TRIGGER test_refuse_idempotency ON idempotency_keys",
        Backend::Sqlite => "DROP TRIGGER test_refuse_idempotency",
    };
    sqlx::raw_sql(sql).execute(app.db.pool()).await.unwrap();
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_application_and_its_stored_answer_commit_together() {
    for app in apps().await {
        let send = || {
            app.http
                .post(app.url("/v1/onboarding/applications"))
                .header("Idempotency-Key", "atomic-1")
                .json(&application(1))
        };
        // The answer cannot be stored: the application is not kept either.
        break_idempotency_store(&app).await;
        let a = app.send(send(), &Auth::None).await;
        a.problem(500);
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM identity_applications").await,
            0,
            "{}",
            app.backend
        );
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM idempotency_keys").await,
            0
        );
        // So the retry is not blocked by a half-made application, and its token works.
        repair_idempotency_store(&app).await;
        let a = app.send(send(), &Auth::None).await;
        assert_eq!(a.status, 201, "{}: {}", app.backend, a.text);
        let first = a.json();
        let again = app.send(send(), &Auth::None).await;
        assert_eq!(again.status, 201, "{}", again.text);
        assert_eq!(again.json(), first);
        let id = first["id"].as_str().unwrap();
        let token = first["token"].as_str().unwrap().to_string();
        let v = app
            .get(
                &format!("/v1/onboarding/applications/{id}"),
                &Auth::App(token),
            )
            .await;
        assert_eq!(v.status, 200, "{}", v.text);
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM identity_applications").await,
            1
        );

        // Without an Idempotency-Key nothing is stored, and the store's failure is no matter.
        break_idempotency_store(&app).await;
        app.apply(&application(2)).await;
        repair_idempotency_store(&app).await;
    }
}

/// The idempotency scope of application submissions.
const SUBMIT_SCOPE: &str = "identity/onboarding/applications";

async fn stored_keys(app: &TestApp) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> =
        sqlx::query("SELECT scope, key FROM idempotency_keys ORDER BY scope, key")
            .fetch_all(app.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn stored_answers_are_purged_after_a_day() {
    for (backend, db) in test_databases().await {
        let first = spawn(backend, db.clone(), Options::default()).await;
        for key in ["old", "new"] {
            let a = first
                .send(
                    first
                        .http
                        .post(first.url("/v1/onboarding/applications"))
                        .header("Idempotency-Key", key)
                        .json(&application(if key == "old" { 1 } else { 2 })),
                    &Auth::None,
                )
                .await;
            assert_eq!(a.status, 201, "{}", a.text);
        }
        // Another service's key, as old as can be: not this service's to purge.
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, request_sha256, status, response_body, \
             created_ms) VALUES ('ledger/anchors', 'old', 'h', 201, '{}', 1)",
        )
        .execute(db.pool())
        .await
        .unwrap();
        // One of ours, 25 hours old.
        let day_ago = trellis_servicekit::now_ms() - 25 * 3600 * 1000;
        sqlx::query("UPDATE idempotency_keys SET created_ms = $1 WHERE scope = $2 AND key = 'old'")
            .bind(day_ago)
            .bind(SUBMIT_SCOPE)
            .execute(db.pool())
            .await
            .unwrap();

        // The purge runs when a service starts (and every ten minutes after).
        let second = common::spawn_with(
            backend,
            db.clone(),
            first.tokens.clone(),
            first.pii.clone(),
            Options::default(),
        )
        .await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let expected = vec![
            (
                "identity/onboarding/applications".to_string(),
                "new".to_string(),
            ),
            ("ledger/anchors".to_string(), "old".to_string()),
        ];
        loop {
            let keys = stored_keys(&second).await;
            if keys == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backend}: still {keys:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // The purged answer is no longer replayed: the retry meets its own application.
        let a = second
            .send(
                second
                    .http
                    .post(second.url("/v1/onboarding/applications"))
                    .header("Idempotency-Key", "old")
                    .json(&application(1)),
                &Auth::None,
            )
            .await;
        a.problem(409);
        // The fresh one still is.
        let a = second
            .send(
                second
                    .http
                    .post(second.url("/v1/onboarding/applications"))
                    .header("Idempotency-Key", "new")
                    .json(&application(2)),
                &Auth::None,
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
}
