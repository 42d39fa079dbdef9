//! The anchor proof bundle: everything needed to show, offline and against nothing but the
//! chain's genesis, that a digest was anchored with a given record.
//!
//! The chain of links, checked in this order by [`AnchorBundle::verify`]:
//! 1. the record's canonical bytes sit under [`anchor_state_key`]`(digest)` in the state tree:
//!    the JMT proof leads to `state.root`;
//! 2. header 0 commits to that state (`headers[0].state == state`);
//! 3. each header is the parent of the next, all of the bundle's chain;
//! 4. `commit_qc` commits the last header (2-chain rule) in the last header's epoch;
//! 5. the bundle's chain is the genesis chain, and `epoch_changes` lead from the genesis
//!    committee to the committee of that epoch, one verified proof per epoch;
//! 6. a quorum of that committee signed `commit_qc`.
//!
//! A block committed implies its ancestors are, so the headers need not reach the certificate's
//! own block. The JSON form keeps readable fields readable and every binary part as lowercase
//! hex of its canonical encoding; parsing is strict (unknown fields, uppercase hex and
//! non-canonical encodings are refused), so changing any byte of a bundle either fails to parse
//! or breaks a link.

use crate::state_proof::StateProof;
use crate::wire::{self, WireError};
use crate::{Digest, PublicKey, pb};
use prost::Message as _;
use serde::Deserialize;
use std::fmt;
use trellis_consensus::{
    BlockHeader, CertError, Epoch, EpochChangeProof, EpochState, Height, QuorumCert,
    StateCommitment,
};

/// The `format` of the JSON form.
pub const FORMAT: &str = "trellis.anchor-bundle/v1";

/// The state key of a digest's anchor record: `anchor/` ‖ 32-byte digest. The ledger writes
/// records under it and verifiers look them up by it, so the layout lives here.
pub fn anchor_state_key(digest: &Digest) -> Vec<u8> {
    [b"anchor/".as_slice(), &digest.0].concat()
}

#[derive(Clone, Debug, PartialEq)]
pub struct AnchorBundle {
    pub chain_id: String,
    pub digest: Digest,
    pub record: pb::AnchorRecord,
    pub state: StateCommitment,
    pub state_proof: StateProof,
    pub headers: Vec<BlockHeader>,
    pub commit_qc: QuorumCert,
    pub epoch_changes: Vec<EpochChangeProof>,
}

/// What a verified bundle proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub chain_id: String,
    pub digest: Digest,
    pub tag: String,
    pub sender: PublicKey,
    pub tx_hash: Digest,
    pub state_height: Height,
    pub epoch: Epoch,
    pub signers: usize,
    pub committee_size: usize,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "digest {} anchored with tag {:?} by {} (tx {}) on chain {:?}, state height {}, \
             epoch {}, certified by {} of {} validators",
            self.digest,
            self.tag,
            hex::encode(self.sender.0),
            self.tx_hash,
            self.chain_id,
            self.state_height,
            self.epoch,
            self.signers,
            self.committee_size
        )
    }
}

/// The first link of the chain that does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BrokenLink {
    #[error("record: {0} is not 32 bytes")]
    Record(&'static str),
    #[error("state proof does not match the state root")]
    StateProof(#[source] crate::ProofError),
    #[error("the bundle has no headers")]
    NoHeaders,
    #[error("header 0 does not commit to the bundle's state")]
    StateNotCommitted,
    #[error("header {0} is of another chain")]
    OtherChain(usize),
    #[error("header {next} does not link to header {prev}", prev = next - 1)]
    Unlinked { next: usize },
    #[error("commit certificate does not commit the last header")]
    NotCommitted,
    #[error("commit certificate is of epoch {qc}, the last header of epoch {header}")]
    EpochMismatch { qc: Epoch, header: Epoch },
    #[error("chain id differs from genesis")]
    ChainId,
    #[error(
        "commit certificate of epoch {epoch} needs {} epoch changes from genesis epoch \
         {genesis}, the bundle has {got}", epoch.saturating_sub(*genesis)
    )]
    EpochChanges {
        epoch: Epoch,
        genesis: Epoch,
        got: usize,
    },
    #[error("epoch change {index}: {error}")]
    EpochChange { index: usize, error: CertError },
    #[error("commit certificate: {0}")]
    CommitCert(CertError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BundleError {
    #[error("bundle is not valid JSON: {0}")]
    Json(String),
    #[error("format {0:?} is not {FORMAT:?}")]
    Format(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{field}: {error}")]
    Wire { field: String, error: WireError },
}

impl AnchorBundle {
    /// Checks every link from the record to `genesis` (see the module docs for the order). Only
    /// the genesis chain id, epoch and committee are used.
    pub fn verify(&self, genesis: &EpochState) -> Result<Verdict, BrokenLink> {
        let sender = <[u8; 32]>::try_from(self.record.sender.as_slice())
            .map_err(|_| BrokenLink::Record("sender"))?;
        let tx_hash = <[u8; 32]>::try_from(self.record.tx_hash.as_slice())
            .map_err(|_| BrokenLink::Record("tx_hash"))?;
        self.state_proof
            .verify(
                &self.state.root,
                &anchor_state_key(&self.digest),
                Some(&self.record.encode_to_vec()),
            )
            .map_err(BrokenLink::StateProof)?;
        let last = self.headers.last().ok_or(BrokenLink::NoHeaders)?;
        if self.headers[0].state != self.state {
            return Err(BrokenLink::StateNotCommitted);
        }
        if let Some(i) = self
            .headers
            .iter()
            .position(|h| h.chain_id != self.chain_id)
        {
            return Err(BrokenLink::OtherChain(i));
        }
        if let Some(i) =
            (1..self.headers.len()).find(|i| self.headers[*i].parent_id != self.headers[i - 1].id())
        {
            return Err(BrokenLink::Unlinked { next: i });
        }
        let vd = &self.commit_qc.vote_data;
        if vd.commits() != Some(last.id()) {
            return Err(BrokenLink::NotCommitted);
        }
        if vd.epoch != last.epoch {
            return Err(BrokenLink::EpochMismatch {
                qc: vd.epoch,
                header: last.epoch,
            });
        }
        if self.chain_id != genesis.chain_id {
            return Err(BrokenLink::ChainId);
        }
        let changes = vd.epoch.checked_sub(genesis.epoch);
        if changes != Some(self.epoch_changes.len() as u64) {
            return Err(BrokenLink::EpochChanges {
                epoch: vd.epoch,
                genesis: genesis.epoch,
                got: self.epoch_changes.len(),
            });
        }
        let mut committee = &genesis.committee;
        for (index, (proof, epoch)) in self.epoch_changes.iter().zip(genesis.epoch..).enumerate() {
            committee = proof
                .verify(&self.chain_id, epoch, committee)
                .map_err(|error| BrokenLink::EpochChange { index, error })?;
        }
        self.commit_qc
            .verify(&self.chain_id, committee)
            .map_err(BrokenLink::CommitCert)?;
        Ok(Verdict {
            chain_id: self.chain_id.clone(),
            digest: self.digest,
            tag: self.record.tag.clone(),
            sender: PublicKey(sender),
            tx_hash: Digest(tx_hash),
            state_height: self.state.height,
            epoch: vd.epoch,
            signers: self.commit_qc.signers.count(),
            committee_size: committee.size(),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": FORMAT,
            "chain_id": self.chain_id,
            "digest": hex::encode(self.digest.0),
            "record": {
                "sender": hex::encode(&self.record.sender),
                "tag": self.record.tag,
                "tx_hash": hex::encode(&self.record.tx_hash),
            },
            "state": { "height": self.state.height, "root": hex::encode(self.state.root.0) },
            "state_proof": hex::encode(wire::encode_state_proof(&self.state_proof)),
            "headers": self.headers.iter().map(|h| hex::encode(wire::encode_header(h))).collect::<Vec<_>>(),
            "commit_qc": hex::encode(wire::encode_qc(&self.commit_qc)),
            "epoch_changes": self
                .epoch_changes
                .iter()
                .map(|e| hex::encode(wire::encode_epoch_change(e)))
                .collect::<Vec<_>>(),
        })
    }

    /// Parses the JSON form strictly; does not verify (see [`AnchorBundle::verify`]).
    pub fn from_json(s: &str) -> Result<AnchorBundle, BundleError> {
        let j: BundleJson =
            serde_json::from_str(s).map_err(|e| BundleError::Json(e.to_string()))?;
        if j.format != FORMAT {
            return Err(BundleError::Format(j.format));
        }
        let headers = j
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| decoded(h, &format!("headers[{i}]"), wire::decode_header))
            .collect::<Result<_, _>>()?;
        let epoch_changes = j
            .epoch_changes
            .iter()
            .enumerate()
            .map(|(i, e)| decoded(e, &format!("epoch_changes[{i}]"), wire::decode_epoch_change))
            .collect::<Result<_, _>>()?;
        Ok(AnchorBundle {
            chain_id: j.chain_id,
            digest: Digest(fixed(&j.digest, "digest")?),
            record: pb::AnchorRecord {
                sender: fixed::<32>(&j.record.sender, "record.sender")?.to_vec(),
                tag: j.record.tag,
                tx_hash: fixed::<32>(&j.record.tx_hash, "record.tx_hash")?.to_vec(),
            },
            state: StateCommitment {
                height: j.state.height,
                root: Digest(fixed(&j.state.root, "state.root")?),
            },
            state_proof: decoded(&j.state_proof, "state_proof", wire::decode_state_proof)?,
            headers,
            commit_qc: decoded(&j.commit_qc, "commit_qc", wire::decode_qc)?,
            epoch_changes,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleJson {
    format: String,
    chain_id: String,
    digest: String,
    record: RecordJson,
    state: StateJson,
    state_proof: String,
    headers: Vec<String>,
    commit_qc: String,
    epoch_changes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordJson {
    sender: String,
    tag: String,
    tx_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    height: u64,
    root: String,
}

/// Lowercase hex only, so that one byte string has one spelling.
fn lower_hex(s: &str, field: &str) -> Result<Vec<u8>, BundleError> {
    let bad = || BundleError::Field {
        field: field.to_string(),
        reason: "is not lowercase hex".to_string(),
    };
    if !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    hex::decode(s).map_err(|_| bad())
}

fn fixed<const N: usize>(s: &str, field: &str) -> Result<[u8; N], BundleError> {
    <[u8; N]>::try_from(lower_hex(s, field)?).map_err(|_| BundleError::Field {
        field: field.to_string(),
        reason: format!("is not {N} bytes"),
    })
}

fn decoded<T>(
    s: &str,
    field: &str,
    decode: impl Fn(&[u8]) -> Result<T, WireError>,
) -> Result<T, BundleError> {
    decode(&lower_hex(s, field)?).map_err(|error| BundleError::Wire {
        field: field.to_string(),
        error,
    })
}
