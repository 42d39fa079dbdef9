//! The anchor proof bundle: everything needed to show, offline and against nothing but the
//! chain's genesis file, that a digest was anchored with a given record. The format is specified
//! byte for byte in `docs/proof-format.md`; a second, independent verifier checks the same test
//! vectors (`testdata/proofs/`).
//!
//! The chain of links, checked in this order by [`AnchorBundle::verify`] (the first that fails is
//! reported, with the code [`BrokenLink::code`] both verifiers share):
//! 1. the bundle is of the genesis file's chain, and names that file's digest;
//! 2. the record's canonical bytes sit under [`anchor_state_key`]`(digest)` in the state tree,
//!    and the genesis digest under [`GENESIS_STATE_KEY`]: both proofs lead to `state.root`;
//! 3. header 0 commits to that state (`headers[0].state == state`);
//! 4. each header is the parent of the next, one height above it, at a later round of the same
//!    epoch or in the next epoch, all of the bundle's chain;
//! 5. `commit_qc` commits the last header (2-chain rule, one height and round above it) in the
//!    last header's epoch;
//! 6. `epoch_changes` lead from the genesis committee to the committee of that epoch, one
//!    verified proof per epoch;
//! 7. a quorum of that committee signed `commit_qc`.
//!
//! Links 4 to 7 are the certified chain every verifier of beacon state shares
//! ([`crate::certified::certified_state`], here from the genesis committee, epoch 0).
//!
//! A block committed implies its ancestors are, so the headers need not reach the certificate's
//! own block. The JSON form keeps readable fields readable and every binary part as lowercase
//! hex of its canonical encoding; parsing is strict (unknown fields, uppercase hex and
//! non-canonical encodings are refused), so changing any byte of a bundle either fails to parse
//! or breaks a link.

use crate::certified::certified_state;
use crate::genesis::{GENESIS_STATE_KEY, Genesis, GenesisError};
use crate::state_proof::StateProof;
use crate::wire::{self, WireError};
use crate::{Digest, PublicKey, pb};
use prost::Message as _;
use serde::Deserialize;
use std::fmt;
use trellis_consensus::{
    BlockHeader, CertError, Epoch, EpochChangeProof, Height, QuorumCert, StateCommitment,
};

/// The `format` of the JSON form.
pub const FORMAT: &str = "trellis.anchor-bundle/v2";

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
    /// The genesis file's digest ([`Genesis::digest`]) and its proof under `state.root`.
    pub genesis_digest: Digest,
    pub genesis_proof: StateProof,
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
    #[error("genesis file: {0}")]
    GenesisFile(GenesisError),
    #[error("record: {0} is not 32 bytes")]
    Record(&'static str),
    #[error("chain id differs from genesis")]
    ChainId,
    #[error("the bundle is of genesis {bundle}, the genesis file's digest is {file}")]
    Genesis { bundle: Digest, file: Digest },
    #[error("state proof does not match the state root")]
    StateProof(#[source] crate::ProofError),
    #[error("genesis proof does not match the state root")]
    GenesisProof(#[source] crate::ProofError),
    #[error("the bundle has no headers")]
    NoHeaders,
    #[error("header 0 does not commit to the bundle's state")]
    StateNotCommitted,
    #[error("header {0} is of another chain")]
    OtherChain(usize),
    #[error("header {next} does not link to header {prev}", prev = next - 1)]
    Unlinked { next: usize },
    #[error(
        "header {0}'s height is not one above its parent's, or its state is not below its height"
    )]
    Height(usize),
    #[error("header {0}'s epoch and round do not follow its parent's (or its round is 0)")]
    Round(usize),
    #[error("commit certificate does not commit the last header")]
    NotCommitted,
    #[error("commit certificate is of epoch {qc}, the last header of epoch {header}")]
    EpochMismatch { qc: Epoch, header: Epoch },
    #[error("{}", epoch_changes_needed(*epoch, *from, *got))]
    EpochChanges {
        epoch: Epoch,
        /// The trusted epoch the changes start from (0: genesis).
        from: Epoch,
        got: usize,
    },
    #[error("epoch change {index}: {error}")]
    EpochChange { index: usize, error: CertError },
    #[error("commit certificate: {0}")]
    CommitCert(CertError),
}

fn epoch_changes_needed(epoch: Epoch, from: Epoch, got: usize) -> String {
    if from == 0 {
        format!(
            "commit certificate of epoch {epoch} needs {epoch} epoch changes from genesis, the \
             bundle has {got}"
        )
    } else {
        format!(
            "commit certificate of epoch {epoch} needs one epoch change per epoch from the \
             trusted epoch {from}, got {got}"
        )
    }
}

impl BrokenLink {
    /// The link's name in `docs/proof-format.md`, shared with every other verifier.
    pub fn code(&self) -> &'static str {
        match self {
            BrokenLink::GenesisFile(_) => "genesis-file",
            BrokenLink::Record(_) => "record",
            BrokenLink::ChainId => "chain-id",
            BrokenLink::Genesis { .. } => "genesis",
            BrokenLink::StateProof(_) => "state-proof",
            BrokenLink::GenesisProof(_) => "genesis-proof",
            BrokenLink::NoHeaders => "no-headers",
            BrokenLink::StateNotCommitted => "state-not-committed",
            BrokenLink::OtherChain(_) => "other-chain",
            BrokenLink::Unlinked { .. } => "unlinked",
            BrokenLink::Height(_) => "height",
            BrokenLink::Round(_) => "round",
            BrokenLink::NotCommitted => "not-committed",
            BrokenLink::EpochMismatch { .. } => "epoch-mismatch",
            BrokenLink::EpochChanges { .. } => "epoch-changes",
            BrokenLink::EpochChange { .. } => "epoch-change",
            BrokenLink::CommitCert(_) => "commit-cert",
        }
    }

    /// The header or epoch change the link is about, where it is about one.
    pub fn index(&self) -> Option<usize> {
        match self {
            BrokenLink::OtherChain(i) | BrokenLink::Height(i) | BrokenLink::Round(i) => Some(*i),
            BrokenLink::Unlinked { next } => Some(*next),
            BrokenLink::EpochChange { index, .. } => Some(*index),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BundleError {
    #[error("bundle is not valid JSON or lacks or adds a member: {0}")]
    Json(String),
    #[error("format {0:?} is not {FORMAT:?}")]
    Format(String),
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
    #[error("{field}: {error}")]
    Wire { field: String, error: WireError },
}

/// What a verifier takes from a genesis file: the chain id, the file's digest and the committee
/// of epoch 0, from a file that passed every rule of [`Genesis::validate`].
#[derive(Clone, Debug)]
pub struct GenesisTrust {
    pub chain_id: String,
    pub digest: Digest,
    pub committee: trellis_consensus::Committee,
}

impl GenesisTrust {
    pub fn new(genesis: &Genesis) -> Result<GenesisTrust, GenesisError> {
        genesis.validate()?;
        Ok(GenesisTrust {
            chain_id: genesis.chain_id.clone(),
            digest: genesis.digest()?,
            committee: genesis.committee()?,
        })
    }
}

impl BundleError {
    /// The JSON field the error is about, if one.
    pub fn field(&self) -> Option<&str> {
        match self {
            BundleError::Json(_) => None,
            BundleError::Format(_) => Some("format"),
            BundleError::Field { field, .. } | BundleError::Wire { field, .. } => Some(field),
        }
    }
}

impl AnchorBundle {
    /// Checks every link from the record to `genesis` (see the module docs for the order).
    pub fn verify(&self, genesis: &Genesis) -> Result<Verdict, BrokenLink> {
        self.verify_against(&GenesisTrust::new(genesis).map_err(BrokenLink::GenesisFile)?)
    }

    /// [`AnchorBundle::verify`] against a genesis file read once, for many bundles.
    pub fn verify_against(&self, genesis: &GenesisTrust) -> Result<Verdict, BrokenLink> {
        let sender = <[u8; 32]>::try_from(self.record.sender.as_slice())
            .map_err(|_| BrokenLink::Record("sender"))?;
        let tx_hash = <[u8; 32]>::try_from(self.record.tx_hash.as_slice())
            .map_err(|_| BrokenLink::Record("tx_hash"))?;
        if self.chain_id != genesis.chain_id {
            return Err(BrokenLink::ChainId);
        }
        if self.genesis_digest != genesis.digest {
            return Err(BrokenLink::Genesis {
                bundle: self.genesis_digest,
                file: genesis.digest,
            });
        }
        self.state_proof
            .verify(
                &self.state.root,
                &anchor_state_key(&self.digest),
                Some(&self.record.encode_to_vec()),
            )
            .map_err(BrokenLink::StateProof)?;
        self.genesis_proof
            .verify(
                &self.state.root,
                GENESIS_STATE_KEY,
                Some(&self.genesis_digest.0),
            )
            .map_err(BrokenLink::GenesisProof)?;
        // Link 3 here, before the links the certified chain shares with other verifiers: an
        // empty list is reported by `certified_state` as `no-headers`, first.
        if self.headers.first().is_some_and(|h| h.state != self.state) {
            return Err(BrokenLink::StateNotCommitted);
        }
        let certified = certified_state(
            &self.chain_id,
            0,
            &genesis.committee,
            &self.headers,
            &self.commit_qc,
            &self.epoch_changes,
        )?;
        let committee = &certified.committee;
        let vd = &self.commit_qc.vote_data;
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
            "genesis_digest": hex::encode(self.genesis_digest.0),
            "genesis_proof": hex::encode(wire::encode_state_proof(&self.genesis_proof)),
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
        // The format first, so that a bundle of another version is reported as such rather
        // than by the first member its version lacks.
        let f: FormatOnly =
            serde_json::from_str(s).map_err(|e| BundleError::Json(e.to_string()))?;
        if f.format != FORMAT {
            return Err(BundleError::Format(f.format));
        }
        let j: BundleJson =
            serde_json::from_str(s).map_err(|e| BundleError::Json(e.to_string()))?;
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
            genesis_digest: Digest(fixed(&j.genesis_digest, "genesis_digest")?),
            genesis_proof: decoded(&j.genesis_proof, "genesis_proof", wire::decode_state_proof)?,
            headers,
            commit_qc: decoded(&j.commit_qc, "commit_qc", wire::decode_qc)?,
            epoch_changes,
        })
    }
}

/// Reads `format` alone; the other members are checked by [`BundleJson`].
#[derive(Deserialize)]
struct FormatOnly {
    format: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleJson {
    // Checked by `FormatOnly` first; declared so that it is not an unknown member.
    #[allow(dead_code)]
    format: String,
    chain_id: String,
    digest: String,
    record: RecordJson,
    state: StateJson,
    state_proof: String,
    genesis_digest: String,
    genesis_proof: String,
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
pub(crate) fn lower_hex(s: &str, field: &str) -> Result<Vec<u8>, BundleError> {
    let bad = || BundleError::Field {
        field: field.to_string(),
        reason: "is not lowercase hex".to_string(),
    };
    if !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    hex::decode(s).map_err(|_| bad())
}

pub(crate) fn fixed<const N: usize>(s: &str, field: &str) -> Result<[u8; N], BundleError> {
    <[u8; N]>::try_from(lower_hex(s, field)?).map_err(|_| BundleError::Field {
        field: field.to_string(),
        reason: format!("is not {N} bytes"),
    })
}

pub(crate) fn decoded<T>(
    s: &str,
    field: &str,
    decode: impl Fn(&[u8]) -> Result<T, WireError>,
) -> Result<T, BundleError> {
    decode(&lower_hex(s, field)?).map_err(|error| BundleError::Wire {
        field: field.to_string(),
        error,
    })
}
