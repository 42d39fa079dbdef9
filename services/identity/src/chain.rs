//! The few reads of a node's client API the service makes, typed: a transaction's fate (with
//! the rejection code and proposal id that [`NodeClient::wait`] does not carry), an account,
//! a governance proposal's status and a member's status. The node is only ever reached
//! through [`NodeClient`].

use serde::Deserialize;
use trellis_servicekit::{NodeClient, NodeError};

/// `GET /v1/transactions/{hash}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TxState {
    /// `pending`, `committed` or `rejected`.
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) reason_code: Option<String>,
    #[serde(default)]
    pub(crate) proposal_id: Option<u64>,
}

/// The transaction's state on the node, `None` if the node has not seen it.
pub(crate) async fn tx_state(node: &NodeClient, hash: &str) -> Result<Option<TxState>, NodeError> {
    let Some(v) = node.get_json(&format!("/v1/transactions/{hash}")).await? else {
        return Ok(None);
    };
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| NodeError::BadResponse(format!("transaction status: {e}")))
}

/// `GET /v1/accounts/{key}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Account {
    #[serde(default)]
    pub(crate) org: String,
    /// `member`, `operator`, `regulator`, `bank` or `unspecified`.
    pub(crate) role: String,
}

/// The account with public key `key_hex`, `None` if not registered.
pub(crate) async fn account(
    node: &NodeClient,
    key_hex: &str,
) -> Result<Option<Account>, NodeError> {
    let Some(v) = node.get_json(&format!("/v1/accounts/{key_hex}")).await? else {
        return Ok(None);
    };
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| NodeError::BadResponse(format!("account: {e}")))
}

/// The status (`open`, `passed`, `rejected`, `expired`) of governance proposal `id`.
pub(crate) async fn proposal_status(
    node: &NodeClient,
    id: u64,
) -> Result<Option<String>, NodeError> {
    let Some(v) = node
        .get_json(&format!("/v1/governance/proposals/{id}"))
        .await?
    else {
        return Ok(None);
    };
    Ok(v["status"].as_str().map(str::to_string))
}

/// The membership status of `org` on the beacon (`active`, `removed`), `None` when the beacon
/// knows no such member.
pub(crate) async fn member_status(
    node: &NodeClient,
    org: &str,
) -> Result<Option<String>, NodeError> {
    if trellis_types::OrgId::parse(org, "org").is_err() || org.chars().all(|c| c == '.') {
        // Not an org id the beacon can hold (and `.` or `..` would change the URL's path).
        return Ok(None);
    }
    let Some(v) = node.get_json(&format!("/v1/members/{org}")).await? else {
        return Ok(None);
    };
    Ok(v["status"].as_str().map(str::to_string))
}

/// Whether `org` is an active member holding `org_key`; `false` when unknown or removed.
pub(crate) async fn member_active(
    node: &NodeClient,
    org: &str,
    org_key: &str,
) -> Result<bool, NodeError> {
    let Some(v) = node.get_json(&format!("/v1/members/{org}")).await? else {
        return Ok(false);
    };
    let active = v["status"].as_str() == Some("active");
    let holds_key = v["keys"].as_array().is_some_and(|keys| {
        keys.iter()
            .any(|k| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(org_key)))
    });
    Ok(active && holds_key)
}
