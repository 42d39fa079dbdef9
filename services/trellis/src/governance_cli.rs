//! The CLI side of onboarding and governance: `trellis member apply|status`, `trellis
//! governance propose|vote|list`, and key login (challenge signed with the org key, exchanged
//! for a JWT). Everything goes through the services' HTTP API; transactions are signed here,
//! with the key file, and relayed by the membership service.

use crate::client::error_text;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::Path;
use trellis_node::node::KeyFile;
use trellis_types::{BeaconAction, OrgId, ProposalKind, PublicKey, Signer, Transaction};

/// What the key signs to log in: the domain, then the server's challenge bytes.
pub const AUTH_CHALLENGE_DOMAIN: &[u8] = b"trellis/auth-challenge/v1";

fn url(api: &str, path: &str) -> String {
    format!("{}{path}", api.trim_end_matches('/'))
}

async fn json_or_error(resp: reqwest::Response, what: &str) -> Result<Value> {
    if !resp.status().is_success() {
        bail!("{what}: {}", error_text(resp).await);
    }
    resp.json()
        .await
        .with_context(|| format!("{what}: not JSON"))
}

/// Logs in with a key file: asks for a challenge, signs it, gets a bearer token.
pub async fn login(http: &reqwest::Client, api: &str, signer: &Signer) -> Result<String> {
    let public_key = hex::encode(signer.public_key().0);
    let resp = http
        .post(url(api, "/v1/auth/challenge"))
        .json(&json!({ "public_key": public_key }))
        .send()
        .await
        .with_context(|| format!("cannot reach {api}"))?;
    let challenge = json_or_error(resp, "login challenge").await?;
    let challenge_hex = challenge["challenge"]
        .as_str()
        .ok_or_else(|| anyhow!("login challenge: no challenge in the answer"))?;
    let bytes = hex::decode(challenge_hex).context("login challenge: not hex")?;
    let signature = signer.sign(&[AUTH_CHALLENGE_DOMAIN, &bytes].concat());
    let resp = http
        .post(url(api, "/v1/auth/token"))
        .json(&json!({
            "public_key": public_key,
            "challenge": challenge_hex,
            "signature": hex::encode(signature.0),
        }))
        .send()
        .await?;
    let token = json_or_error(resp, "login").await?;
    token["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("login: no access_token in the answer"))
}

/// Signs `action` with the key at its next nonce on the services' chain.
pub async fn sign_for_chain(
    http: &reqwest::Client,
    api: &str,
    signer: &Signer,
    action: BeaconAction,
) -> Result<Transaction> {
    let chain = json_or_error(http.get(url(api, "/v1/chain")).send().await?, "chain info").await?;
    let chain_id = chain["chain_id"]
        .as_str()
        .ok_or_else(|| anyhow!("chain info: no chain_id"))?;
    let key = hex::encode(signer.public_key().0);
    let account = json_or_error(
        http.get(url(api, &format!("/v1/chain/accounts/{key}")))
            .send()
            .await?,
        "account",
    )
    .await?;
    let nonce = account["next_nonce"]
        .as_u64()
        .ok_or_else(|| anyhow!("account: no next_nonce"))?;
    Ok(Transaction::sign(chain_id, signer, nonce, action))
}

pub fn load_signer(key: &Path) -> Result<Signer> {
    Ok(KeyFile::load(key)?.signer()?)
}

/// `trellis member apply`: posts an application (JSON file) and prints its id and token.
pub async fn member_apply(api: &str, file: &Path, idempotency_key: Option<&str>) -> Result<Value> {
    let body =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let body: Value =
        serde_json::from_str(&body).with_context(|| format!("{} is not JSON", file.display()))?;
    let http = reqwest::Client::new();
    let mut req = http
        .post(url(api, "/v1/onboarding/applications"))
        .json(&body);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    json_or_error(
        req.send()
            .await
            .with_context(|| format!("cannot reach {api}"))?,
        "application",
    )
    .await
}

/// `trellis member status`.
pub async fn member_status(api: &str, id: &str, token: &str) -> Result<Value> {
    let http = reqwest::Client::new();
    let resp = http
        .get(url(api, &format!("/v1/onboarding/applications/{id}")))
        .header("X-Application-Token", token)
        .send()
        .await
        .with_context(|| format!("cannot reach {api}"))?;
    json_or_error(resp, "application status").await
}

/// `trellis governance list`.
pub async fn governance_list(api: &str, key: &Path, status: Option<&str>) -> Result<Value> {
    let signer = load_signer(key)?;
    let http = reqwest::Client::new();
    let token = login(&http, api, &signer).await?;
    let mut req = http
        .get(url(api, "/v1/governance/proposals"))
        .bearer_auth(token);
    if let Some(s) = status {
        req = req.query(&[("status", s)]);
    }
    json_or_error(req.send().await?, "proposals").await
}

/// What `trellis governance propose` asks for.
pub enum Proposal {
    Admit { org: String, org_key: String },
    Remove { org: String },
    Set { name: String, value: String },
}

/// `trellis governance propose`: signs the proposal with the key and submits it.
pub async fn governance_propose(api: &str, key: &Path, proposal: Proposal) -> Result<Value> {
    let kind = match proposal {
        Proposal::Admit { org, org_key } => ProposalKind::AdmitMember {
            org: OrgId::parse(&org, "--admit").map_err(|e| anyhow!("{e}"))?,
            org_key: PublicKey(
                hex::decode(&org_key)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow!("--org-key: expected 32 bytes of hex"))?,
            ),
        },
        Proposal::Remove { org } => ProposalKind::RemoveMember {
            org: OrgId::parse(&org, "--remove").map_err(|e| anyhow!("{e}"))?,
        },
        Proposal::Set { name, value } => ProposalKind::SetParameter { name, value },
    };
    let signer = load_signer(key)?;
    let http = reqwest::Client::new();
    let token = login(&http, api, &signer).await?;
    let tx = sign_for_chain(&http, api, &signer, BeaconAction::Propose(kind)).await?;
    let resp = http
        .post(url(api, "/v1/governance/proposals"))
        .bearer_auth(token)
        .json(&json!({ "tx": hex::encode(tx.encoded()) }))
        .send()
        .await?;
    json_or_error(resp, "proposal").await
}

/// `trellis governance vote`: signs a vote with the org key and submits it.
pub async fn governance_vote(api: &str, key: &Path, proposal: u64, approve: bool) -> Result<Value> {
    let signer = load_signer(key)?;
    let http = reqwest::Client::new();
    let token = login(&http, api, &signer).await?;
    let tx = sign_for_chain(
        &http,
        api,
        &signer,
        BeaconAction::Vote {
            proposal_id: proposal,
            approve,
        },
    )
    .await?;
    let resp = http
        .post(url(
            api,
            &format!("/v1/governance/proposals/{proposal}/votes"),
        ))
        .bearer_auth(token)
        .json(&json!({ "tx": hex::encode(tx.encoded()) }))
        .send()
        .await?;
    json_or_error(resp, "vote").await
}

/// `trellis member pending`: the applications waiting for review (operator key).
pub async fn member_pending(api: &str, key: &Path) -> Result<Value> {
    let signer = load_signer(key)?;
    let http = reqwest::Client::new();
    let token = login(&http, api, &signer).await?;
    let resp = http
        .get(url(api, "/v1/onboarding/applications"))
        .query(&[("status", "pending")])
        .bearer_auth(token)
        .send()
        .await?;
    json_or_error(resp, "applications").await
}

/// `trellis member decide`: an operator approves or rejects an application after review.
pub async fn member_decide(
    api: &str,
    key: &Path,
    id: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<Value> {
    let signer = load_signer(key)?;
    let http = reqwest::Client::new();
    let token = login(&http, api, &signer).await?;
    let body = match (approve, reason) {
        (true, _) => json!({ "approve": true }),
        (false, Some(r)) => json!({ "approve": false, "reason": r }),
        (false, None) => bail!("--reject needs --reason"),
    };
    let resp = http
        .post(url(
            api,
            &format!("/v1/onboarding/applications/{id}/decision"),
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    json_or_error(resp, "decision").await
}
