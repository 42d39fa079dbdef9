//! The shard application's actions ([`ShardAction`]), carried as the envelope's action bytes on
//! a shard chain (`proto/trellis/v1/shard.proto`). Decoding is strict like
//! [`crate::BeaconAction::decode`]: canonical protobuf, every field's shape, and the beacon
//! headers, certificates and proofs a certified update carries in their canonical wire form, so
//! that admission refuses a malformed action with the field it names.

use crate::actions::{EncodeAction, Tag, decode_canonical};
use crate::state_proof::StateProof;
use crate::tx::{TxError, array, field};
use crate::{pb, wire};
use prost::Message;
use trellis_consensus::{BlockHeader, Digest, EpochChangeProof, QuorumCert};

/// A record collection, and the shape of a schema tag: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Collection(String);

impl Collection {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: &str, name: &'static str) -> Result<Collection, TxError> {
        if s.is_empty() || s.len() > Self::MAX_CHARS {
            return Err(field(name, "must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(field(name, "may only hold A-Z a-z 0-9 . _ -"));
        }
        Ok(Collection(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A record's key within its collection: 1 to 128 bytes of UTF-8 without control characters
/// (so never the 0x00 that separates it from the collection in state keys).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(String);

impl RecordKey {
    pub const MAX_BYTES: usize = 128;

    pub fn parse(s: &str, name: &'static str) -> Result<RecordKey, TxError> {
        if s.is_empty() || s.len() > Self::MAX_BYTES {
            return Err(field(name, "must be 1 to 128 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(field(name, "contains control characters"));
        }
        Ok(RecordKey(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest ciphertext a record version may carry.
pub const MAX_CIPHERTEXT_BYTES: usize = 16 * 1024;
/// Most beacon headers one certified update may carry.
pub const MAX_UPDATE_HEADERS: usize = 64;
/// Most epoch-change proofs one certified update may carry.
pub const MAX_UPDATE_EPOCH_CHANGES: usize = 64;
/// Most proven values one certified update may carry.
pub const MAX_UPDATE_VALUES: usize = 256;

/// A beacon state value with its proof: `key` holds `value` (`None`: nothing) under the
/// certified state root.
#[derive(Clone, Debug, PartialEq)]
pub struct ProvenValue {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub proof: StateProof,
}

/// What a shard transaction does.
#[derive(Clone, Debug, PartialEq)]
pub enum ShardAction {
    /// Write the next version of a record: a salted commitment `SHA-256(salt ‖ payload)`
    /// computed by the client, optional ciphertext, and the payload's schema tag.
    PutRecord {
        collection: Collection,
        key: RecordKey,
        commitment: Digest,
        ciphertext: Option<Vec<u8>>,
        schema: Collection,
    },
    /// Record a 32-byte evidence digest with a short tag, as on the beacon.
    Anchor { digest: Digest, tag: Tag },
    /// Beacon state values proven against a beacon header certified by a committee the shard
    /// trusts (or one that epoch-change proofs lead to from it).
    CertifiedUpdate {
        /// Each the parent of the next; the first commits to the state `values` are proven
        /// against.
        headers: Vec<BlockHeader>,
        /// Commits the last header.
        commit_qc: QuorumCert,
        /// From the shard's trusted beacon epoch to the certificate's.
        epoch_changes: Vec<EpochChangeProof>,
        /// Distinct keys, in ascending byte order.
        values: Vec<ProvenValue>,
    },
}

fn action_to_pb(action: &ShardAction) -> pb::shard_action::Action {
    use pb::shard_action::Action as A;
    match action {
        ShardAction::PutRecord {
            collection,
            key,
            commitment,
            ciphertext,
            schema,
        } => A::PutRecord(pb::PutRecord {
            collection: collection.as_str().to_string(),
            key: key.as_str().to_string(),
            commitment: commitment.0.to_vec(),
            ciphertext: ciphertext.clone(),
            schema: schema.as_str().to_string(),
        }),
        ShardAction::Anchor { digest, tag } => A::Anchor(pb::Anchor {
            digest: digest.0.to_vec(),
            tag: tag.as_str().to_string(),
        }),
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes,
            values,
        } => A::CertifiedUpdate(pb::CertifiedUpdate {
            headers: headers.iter().map(wire::encode_header).collect(),
            commit_qc: wire::encode_qc(commit_qc),
            epoch_changes: epoch_changes
                .iter()
                .map(wire::encode_epoch_change)
                .collect(),
            values: values
                .iter()
                .map(|v| pb::ProvenValue {
                    key: v.key.clone(),
                    value: v.value.clone(),
                    proof: wire::encode_state_proof(&v.proof),
                })
                .collect(),
        }),
    }
}

fn put_record_from_pb(p: pb::PutRecord) -> Result<ShardAction, TxError> {
    let ciphertext = match p.ciphertext {
        Some(c) if c.is_empty() || c.len() > MAX_CIPHERTEXT_BYTES => {
            return Err(field(
                "put_record.ciphertext",
                "must be 1 to 16384 bytes when present",
            ));
        }
        c => c,
    };
    Ok(ShardAction::PutRecord {
        collection: Collection::parse(&p.collection, "put_record.collection")?,
        key: RecordKey::parse(&p.key, "put_record.key")?,
        commitment: Digest(array(
            &p.commitment,
            "put_record.commitment",
            "is not 32 bytes",
        )?),
        ciphertext,
        schema: Collection::parse(&p.schema, "put_record.schema")?,
    })
}

fn update_from_pb(u: pb::CertifiedUpdate) -> Result<ShardAction, TxError> {
    if u.headers.is_empty() || u.headers.len() > MAX_UPDATE_HEADERS {
        return Err(field(
            "certified_update.headers",
            "must hold 1 to 64 headers",
        ));
    }
    if u.epoch_changes.len() > MAX_UPDATE_EPOCH_CHANGES {
        return Err(field(
            "certified_update.epoch_changes",
            "holds more than 64 proofs",
        ));
    }
    if u.values.is_empty() || u.values.len() > MAX_UPDATE_VALUES {
        return Err(field(
            "certified_update.values",
            "must hold 1 to 256 values",
        ));
    }
    let headers = u
        .headers
        .iter()
        .map(|h| wire::decode_header(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            field(
                "certified_update.headers",
                "is not a canonically encoded block header",
            )
        })?;
    let commit_qc = wire::decode_qc(&u.commit_qc).map_err(|_| {
        field(
            "certified_update.commit_qc",
            "is not a canonically encoded quorum certificate",
        )
    })?;
    let epoch_changes = u
        .epoch_changes
        .iter()
        .map(|e| wire::decode_epoch_change(e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            field(
                "certified_update.epoch_changes",
                "is not a canonically encoded epoch-change proof",
            )
        })?;
    let mut values = Vec::with_capacity(u.values.len());
    for v in u.values {
        if v.key.is_empty() {
            return Err(field("certified_update.values.key", "is empty"));
        }
        // One order makes one encoding of a set of values, and no key twice.
        if values
            .last()
            .is_some_and(|prev: &ProvenValue| prev.key >= v.key)
        {
            return Err(field(
                "certified_update.values.key",
                "keys must be distinct and in ascending order",
            ));
        }
        let proof = wire::decode_state_proof(&v.proof).map_err(|_| {
            field(
                "certified_update.values.proof",
                "is not a canonically encoded state proof",
            )
        })?;
        values.push(ProvenValue {
            key: v.key,
            value: v.value,
            proof,
        });
    }
    Ok(ShardAction::CertifiedUpdate {
        headers,
        commit_qc,
        epoch_changes,
        values,
    })
}

impl ShardAction {
    /// Parses a shard action from the envelope's action bytes.
    pub fn decode(bytes: &[u8]) -> Result<ShardAction, TxError> {
        use pb::shard_action::Action as A;
        let action: pb::ShardAction = decode_canonical(bytes)?;
        match action.action {
            None => Err(field("action", "is missing")),
            Some(A::PutRecord(p)) => put_record_from_pb(p),
            Some(A::Anchor(a)) => Ok(ShardAction::Anchor {
                digest: Digest(array(&a.digest, "anchor.digest", "is not 32 bytes")?),
                tag: Tag::parse(&a.tag)?,
            }),
            Some(A::CertifiedUpdate(u)) => update_from_pb(u),
        }
    }
}

impl EncodeAction for ShardAction {
    fn encode_action(&self) -> Vec<u8> {
        pb::ShardAction {
            action: Some(action_to_pb(self)),
        }
        .encode_to_vec()
    }
}
