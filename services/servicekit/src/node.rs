//! A small typed client of a Trellis node's HTTP client API: submit a signed transaction, wait
//! for its fate, read an account's next nonce, and fetch other read endpoints as JSON.

use reqwest::StatusCode;
use serde::Deserialize;
use std::time::Duration;

/// How often [`NodeClient::wait`] asks again.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Bound on one HTTP exchange, so a hung node cannot hang a service request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node could not be reached or the exchange broke off.
    #[error("cannot reach the node: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The node answered with an error (its problem+json, or the raw text).
    #[error("the node refused ({status} {kind}): {detail}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The problem kind: the last path segment of its `type`.
        kind: String,
        /// The problem detail.
        detail: String,
    },
    /// The node answered something this client does not understand.
    #[error("unexpected answer from the node: {0}")]
    BadResponse(String),
    /// An argument is not what the node API takes (e.g. a hash that is not hex).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// [`NodeClient::wait`] gave up before the transaction was decided.
    #[error("transaction {hash} not decided within {waited:?}")]
    Timeout {
        /// The transaction hash.
        hash: String,
        /// How long it waited.
        waited: Duration,
    },
}

/// The fate of a transaction once a block decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutcome {
    /// Executed at `height`.
    Committed {
        /// The block height.
        height: u64,
    },
    /// Included but refused by execution, for `reason`.
    Rejected {
        /// Why execution refused it.
        reason: String,
    },
}

/// The node's answer to `POST /v1/transactions` (one transaction).
#[derive(Deserialize)]
struct Accepted {
    hash: String,
}

/// The node's answer to `GET /v1/transactions/{hash}`.
#[derive(Deserialize)]
struct TxStatus {
    status: String,
    #[serde(default)]
    height: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

/// A client of one node's HTTP client API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
}

impl NodeClient {
    /// A client of the node at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: impl Into<String>) -> Result<NodeClient, NodeError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(NodeError::Unreachable)?;
        Ok(NodeClient::with_client(http, base))
    }

    /// A client using an existing `reqwest::Client` (its timeouts apply).
    pub fn with_client(http: reqwest::Client, base: impl Into<String>) -> NodeClient {
        let base = base.into().trim_end_matches('/').to_string();
        NodeClient { http, base }
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Submits one signed transaction (protobuf `SignedTransaction` bytes); returns its hash
    /// (hex). A transaction the node already holds is accepted again with the same hash.
    pub async fn submit(&self, tx_bytes: &[u8]) -> Result<String, NodeError> {
        let resp = self
            .http
            .post(format!("{}/v1/transactions", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(tx_bytes.to_vec())
            .send()
            .await
            .map_err(NodeError::Unreachable)?;
        if !resp.status().is_success() {
            return Err(rejection(resp).await);
        }
        let accepted: Accepted = read_json(resp).await?;
        if !is_hash(&accepted.hash) {
            return Err(NodeError::BadResponse("hash is not 32 bytes of hex".into()));
        }
        Ok(accepted.hash)
    }

    /// Polls the transaction until a block decides it or `timeout` passes. A node that has
    /// not seen it yet (404) or holds it pending is asked again; so is one that cannot be
    /// reached for a moment (a restart).
    pub async fn wait(&self, hash: &str, timeout: Duration) -> Result<TxOutcome, NodeError> {
        if !is_hash(hash) {
            return Err(NodeError::InvalidArgument(
                "transaction hash is not 32 bytes of hex".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get_json(&format!("/v1/transactions/{hash}")).await {
                Ok(Some(v)) => {
                    let st: TxStatus = serde_json::from_value(v)
                        .map_err(|e| NodeError::BadResponse(format!("transaction status: {e}")))?;
                    match st.status.as_str() {
                        "committed" => {
                            let height = st.height.ok_or_else(|| {
                                NodeError::BadResponse("committed without height".into())
                            })?;
                            return Ok(TxOutcome::Committed { height });
                        }
                        "rejected" => {
                            return Ok(TxOutcome::Rejected {
                                reason: st.reason.unwrap_or_default(),
                            });
                        }
                        "pending" => {}
                        other => {
                            return Err(NodeError::BadResponse(format!(
                                "unknown transaction status `{}`",
                                other.chars().take(32).collect::<String>()
                            )));
                        }
                    }
                }
                Ok(None) | Err(NodeError::Unreachable(_)) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() + POLL_EVERY > deadline {
                return Err(NodeError::Timeout {
                    hash: hash.to_string(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The next nonce of the account with public key `key_hex`; `None` if not registered.
    pub async fn next_nonce(&self, key_hex: &str) -> Result<Option<u64>, NodeError> {
        if !is_hash(key_hex) {
            return Err(NodeError::InvalidArgument(
                "public key is not 32 bytes of hex".into(),
            ));
        }
        let Some(v) = self.get_json(&format!("/v1/accounts/{key_hex}")).await? else {
            return Ok(None);
        };
        v["next_nonce"]
            .as_u64()
            .map(Some)
            .ok_or_else(|| NodeError::BadResponse("account without next_nonce".into()))
    }

    /// `GET {base}{path}` as JSON; `None` on 404. `path` starts with `/`.
    pub async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, NodeError> {
        if !path.starts_with('/') {
            return Err(NodeError::InvalidArgument(
                "path must start with `/`".into(),
            ));
        }
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(NodeError::Unreachable)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(rejection(resp).await);
        }
        read_json(resp).await.map(Some)
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, NodeError> {
    let bytes = resp.bytes().await.map_err(NodeError::Unreachable)?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::BadResponse(e.to_string()))
}

/// A non-success answer as [`NodeError::Rejected`]: the problem's kind and detail, or the
/// status and (a bounded piece of) the raw text when it is not problem+json.
async fn rejection(resp: reqwest::Response) -> NodeError {
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => return NodeError::Unreachable(e),
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let kind = v["type"]
        .as_str()
        .and_then(|t| t.rsplit('/').next())
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "-")
        });
    let detail = v["detail"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| text.chars().take(512).collect());
    NodeError::Rejected {
        status: status.as_u16(),
        kind,
        detail,
    }
}
