//! The state bundle: what any state key of a chain holds (a value, or nothing) at a certified
//! state, with the proofs that let anyone check it against the chain's genesis (its id, its
//! genesis digest, the committee of epoch 0). `GET /v1/chains/{chain_id}/proofs/{namespace}/{id}`
//! serves it; the anchor bundle ([`crate::bundle`]) is the same chain of proofs for one kind of
//! record. Format `trellis.state-bundle/v1`, hex of the canonical encodings as in the anchor
//! bundle, lowercase only.

use crate::bundle::{BrokenLink, BundleError, GenesisTrust, decoded, fixed, lower_hex};
use crate::certified::certified_state;
use crate::genesis::GENESIS_STATE_KEY;
use crate::{StateProof, wire};
use serde::Deserialize;
use trellis_consensus::{BlockHeader, Digest, EpochChangeProof, QuorumCert, StateCommitment};

pub const FORMAT: &str = "trellis.state-bundle/v1";

#[derive(Clone, Debug, PartialEq)]
pub struct StateBundle {
    pub chain_id: String,
    pub key: Vec<u8>,
    /// `None`: the key holds nothing at that state (the proof shows its absence).
    pub value: Option<Vec<u8>>,
    pub state: StateCommitment,
    pub state_proof: StateProof,
    pub genesis_digest: Digest,
    pub genesis_proof: StateProof,
    pub headers: Vec<BlockHeader>,
    pub commit_qc: QuorumCert,
    pub epoch_changes: Vec<EpochChangeProof>,
}

/// What a verified state bundle says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateVerdict {
    pub chain_id: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub state_height: u64,
    pub epoch: u64,
}

impl StateBundle {
    /// Checks every link against `trust` (for the beacon, [`GenesisTrust::new`] of its genesis
    /// file): the chain, the genesis digest, the value's and the genesis digest's proofs under
    /// the state root, and the certified chain of headers from the genesis committee.
    pub fn verify_against(&self, trust: &GenesisTrust) -> Result<StateVerdict, BrokenLink> {
        if self.chain_id != trust.chain_id {
            return Err(BrokenLink::ChainId);
        }
        if self.genesis_digest != trust.digest {
            return Err(BrokenLink::Genesis {
                bundle: self.genesis_digest,
                file: trust.digest,
            });
        }
        self.state_proof
            .verify(&self.state.root, &self.key, self.value.as_deref())
            .map_err(BrokenLink::StateProof)?;
        self.genesis_proof
            .verify(
                &self.state.root,
                GENESIS_STATE_KEY,
                Some(&self.genesis_digest.0),
            )
            .map_err(BrokenLink::GenesisProof)?;
        if self.headers.first().is_some_and(|h| h.state != self.state) {
            return Err(BrokenLink::StateNotCommitted);
        }
        let certified = certified_state(
            &self.chain_id,
            0,
            &trust.committee,
            &self.headers,
            &self.commit_qc,
            &self.epoch_changes,
        )?;
        Ok(StateVerdict {
            chain_id: self.chain_id.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            state_height: self.state.height,
            epoch: certified.epoch,
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": FORMAT,
            "chain_id": self.chain_id,
            "key": hex::encode(&self.key),
            "value": self.value.as_ref().map(hex::encode),
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

    /// Parses the JSON form strictly; does not verify.
    pub fn from_json(s: &str) -> Result<StateBundle, BundleError> {
        let j: StateBundleJson =
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
        Ok(StateBundle {
            chain_id: j.chain_id,
            key: lower_hex(&j.key, "key")?,
            value: j
                .value
                .as_deref()
                .map(|v| lower_hex(v, "value"))
                .transpose()?,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBundleJson {
    format: String,
    chain_id: String,
    key: String,
    value: Option<String>,
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
struct StateJson {
    height: u64,
    root: String,
}
