//! Personal data stays put: a canary planted in the legal representative's name, the e-mail
//! and a document never reaches a regulator's or bank's answer, the logs (every level, every
//! target, captured by a subscriber installed here), or the database in plain text (every
//! column of every table, and for SQLite the raw database and WAL files).
//!
//! Its own test binary, because it installs the process-wide tracing subscriber.

mod common;

use common::fake_node::FakeNode;
use common::{Auth, Options, TestApp, application, sha256_hex, spawn, spawn_with};
use serde_json::json;
use sqlx::Row;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use trellis_servicekit::testing::fresh_database;
use trellis_servicekit::{Backend, Keyring, Role};

const CANARY: &str = "Canary7f3aQ";

// ---------------------------------------------------------------------------------------------
// A subscriber that writes every span and event, with all fields, to a buffer.
// ---------------------------------------------------------------------------------------------

struct Capture {
    buf: Arc<Mutex<String>>,
    next_id: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let _ = write!(self.0, " {}={value} ({value:?})", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut line = format!(
            "span {} {}",
            attrs.metadata().target(),
            attrs.metadata().name()
        );
        attrs.record(&mut Fields(&mut line));
        line.push('\n');
        self.buf.lock().unwrap().push_str(&line);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = "record".to_string();
        values.record(&mut Fields(&mut line));
        line.push('\n');
        self.buf.lock().unwrap().push_str(&line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut Fields(&mut line));
        line.push('\n');
        self.buf.lock().unwrap().push_str(&line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn logs() -> Arc<Mutex<String>> {
    static BUF: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::set_global_default(Capture {
            buf: buf.clone(),
            next_id: AtomicU64::new(0),
        })
        .expect("the only subscriber of this test binary");
        buf
    })
    .clone()
}

fn contains_canary(haystack: &[u8]) -> bool {
    let needle = CANARY.to_ascii_lowercase().into_bytes();
    let hex_needle = hex::encode(CANARY).into_bytes();
    let lower: Vec<u8> = haystack.iter().map(u8::to_ascii_lowercase).collect();
    lower.windows(needle.len()).any(|w| w == needle.as_slice())
        || lower
            .windows(hex_needle.len())
            .any(|w| w == hex_needle.as_slice())
}

/// Every cell of every table, as bytes.
async fn dump_database(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let tables_sql = match app.backend {
        Backend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'"
        }
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let tables: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(app.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.iter().any(|t| t == "identity_applications"),
        "{tables:?}"
    );
    let mut cells = Vec::new();
    for table in tables {
        assert!(
            table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        if app.backend == Backend::Postgres {
            // The whole row as PostgreSQL prints it (bytea as hex, which the check also
            // looks for), so every column type is covered.
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM {table} t"
            )))
            .fetch_all(app.db.pool())
            .await
            .unwrap();
            for row in rows {
                cells.push((table.clone(), row.get::<String, _>(0).into_bytes()));
            }
            continue;
        }
        // SQLite: every column of every row as the hex of its stored bytes, whatever its type.
        let columns: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{table}')"
        )))
        .fetch_all(app.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
        assert!(!columns.is_empty(), "{table}");
        for column in columns {
            assert!(
                column
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT hex(\"{column}\") FROM {table}"
            )))
            .fetch_all(app.db.pool())
            .await
            .unwrap();
            for row in rows {
                let cell = hex::decode(row.get::<String, _>(0)).unwrap();
                cells.push((format!("{table}.{column}"), cell));
            }
        }
    }
    cells
}

#[tokio::test]
async fn the_canary_stays_sealed() {
    let logs = logs();
    let node = FakeNode::start().await;
    let verifier = common::verifier();
    node.add_account(&hex::encode(verifier.public_key().0), "operator", "ops", 0);
    let mut approvals = Vec::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let (db, url) = fresh_database(backend).await;
        let opts = Options {
            node: node.base.clone(),
            // The approval below answers as soon as its proposal is on the chain.
            chain_wait: Duration::from_secs(60),
            ..Options::default()
        };
        let app = spawn(backend, db.clone(), opts.clone()).await;
        let op = app.operator().await;

        // Two applications carry the canary: one is rejected, one approved onto the chain.
        let mut ids = Vec::new();
        for n in [1u8, 2] {
            let mut body = application(n);
            body["legal_representative"]["name"] = json!(format!("王{CANARY}"));
            body["contact"]["email"] = json!(format!("{CANARY}.{n}@example.cn"));
            let a = app
                .send(
                    app.http
                        .post(app.url("/v1/onboarding/applications"))
                        .header("Idempotency-Key", format!("canary-{n}"))
                        .json(&body),
                    &Auth::None,
                )
                .await;
            assert_eq!(a.status, 201, "{}", a.text);
            let (id, token) = (
                a.json()["id"].as_str().unwrap().to_string(),
                a.json()["token"].as_str().unwrap().to_string(),
            );
            // An invalid retry and a duplicate: the answers go to the applicant only, and are
            // not logged either.
            let mut bad = body.clone();
            bad["contact"]["phone"] = json!(format!("{CANARY}"));
            app.post_json("/v1/onboarding/applications", &bad, &Auth::None)
                .await
                .problem(400);
            app.post_json("/v1/onboarding/applications", &body, &Auth::None)
                .await
                .problem(409);
            let doc = format!("scan of {CANARY}'s ID card").into_bytes();
            let up = app
                .upload(
                    &id,
                    &format!("{CANARY}.jpg"),
                    &sha256_hex(&doc),
                    doc.clone(),
                    &Auth::App(token.clone()),
                )
                .await;
            assert_eq!(up.status, 201, "{}", up.text);
            let doc_id = up.json()["document_id"].as_str().unwrap().to_string();
            // The applicant and operators do see it: that is what it is for.
            let mine = app
                .get(
                    &format!("/v1/onboarding/applications/{id}"),
                    &Auth::App(token),
                )
                .await;
            assert!(mine.text.contains(CANARY));
            let theirs = app
                .get(&format!("/v1/onboarding/applications/{id}"), &op)
                .await;
            assert!(theirs.text.contains(CANARY));
            let file = app
                .get(
                    &format!("/v1/onboarding/applications/{id}/documents/{doc_id}"),
                    &op,
                )
                .await;
            assert_eq!(file.bytes, doc);
            ids.push((id, doc_id));
        }
        assert!(
            app.get("/v1/onboarding/applications", &op)
                .await
                .text
                .contains(CANARY)
        );
        let (rejected, _) = &ids[0];
        let d = app
            .decide(
                rejected,
                &json!({"approve": false, "reason": "unreadable scan"}),
                &op,
            )
            .await;
        assert_eq!(d.status, 200, "{}", d.text);
        let (approved, _) = &ids[1];
        let d = app.decide(approved, &json!({"approve": true}), &op).await;
        assert_eq!(d.status, 200, "{}", d.text);
        assert_eq!(d.json()["status"], "proposed");
        approvals.push(approved.clone());

        // Regulators and banks, on every route, get nothing of it.
        for (role, org) in [(Role::Regulator, None), (Role::Bank, Some("BANK1"))] {
            let auth = Auth::Bearer(app.token(role, org).await);
            for (id, doc_id) in &ids {
                let answers = [
                    app.get(&format!("/v1/onboarding/applications/{id}"), &auth)
                        .await,
                    app.get(
                        &format!("/v1/onboarding/applications/{id}/documents/{doc_id}"),
                        &auth,
                    )
                    .await,
                    app.get("/v1/onboarding/applications", &auth).await,
                    app.get("/v1/onboarding/applications?status=pending", &auth)
                        .await,
                    app.get("/v1/onboarding/applications?status=proposed", &auth)
                        .await,
                    app.decide(id, &json!({"approve": true}), &auth).await,
                    app.upload(id, "x", &sha256_hex(b"x"), b"x".to_vec(), &auth)
                        .await,
                    app.post_json(
                        "/v1/auth/api-keys",
                        &json!({"role": "operator", "label": "x"}),
                        &auth,
                    )
                    .await,
                    app.post_json("/v1/auth/keys/rotate", &json!({}), &auth)
                        .await,
                ];
                for a in answers {
                    assert_eq!(a.status, 403, "{role}: {}", a.text);
                    assert!(!contains_canary(&a.bytes), "{role}: {}", a.text);
                }
                let jwks = app.get("/.well-known/jwks.json", &auth).await;
                assert!(!contains_canary(&jwks.bytes));
            }
        }

        // An internal error (a service whose keyring cannot open the data): a bare 500, and
        // the log says why without the data.
        let wrong_keys = Keyring::generate("pii-other").unwrap();
        let broken = spawn_with(
            backend,
            db.clone(),
            app.tokens.clone(),
            wrong_keys,
            opts.clone(),
        )
        .await;
        let op2 = broken.operator().await;
        let a = broken
            .get(&format!("/v1/onboarding/applications/{}", ids[0].0), &op2)
            .await;
        let p = a.problem(500);
        assert_eq!(p["detail"], "internal error; the server logged it");
        assert!(!contains_canary(&a.bytes));

        // The database holds no plain text of it, in any column of any table.
        for (cell, bytes) in dump_database(&app).await {
            assert!(
                !contains_canary(&bytes),
                "{backend}: {cell} holds the canary"
            );
        }
        // Nor the raw SQLite files (free pages and the WAL included).
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite://").to_string();
            for file in [path.clone(), format!("{path}-wal")] {
                if let Ok(bytes) = std::fs::read(&file) {
                    assert!(!bytes.is_empty());
                    assert!(!contains_canary(&bytes), "{file} holds the canary");
                }
            }
        }
    }
    // The capture works: the service's own lines are there. The outbox worker logs an
    // approval's proposal as committed just after the answer saw it, so wait for those lines:
    // they are the last the worker writes about these applications.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let captured = loop {
        let captured = logs.lock().unwrap().clone();
        let proposal_logged = |id: &String| {
            captured.lines().any(|l| {
                l.contains("committed on the beacon")
                    && l.contains(&format!("application={id}"))
                    && l.contains("kind=propose")
            })
        };
        if approvals.iter().all(proposal_logged) {
            break captured;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox never logged the proposals of {approvals:?} as committed:\n{captured}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        captured.contains("onboarding application received"),
        "{captured}"
    );
    assert!(captured.contains("internal error"), "{captured}");
    assert!(
        !contains_canary(captured.as_bytes()),
        "the logs hold the canary:\n{}",
        captured
            .lines()
            .filter(|l| contains_canary(l.as_bytes()))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
