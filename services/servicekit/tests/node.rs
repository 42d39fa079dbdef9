//! `NodeClient` against a stand-in HTTP server that answers with the JSON shapes of the
//! node's client API (`services/node/src/api.rs`: `Accepted`, `TxStatus`, `AccountView`,
//! problem+json). The real node is exercised by the services' end-to-end tests.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use trellis_servicekit::{NodeClient, NodeError, Problem, TxOutcome};

const KNOWN_KEY: &str = "11111111111111111111111111111111111111111111111111111111111111aa";

#[derive(Default)]
struct Stub {
    polls: AtomicU32,
    /// Status reads of the transaction that stays pending (hash `cc…`).
    stuck_polls: AtomicU32,
}

async fn submit(headers: HeaderMap, body: Bytes) -> Response {
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/x-protobuf")
    {
        return Problem::new(StatusCode::BAD_REQUEST, "malformed-body", "not protobuf")
            .into_response();
    }
    if body.first() == Some(&0xff) {
        return Problem::new(StatusCode::CONFLICT, "nonce-used", "nonce 3 already used")
            .with_field("tx")
            .into_response();
    }
    if body.first() == Some(&0xfe) {
        return (StatusCode::BAD_GATEWAY, "upstream broke").into_response();
    }
    let hash = hex::encode(Sha256::digest(&body));
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"hash": hash, "status": "pending"})),
    )
        .into_response()
}

async fn tx_status(State(stub): State<Arc<Stub>>, Path(hash): Path<String>) -> Response {
    let fate = &hash[..2];
    let polls = stub.polls.fetch_add(1, Ordering::SeqCst);
    let body = match fate {
        // Unknown for two polls, pending for two, then committed.
        "aa" if polls < 2 => {
            return Problem::not_found("unknown-transaction", "this node has not seen it")
                .with_field("hash")
                .into_response();
        }
        "aa" if polls < 4 => serde_json::json!({"hash": hash, "status": "pending"}),
        "aa" => serde_json::json!({"hash": hash, "status": "committed", "height": 42}),
        "bb" => serde_json::json!({
            "hash": hash, "status": "rejected", "height": 7, "reason": "insufficient balance"
        }),
        "cc" => {
            stub.stuck_polls.fetch_add(1, Ordering::SeqCst);
            serde_json::json!({"hash": hash, "status": "pending"})
        }
        _ => {
            return Problem::not_found("unknown-transaction", "this node has not seen it")
                .into_response();
        }
    };
    Json(body).into_response()
}

async fn account(Path(key): Path<String>) -> Response {
    if key == KNOWN_KEY {
        Json(serde_json::json!({
            "public_key": key, "org": "org-a", "role": "member", "next_nonce": 7
        }))
        .into_response()
    } else {
        Problem::not_found("unknown-account", "no such account").into_response()
    }
}

async fn serve() -> String {
    serve_stub(Arc::new(Stub::default())).await
}

/// The stand-in on `stub`, so a test can read its counters.
async fn serve_stub(stub: Arc<Stub>) -> String {
    let app = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{hash}", get(tx_status))
        .route("/v1/accounts/{key}", get(account))
        .route(
            "/v1/status",
            get(|| async { Json(serde_json::json!({"height": 9})) }),
        )
        .route(
            "/v1/broken",
            get(|| async { Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "syncing") }),
        )
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn submit_returns_the_hash_or_the_rejection() {
    let node = NodeClient::new(serve().await).unwrap();
    assert!(!node.base().ends_with('/'));
    let hash = node.submit(b"\x0a\x02tx").await.unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(b"\x0a\x02tx")));

    match node.submit(b"\xff").await {
        Err(NodeError::Rejected {
            status,
            kind,
            detail,
        }) => {
            assert_eq!(status, 409);
            assert_eq!(kind, "nonce-used");
            assert_eq!(detail, "nonce 3 already used");
        }
        other => panic!("{other:?}"),
    }
    // Not problem+json: the status and the text.
    match node.submit(b"\xfe").await {
        Err(NodeError::Rejected {
            status,
            kind,
            detail,
        }) => {
            assert_eq!(status, 502);
            assert_eq!(kind, "bad-gateway");
            assert_eq!(detail, "upstream broke");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wait_polls_until_decided() {
    let stub = Arc::new(Stub::default());
    let node = NodeClient::new(serve_stub(stub.clone()).await).unwrap();
    let committed = format!("aa{}", "0".repeat(62));
    assert_eq!(
        node.wait(&committed, Duration::from_secs(30))
            .await
            .unwrap(),
        TxOutcome::Committed { height: 42 }
    );
    let rejected = format!("bb{}", "0".repeat(62));
    assert_eq!(
        node.wait(&rejected, Duration::from_secs(30)).await.unwrap(),
        TxOutcome::Rejected {
            reason: "insufficient balance".into()
        }
    );
    // A transaction that stays pending: `wait` gives up at its deadline instead of hanging.
    // Not timed: the outer bound only turns a hang into a failure, and the number of status
    // reads shows the deadline was kept, as `wait` reads once per 100 ms poll interval
    // (`POLL_EVERY` in src/node.rs) and only while a next read would still be before the
    // deadline; a slow machine makes fewer reads, never more.
    let stuck = format!("cc{}", "0".repeat(62));
    let waited = Duration::from_millis(350);
    let outcome = tokio::time::timeout(Duration::from_secs(60), node.wait(&stuck, waited))
        .await
        .expect("wait() on a transaction that stays pending never returned");
    match outcome {
        Err(NodeError::Timeout { hash, waited: w }) => {
            assert_eq!(hash, stuck);
            assert_eq!(w, waited);
        }
        other => panic!("{other:?}"),
    }
    let reads = stub.stuck_polls.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&reads),
        "{reads} status reads in a 350 ms wait: the deadline was not kept"
    );
    assert!(matches!(
        node.wait("../../admin", Duration::from_secs(1)).await,
        Err(NodeError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn nonces_and_reads() {
    let node = NodeClient::new(serve().await).unwrap();
    assert_eq!(node.next_nonce(KNOWN_KEY).await.unwrap(), Some(7));
    assert_eq!(node.next_nonce(&"2".repeat(64)).await.unwrap(), None);
    assert!(matches!(
        node.next_nonce("zz").await,
        Err(NodeError::InvalidArgument(_))
    ));
    assert_eq!(
        node.get_json("/v1/status").await.unwrap(),
        Some(serde_json::json!({"height": 9}))
    );
    assert_eq!(node.get_json("/v1/nothing-here").await.unwrap(), None);
    assert!(matches!(
        node.get_json("/v1/broken").await,
        Err(NodeError::Rejected { status: 503, ref kind, .. }) if kind == "not-ready"
    ));
}

#[tokio::test]
async fn an_unreachable_node_is_an_error_not_a_hang() {
    // Bind and drop, so the port is (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let node = NodeClient::new(format!("http://127.0.0.1:{port}")).unwrap();
    assert!(matches!(
        node.submit(b"x").await,
        Err(NodeError::Unreachable(_))
    ));
    // wait() keeps trying through connection failures until its deadline.
    assert!(matches!(
        node.wait(&"a".repeat(64), Duration::from_millis(300)).await,
        Err(NodeError::Timeout { .. })
    ));
}
