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
    let resp = client
        .get(format!("{}/v1/accounts/{key}", node.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| format!("cannot reach {node}"))?;
    if !resp.status().is_success() {
        bail!("account lookup failed: {}", error_text(resp).await);
    }
    let v: serde_json::Value = resp.json().await?;
    v["next_nonce"]
        .as_u64()
        .ok_or_else(|| anyhow!("account lookup: no next_nonce"))
}
