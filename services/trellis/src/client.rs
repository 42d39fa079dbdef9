//! Small helpers for talking to a node's client API.

use anyhow::{Context, Result, anyhow, bail};

/// A problem+json body's detail, or the raw text.
pub async fn error_text(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => format!(
            "{} ({}{})",
            v["detail"].as_str().unwrap_or(&text),
            status,
            v["field"]
                .as_str()
                .map(|f| format!(", field `{f}`"))
                .unwrap_or_default()
        ),
        Err(_) => format!("{text} ({status})"),
    }
}

pub async fn account_nonce(client: &reqwest::Client, node: &str, key: &str) -> Result<u64> {
    chain_account_nonce(client, node, None, key, None).await
}

/// The API root of `chain` on `node` (`/v1` for the beacon when `chain` is `None`).
pub fn chain_root(node: &str, chain: Option<&str>) -> (String, String) {
    let base = node.trim_end_matches('/').to_string();
    let prefix = match chain {
        Some(c) => format!("/v1/chains/{c}"),
        None => "/v1".to_string(),
    };
    (base, prefix)
}

/// A GET of `prefix ‖ path` on `base`, signed by `signer` when given (a shard answers its
/// members' signed requests only; a public chain ignores the signature).
pub async fn signed_get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    signer: Option<&trellis_types::Signer>,
) -> Result<reqwest::Response> {
    let mut req = client.get(format!("{base}{path}"));
    if let Some(signer) = signer {
        let now = trellis_node::chain::now_ms();
        for (name, value) in trellis_types::request::sign_request(signer, "GET", path, now, b"") {
            req = req.header(name, value);
        }
    }
    req.send()
        .await
        .with_context(|| format!("cannot reach {base}"))
}

/// An account's next nonce on `chain` (the beacon when `None`).
pub async fn chain_account_nonce(
    client: &reqwest::Client,
    node: &str,
    chain: Option<&str>,
    key: &str,
    signer: Option<&trellis_types::Signer>,
) -> Result<u64> {
    let (base, prefix) = chain_root(node, chain);
    let resp = signed_get(client, &base, &format!("{prefix}/accounts/{key}"), signer).await?;
    if !resp.status().is_success() {
        bail!("account lookup failed: {}", error_text(resp).await);
    }
    let v: serde_json::Value = resp.json().await?;
    v["next_nonce"]
        .as_u64()
        .ok_or_else(|| anyhow!("account lookup: no next_nonce"))
}
