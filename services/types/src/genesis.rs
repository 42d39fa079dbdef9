//! The genesis file (`genesis.json`): the chain id, the first committee, the registered accounts
//! and the chain's parameters.
//!
//! Every node of a chain and every offline verifier starts from this file, so it is parsed once
//! and strictly: unknown fields, malformed keys, duplicates and impossible parameters are refused
//! with the path of the offending field (`validators[2].consensus_key: not 32 bytes of hex`).
//! A [`Genesis`] returned by [`Genesis::from_json`] is valid.

use crate::pb::Role;
use crate::tx::DEFAULT_MAX_TX_BYTES;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trellis_consensus::crypto::is_strong_key;
use trellis_consensus::types::Encoder;
use trellis_consensus::{Committee, Digest, EpochState, PublicKey, StateCommitment};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    pub genesis_time_ms: u64,
    pub validators: Vec<GenesisValidator>,
    #[serde(default)]
    pub accounts: Vec<GenesisAccountEntry>,
    /// Shard chains that exist from genesis, as if created by passed proposals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<GenesisShard>,
    #[serde(default)]
    pub params: ChainParams,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    pub name: String,
    /// ed25519 public key, 32 bytes as hex.
    pub consensus_key: String,
    /// The org the node belongs to (required for a shard's validators). Absent is `None`;
    /// `null` is refused, as everywhere in the file but `params.epoch_length_blocks`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_string"
    )]
    pub org: Option<String>,
}

/// An optional member that, when present, must be a string (not `null`).
fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A shard chain present from genesis: its id (also its chain id), its member orgs and its
/// first committee, each node of a member org.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisShard {
    pub shard_id: String,
    pub members: Vec<String>,
    pub validators: Vec<GenesisValidator>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccountEntry {
    pub name: String,
    pub org: String,
    /// `member`, `operator`, `regulator` or `bank`.
    pub role: String,
    /// ed25519 public key, 32 bytes as hex.
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainParams {
    pub max_tx_bytes: u64,
    pub max_block_txs: u64,
    pub max_block_bytes: u64,
    /// Blocks per epoch; `None` keeps the genesis committee (no rotation yet).
    pub epoch_length_blocks: Option<u64>,
    /// A governance proposal passes when yes-votes × `approval_den` ≥ `approval_num` × the
    /// members active when it was opened (default 2/3).
    pub approval_num: u32,
    pub approval_den: u32,
    /// A proposal opened at height `h` accepts votes in blocks `h ..= h + proposal_ttl_blocks`.
    pub proposal_ttl_blocks: u64,
}

impl Default for ChainParams {
    fn default() -> Self {
        ChainParams {
            max_tx_bytes: DEFAULT_MAX_TX_BYTES as u64,
            max_block_txs: 4000,
            max_block_bytes: 4 * 1024 * 1024,
            epoch_length_blocks: None,
            approval_num: 2,
            approval_den: 3,
            proposal_ttl_blocks: DEFAULT_PROPOSAL_TTL_BLOCKS,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum GenesisError {
    #[error("genesis is not valid JSON: {0}")]
    Json(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> GenesisError {
    GenesisError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The state key under which the genesis state holds [`Genesis::digest`]: the node writes it at
/// version 0 and nothing writes it again (applications never write under `chain/`).
pub const GENESIS_STATE_KEY: &[u8] = b"chain/genesis";

fn len_u32(n: usize, name: &str) -> Result<u32, GenesisError> {
    u32::try_from(n).map_err(|_| field(name, "has more than 2^32 - 1 entries"))
}

/// About a day of blocks on an idle network (one block every 200 ms).
pub const DEFAULT_PROPOSAL_TTL_BLOCKS: u64 = 432_000;

/// Longest chain id, in characters.
pub const MAX_CHAIN_ID_CHARS: usize = 64;

/// A 32-byte hex key that only its holder can sign for ([`is_strong_key`]): consensus keys and
/// account keys alike are checked with ZIP-215, which accepts forgeries for weak keys.
fn key(hex_key: &str, name: &str) -> Result<PublicKey, GenesisError> {
    let key = hex::decode(hex_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PublicKey)
        .ok_or_else(|| field(name, "not 32 bytes of hex"))?;
    if !is_strong_key(&key) {
        return Err(field(
            name,
            "not a strong ed25519 key (a canonical encoding of a point of prime order, not the \
             identity): anyone could sign for it",
        ));
    }
    Ok(key)
}

/// An org or shard id: 1 to 64 characters of `A-Z a-z 0-9 . _ -` (they appear in URL paths).
fn org_id(s: &str, name: &str) -> Result<(), GenesisError> {
    crate::OrgId::parse(s, "id")
        .map(|_| ())
        .map_err(|_| field(name, "must be 1 to 64 characters of A-Z a-z 0-9 . _ -"))
}

/// A shard's first committee: named, strong, distinct keys.
fn shard_committee(shard: &GenesisShard, at: &str) -> Result<Committee, GenesisError> {
    if shard.validators.is_empty() {
        return Err(field(
            format!("{at}.validators"),
            "at least one validator is needed",
        ));
    }
    let mut seen = BTreeMap::new();
    let mut members = Vec::with_capacity(shard.validators.len());
    for (i, v) in shard.validators.iter().enumerate() {
        if v.name.trim().is_empty() {
            return Err(field(format!("{at}.validators[{i}].name"), "is empty"));
        }
        let k_at = format!("{at}.validators[{i}].consensus_key");
        let k = key(&v.consensus_key, &k_at)?;
        if let Some(first) = seen.insert(k, i) {
            return Err(field(
                k_at,
                format!("duplicate of {at}.validators[{first}]"),
            ));
        }
        members.push(k);
    }
    Committee::new(members).map_err(|e| field(format!("{at}.validators"), e.to_string()))
}

fn role(s: &str) -> Option<Role> {
    Some(match s {
        "member" => Role::Member,
        "operator" => Role::Operator,
        "regulator" => Role::Regulator,
        "bank" => Role::Bank,
        _ => return None,
    })
}

impl Genesis {
    /// Parses and validates a genesis file.
    pub fn from_json(s: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis =
            serde_json::from_str(s).map_err(|e| GenesisError::Json(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    pub fn to_json_pretty(&self) -> String {
        // Plain strings, integers and lists: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every rule [`Genesis::from_json`] applies (for values built in code).
    pub fn validate(&self) -> Result<(), GenesisError> {
        let id = &self.chain_id;
        if id.is_empty() || id.chars().count() > MAX_CHAIN_ID_CHARS {
            return Err(field("chain_id", "must be 1 to 64 characters"));
        }
        if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(field(
                "chain_id",
                "contains whitespace or control characters",
            ));
        }
        self.committee()?;
        let accounts = self.parse_accounts()?;
        for (i, v) in self.validators.iter().enumerate() {
            if let Some(org) = &v.org {
                org_id(org, &format!("validators[{i}].org"))?;
            }
        }
        let member_orgs: std::collections::BTreeSet<&str> = accounts
            .iter()
            .filter(|(_, _, r)| *r == Role::Member)
            .map(|(_, o, _)| o.as_str())
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for (i, shard) in self.shards.iter().enumerate() {
            let at = format!("shards[{i}]");
            org_id(&shard.shard_id, &format!("{at}.shard_id"))?;
            if shard.shard_id == self.chain_id || !ids.insert(shard.shard_id.as_str()) {
                return Err(field(
                    format!("{at}.shard_id"),
                    "must differ from the chain id and from every other shard",
                ));
            }
            shard_committee(shard, &at)?;
            if shard.members.is_empty() {
                return Err(field(format!("{at}.members"), "at least one member org"));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (j, m) in shard.members.iter().enumerate() {
                if !member_orgs.contains(m.as_str()) {
                    return Err(field(
                        format!("{at}.members[{j}]"),
                        "is not an org with a member account",
                    ));
                }
                if !seen.insert(m.as_str()) {
                    return Err(field(format!("{at}.members[{j}]"), "is listed twice"));
                }
            }
            for (j, v) in shard.validators.iter().enumerate() {
                match &v.org {
                    Some(org) if shard.members.contains(org) => {}
                    _ => {
                        return Err(field(
                            format!("{at}.validators[{j}].org"),
                            "must name one of the shard's member orgs",
                        ));
                    }
                }
            }
        }
        let p = &self.params;
        let positive = [
            ("max_tx_bytes", p.max_tx_bytes),
            ("max_block_txs", p.max_block_txs),
            ("max_block_bytes", p.max_block_bytes),
            ("epoch_length_blocks", p.epoch_length_blocks.unwrap_or(1)),
            ("approval_den", u64::from(p.approval_den)),
            ("proposal_ttl_blocks", p.proposal_ttl_blocks),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(field(format!("params.{name}"), "must be positive"));
        }
        // The rule governance applies to `approval_threshold` proposals: more than half (two
        // disjoint halves could otherwise pass contradicting proposals), denominator ≤ 1000.
        if p.approval_den > 1000
            || p.approval_num > p.approval_den
            || 2 * u64::from(p.approval_num) <= u64::from(p.approval_den)
        {
            return Err(field(
                "params.approval_num",
                "approval_num/approval_den must be more than 1/2 and at most 1, with approval_den ≤ 1000",
            ));
        }
        if p.proposal_ttl_blocks > 100_000_000 {
            return Err(field(
                "params.proposal_ttl_blocks",
                "must be at most 100000000",
            ));
        }
        if p.max_tx_bytes > p.max_block_bytes {
            return Err(field(
                "params.max_tx_bytes",
                "exceeds params.max_block_bytes",
            ));
        }
        Ok(())
    }

    /// The committee of epoch 0, in file order.
    pub fn committee(&self) -> Result<Committee, GenesisError> {
        if self.validators.is_empty() {
            return Err(field("validators", "at least one validator is needed"));
        }
        let mut seen = BTreeMap::new();
        let mut members = Vec::with_capacity(self.validators.len());
        for (i, v) in self.validators.iter().enumerate() {
            if v.name.trim().is_empty() {
                return Err(field(format!("validators[{i}].name"), "is empty"));
            }
            let at = format!("validators[{i}].consensus_key");
            let k = key(&v.consensus_key, &at)?;
            if let Some(first) = seen.insert(k, i) {
                return Err(field(at, format!("duplicate of validators[{first}]")));
            }
            members.push(k);
        }
        Committee::new(members).map_err(|e| field("validators", e.to_string()))
    }

    /// The first committee of each shard of [`Genesis::shards`], in file order.
    pub fn shard_committees(&self) -> Result<Vec<Committee>, GenesisError> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, s)| shard_committee(s, &format!("shards[{i}]")))
            .collect()
    }

    /// The registered accounts: key, organisation and role, in file order.
    pub fn parse_accounts(&self) -> Result<Vec<(PublicKey, String, Role)>, GenesisError> {
        let mut seen = BTreeMap::new();
        self.accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if a.name.trim().is_empty() {
                    return Err(field(format!("accounts[{i}].name"), "is empty"));
                }
                if crate::OrgId::parse(&a.org, "org").is_err() {
                    return Err(field(
                        format!("accounts[{i}].org"),
                        "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
                    ));
                }
                let r = role(&a.role).ok_or_else(|| {
                    field(
                        format!("accounts[{i}].role"),
                        format!("{:?} is not member, operator, regulator or bank", a.role),
                    )
                })?;
                let at = format!("accounts[{i}].public_key");
                let k = key(&a.public_key, &at)?;
                if let Some(first) = seen.insert(k, i) {
                    return Err(field(at, format!("duplicate of accounts[{first}]")));
                }
                Ok((k, a.org.clone(), r))
            })
            .collect()
    }

    /// The genesis digest: SHA-256 of the file's canonical encoding (docs/proof-format.md,
    /// "The genesis digest"). The node writes it into the genesis state under
    /// [`GENESIS_STATE_KEY`], so every state root of the chain commits to the whole file and a
    /// verifier given another genesis (other accounts, roles or parameters) refuses the proof.
    /// Keys enter as their bytes, parameters with their defaults applied, so the digest is that
    /// of the file's meaning, not of its spelling.
    pub fn digest(&self) -> Result<Digest, GenesisError> {
        // Destructured whole: a field added to the file fails to compile here until it is
        // either encoded or said to be left out.
        let Genesis {
            chain_id,
            genesis_time_ms,
            validators,
            accounts,
            shards,
            params,
        } = self;
        let ChainParams {
            max_tx_bytes,
            max_block_txs,
            max_block_bytes,
            epoch_length_blocks,
            approval_num,
            approval_den,
            proposal_ttl_blocks,
        } = params;
        let mut e = Encoder::new("trellis/genesis-file/v1");
        e.bytes(chain_id.as_bytes()).u64(*genesis_time_ms);
        e.u32(len_u32(validators.len(), "validators")?);
        for (i, v) in validators.iter().enumerate() {
            let k = key(&v.consensus_key, &format!("validators[{i}].consensus_key"))?;
            e.bytes(v.name.as_bytes()).fixed(&k.0);
        }
        e.u32(len_u32(accounts.len(), "accounts")?);
        for (i, a) in accounts.iter().enumerate() {
            let k = key(&a.public_key, &format!("accounts[{i}].public_key"))?;
            e.bytes(a.name.as_bytes())
                .bytes(a.org.as_bytes())
                .bytes(a.role.as_bytes())
                .fixed(&k.0);
        }
        e.u64(*max_tx_bytes)
            .u64(*max_block_txs)
            .u64(*max_block_bytes);
        match epoch_length_blocks {
            None => e.u8(0),
            Some(n) => e.u8(1).u64(*n),
        };
        e.u32(*approval_num)
            .u32(*approval_den)
            .u64(*proposal_ttl_blocks);
        // Nodes' orgs and shards came with format v2; a file without them digests as in v1.
        if validators.iter().any(|v| v.org.is_some()) || !shards.is_empty() {
            e.u8(1);
            for v in validators {
                e.bytes(v.org.as_deref().unwrap_or("").as_bytes());
            }
            e.u32(len_u32(shards.len(), "shards")?);
            for (i, shard) in shards.iter().enumerate() {
                let GenesisShard {
                    shard_id,
                    members,
                    validators,
                } = shard;
                e.bytes(shard_id.as_bytes());
                e.u32(len_u32(members.len(), "members")?);
                for m in members {
                    e.bytes(m.as_bytes());
                }
                e.u32(len_u32(validators.len(), "validators")?);
                for (j, v) in validators.iter().enumerate() {
                    let k = key(
                        &v.consensus_key,
                        &format!("shards[{i}].validators[{j}].consensus_key"),
                    )?;
                    e.bytes(v.name.as_bytes())
                        .fixed(&k.0)
                        .bytes(v.org.as_deref().unwrap_or("").as_bytes());
                }
            }
        }
        Ok(e.hash())
    }

    /// Epoch 0 of the chain, whose root commits to `state`, the application's genesis state
    /// (the node computes its root from [`Genesis::parse_accounts`]).
    pub fn epoch_state(&self, state: StateCommitment) -> Result<EpochState, GenesisError> {
        Ok(EpochState::genesis_with_state(
            &self.chain_id,
            self.committee()?,
            self.genesis_time_ms,
            state,
        ))
    }
}
