//! The HTTP pieces on a real server (127.0.0.1, port 0) called with reqwest: the `Caller`
//! extractor's 401s and 403s, `JsonBody`'s 400s, and problem+json answers.

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::time::Duration;
use trellis_servicekit::testing::fresh_database;
use trellis_servicekit::{
    ApiResult, Backend, Caller, Claims, JsonBody, Keyring, Problem, Role, TokenConfig, TokenService,
};
use utoipa::OpenApi;

#[derive(Clone)]
struct AppState {
    tokens: TokenService,
}

impl FromRef<AppState> for TokenService {
    fn from_ref(s: &AppState) -> TokenService {
        s.tokens.clone()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Representative {
    name: String,
    id_number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Application {
    contact: String,
    legal_representative: Representative,
}

async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "sub": caller.sub, "role": caller.role, "org": caller.org,
    }))
}

async fn maybe(caller: Option<Caller>) -> String {
    caller.map_or("anonymous".to_string(), |c| c.sub)
}

async fn operators_only(caller: Caller) -> ApiResult<&'static str> {
    caller.require(&[Role::Operator, Role::Regulator])?;
    Ok("done")
}

async fn org_only(caller: Caller, Path(org): Path<String>) -> ApiResult<&'static str> {
    caller.require_org(&org)?;
    Ok("yours")
}

async fn apply(JsonBody(app): JsonBody<Application>) -> (StatusCode, String) {
    (StatusCode::CREATED, app.legal_representative.name)
}

async fn boom() -> ApiResult<()> {
    Err(Problem::internal(
        "connection to postgres://svc:hunter2@db failed",
    ))
}

async fn jwks(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(s.tokens.jwks().await)
}

async fn serve() -> (String, TokenService) {
    let (db, _) = fresh_database(Backend::Sqlite).await;
    let tokens = TokenService::new(
        db,
        Keyring::generate("http-test").unwrap(),
        TokenConfig::default(),
    )
    .await
    .unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .route("/admin", post(operators_only))
        .route("/orgs/{org}", get(org_only))
        .route("/applications", post(apply))
        .route("/boom", get(boom))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(AppState {
            tokens: tokens.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), tokens)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status, headers and problem body of a problem+json answer.
async fn problem(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Problem) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    assert_eq!(
        headers[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    let p: Problem = resp.json().await.unwrap();
    assert_eq!(p.status, status);
    assert!(p.kind.starts_with("https://trellis.dev/problems/"));
    (status, headers, p)
}

#[tokio::test]
async fn caller_extractor_answers_401_and_403() {
    let (base, tokens) = serve().await;
    let http = client();

    // No header.
    let resp = http.get(format!("{base}/whoami")).send().await.unwrap();
    let (status, headers, p) = problem(resp).await;
    assert_eq!(status, 401);
    assert_eq!(p.kind_name(), "unauthorized");
    assert_eq!(headers[reqwest::header::WWW_AUTHENTICATE], "Bearer");
    assert!(p.detail.contains("missing"), "{}", p.detail);

    // Another scheme, an empty token, garbage.
    for value in [
        "Basic dXNlcjpwdw==",
        "Bearer ",
        "Bearer not.a.jwt",
        "Bearer",
    ] {
        let resp = http
            .get(format!("{base}/whoami"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        let (status, _, p) = problem(resp).await;
        assert_eq!(status, 401, "{value}");
        assert!(!p.detail.contains("not.a.jwt"));
    }

    // Expired and wrong audience, each saying which, never echoing the token.
    let good = Claims {
        iss: "trellis".into(),
        aud: "trellis-api".into(),
        sub: "alice".into(),
        role: Role::EnterpriseAdmin,
        org: Some("org-a".into()),
        iat: 0,
        exp: 0,
        jti: "j".into(),
    };
    let now = (trellis_servicekit::now_ms() / 1000) as u64;
    for (claims, word) in [
        (
            Claims {
                exp: now - 600,
                ..good.clone()
            },
            "expired",
        ),
        (
            Claims {
                exp: now + 600,
                aud: "elsewhere".into(),
                ..good.clone()
            },
            "audience",
        ),
    ] {
        let token = tokens.issue_with(&claims).await.unwrap();
        let resp = http
            .get(format!("{base}/whoami"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (status, _, p) = problem(resp).await;
        assert_eq!(status, 401);
        assert!(p.detail.contains(word), "{}", p.detail);
        let body = serde_json::to_string(&p).unwrap();
        assert!(!body.contains(&token[..20]));
    }

    // A good token.
    let (token, _) = tokens
        .issue("alice", Role::EnterpriseAdmin, Some("org-a"))
        .await
        .unwrap();
    let who: serde_json::Value = http
        .get(format!("{base}/whoami"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        who,
        serde_json::json!({"sub": "alice", "role": "enterprise_admin", "org": "org-a"})
    );

    // Wrong role: 403 naming the roles needed.
    let resp = http
        .post(format!("{base}/admin"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, headers, p) = problem(resp).await;
    assert_eq!(status, 403);
    assert_eq!(p.kind_name(), "forbidden");
    assert!(p.detail.contains("operator or regulator"), "{}", p.detail);
    assert!(headers.get(reqwest::header::WWW_AUTHENTICATE).is_none());
    let (op, _) = tokens.issue("root", Role::Operator, None).await.unwrap();
    let resp = http
        .post(format!("{base}/admin"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Organisation: own org yes, another no, operators everywhere.
    for (t, org, want) in [
        (&token, "org-a", 200),
        (&token, "org-b", 403),
        (&op, "org-b", 200),
    ] {
        let resp = http
            .get(format!("{base}/orgs/{org}"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{org}");
    }

    // Optional caller: absent is anonymous, present must be valid.
    let resp = http.get(format!("{base}/maybe")).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "anonymous");
    let resp = http
        .get(format!("{base}/maybe"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "alice");
    let resp = http
        .get(format!("{base}/maybe"))
        .bearer_auth("junk")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The published keys are served.
    let jwks: serde_json::Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
}

#[tokio::test]
async fn json_body_rejections_are_problems_naming_the_field() {
    let (base, _) = serve().await;
    let http = client();
    let url = format!("{base}/applications");
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut req = http.post(&url).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json = Some("application/json");

    let resp = post(
        r#"{"contact": "c", "legal_representative": {"name": "Li", "id_number": "1"}}"#,
        json,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.text().await.unwrap(), "Li");

    let cases: [(&str, Option<&str>, Option<&str>); 6] = [
        (r#"{"contact": "c"}"#, None, None),
        (r#"{"contact": "c"}"#, Some("text/plain"), None),
        (r#"{"contact": "#, json, None),
        (
            r#"{"legal_representative": {"name": "Li", "id_number": "1"}}"#,
            json,
            Some("contact"),
        ),
        (
            r#"{"contact": "c", "legal_representative": {"name": "Li"}}"#,
            json,
            Some("legal_representative.id_number"),
        ),
        (
            r#"{"contact": "c", "legal_representative": {"name": 5, "id_number": "1"}}"#,
            json,
            Some("legal_representative.name"),
        ),
    ];
    for (body, ct, field) in cases {
        let (status, _, p) = problem(post(body, ct).await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(p.kind_name(), "malformed-body");
        assert_eq!(p.field.as_deref(), field, "{body}: {}", p.detail);
    }
    let (_, _, p) = problem(
        post(
            r#"{"contact": "c", "nickname": "x", "legal_representative": {"name": "Li", "id_number": "1"}}"#,
            json,
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(p.field.as_deref(), Some("nickname"));
    assert!(
        p.detail.starts_with("unknown field `nickname`"),
        "{}",
        p.detail
    );
}

#[tokio::test]
async fn internal_errors_are_bare_500s() {
    let (base, _) = serve().await;
    let resp = client().get(format!("{base}/boom")).send().await.unwrap();
    let (status, _, p) = problem(resp).await;
    assert_eq!(status, 500);
    assert_eq!(p.kind_name(), "internal");
    let shown = serde_json::to_string(&p).unwrap();
    assert!(!shown.contains("hunter2") && !shown.contains("postgres"));
}

#[test]
fn problem_shape_and_schema() {
    let p = Problem::unprocessable("legal_representative.id_number", "checksum does not match");
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "type": "https://trellis.dev/problems/unprocessable",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "checksum does not match",
            "field": "legal_representative.id_number",
        })
    );
    // Without a field, the member is absent rather than null.
    let v = serde_json::to_value(Problem::not_found("unknown-application", "no such")).unwrap();
    assert!(v.get("field").is_none());
    assert_eq!(v["status"], 404);
    assert_eq!(Problem::conflict("taken", "x").status, 409);
    assert_eq!(Problem::bad_request("f", "x").field.as_deref(), Some("f"));

    #[derive(OpenApi)]
    #[openapi(components(schemas(Problem, Role)))]
    struct Doc;
    let doc = serde_json::to_value(Doc::openapi()).unwrap();
    let schema = &doc["components"]["schemas"]["Problem"];
    assert!(schema["properties"]["type"].is_object(), "{schema}");
    assert!(schema["properties"]["field"].is_object());
    let role = &doc["components"]["schemas"]["Role"];
    assert!(role.to_string().contains("enterprise_admin"), "{role}");
}
