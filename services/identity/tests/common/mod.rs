//! Test support: the identity service on a real database (PostgreSQL or SQLite) behind a real
//! HTTP server on 127.0.0.1:0, valid application data, and callers of every role.

#![allow(dead_code)]

pub mod fake_node;

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use trellis_identity::domain::{credit_code_check_char, resident_id_check_char};
use trellis_identity::{IdentityConfig, IdentityService};
use trellis_servicekit::{Backend, Db, Keyring, NodeClient, Role, TokenConfig, TokenService};
use trellis_types::Signer;

/// A node address nothing listens on: routes that need no chain never reach it.
pub const NO_NODE: &str = "http://127.0.0.1:9";
pub const CHAIN_ID: &str = "trellis-test";

/// The verifier account's key.
pub fn verifier() -> Signer {
    Signer::from_seed([42u8; 32])
}

/// The `n`-th valid unified social credit code.
pub fn credit_code(n: u32) -> String {
    let prefix = format!("91350100{n:09}");
    let first17: [u8; 17] = prefix.as_bytes().try_into().expect("17 characters");
    format!(
        "{prefix}{}",
        credit_code_check_char(&first17).expect("alphabet")
    )
}

/// A valid resident ID number born on `yyyymmdd`.
pub fn resident_id(birth: &str) -> String {
    let prefix = format!("110105{birth}002");
    let first17: [u8; 17] = prefix.as_bytes().try_into().expect("17 digits");
    format!(
        "{prefix}{}",
        resident_id_check_char(&first17).expect("digits")
    )
}

/// The `n`-th org key (hex).
pub fn org_key(n: u8) -> String {
    hex::encode(org_signer(n).public_key().0)
}

pub fn org_signer(n: u8) -> Signer {
    Signer::from_seed([n.wrapping_add(100); 32])
}

/// A valid application, the `n`-th of its kind (distinct credit code and org key).
pub fn application(n: u8) -> Value {
    json!({
        "legal_name": format!("厦门第{n}供应链有限公司"),
        "unified_social_credit_code": credit_code(u32::from(n)),
        "legal_representative": {"name": "张三", "id_number": resident_id("19491231")},
        "contact": {"email": format!("ops{n}@example.cn"), "phone": "+86 138-0013-8000"},
        "org_public_key": org_key(n),
    })
}

/// Options of a test service.
#[derive(Clone)]
pub struct Options {
    pub node: String,
    pub max_document_bytes: usize,
    pub chain_wait: Duration,
    pub verifier: Signer,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            node: NO_NODE.to_string(),
            max_document_bytes: 64 * 1024,
            chain_wait: Duration::from_secs(5),
            verifier: verifier(),
        }
    }
}

/// How a request proves who it is.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    App(String),
}

pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub tokens: TokenService,
    pub pii: Keyring,
}

/// The service on `db`, serving on a fresh port.
pub async fn spawn(backend: Backend, db: Db, opts: Options) -> TestApp {
    let jwt_keys = Keyring::generate("jwt1").expect("keyring");
    let tokens = TokenService::new(db.clone(), jwt_keys, TokenConfig::default())
        .await
        .expect("token service");
    let pii = Keyring::generate("pii1").expect("keyring");
    spawn_with(backend, db, tokens, pii, opts).await
}

pub async fn spawn_with(
    backend: Backend,
    db: Db,
    tokens: TokenService,
    pii: Keyring,
    opts: Options,
) -> TestApp {
    let node = NodeClient::new(opts.node.clone()).expect("node client");
    let mut config = IdentityConfig::new(CHAIN_ID, opts.verifier.clone(), pii.clone());
    config.max_document_bytes = opts.max_document_bytes;
    config.chain_wait = opts.chain_wait;
    let svc = IdentityService::start(db.clone(), tokens.clone(), node, config)
        .await
        .expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = svc.router();
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    TestApp {
        backend,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        db,
        tokens,
        pii,
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts a problem+json answer of `status`; returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.text
        );
        self.json()
    }

    /// Asserts a problem of `status` naming `field`.
    pub fn problem_field(&self, status: u16, field: &str) -> Value {
        let p = self.problem(status);
        assert_eq!(p["field"], field, "problem: {p}");
        p
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn token(&self, role: Role, org: Option<&str>) -> String {
        self.tokens
            .issue(&format!("test-{role}"), role, org)
            .await
            .expect("issue")
            .0
    }

    pub async fn operator(&self) -> Auth {
        Auth::Bearer(self.token(Role::Operator, None).await)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder, auth: &Auth) -> Answer {
        let req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::App(t) => req.header("X-Application-Token", t),
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.expect("body").to_vec();
        Answer {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value, auth: &Auth) -> Answer {
        self.send(self.http.post(self.url(path)).json(body), auth)
            .await
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.send(self.http.get(self.url(path)), auth).await
    }

    /// Submits an application; asserts 201 and returns (id, token).
    pub async fn apply(&self, body: &Value) -> (String, String) {
        let a = self
            .post_json("/v1/onboarding/applications", body, &Auth::None)
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        let v = a.json();
        assert_eq!(v["status"], "pending");
        (
            v["id"].as_str().expect("id").to_string(),
            v["token"].as_str().expect("token").to_string(),
        )
    }

    pub async fn upload(
        &self,
        id: &str,
        name: &str,
        sha256: &str,
        body: Vec<u8>,
        auth: &Auth,
    ) -> Answer {
        let req = self
            .http
            .post(self.url(&format!("/v1/onboarding/applications/{id}/documents")))
            .query(&[("name", name), ("sha256", sha256)])
            .header("content-type", "application/pdf")
            .body(body);
        self.send(req, auth).await
    }

    pub async fn decide(&self, id: &str, body: &Value, auth: &Auth) -> Answer {
        self.post_json(
            &format!("/v1/onboarding/applications/{id}/decision"),
            body,
            auth,
        )
        .await
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
