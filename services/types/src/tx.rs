//! Signed transactions: parsed once from bytes into [`Transaction`], which is then known to be
//! canonical, within size limits and with well-formed fields. The signature is checked
//! separately ([`Transaction::verify_signature`] or, for many at once,
//! [`Transaction::verify_batch`]) so admission can batch it.

use crate::pb;
use prost::Message;
use trellis_consensus::crypto::{self, CryptoError};
use trellis_consensus::types::Encoder;
use trellis_consensus::{Digest, PublicKey, Signature, Signer};

/// Domain of the signed bytes: `len ‖ "trellis/tx/v1" ‖ body`.
const SIGNING_DOMAIN: &str = "trellis/tx/v1";
/// Domain of the transaction hash.
const HASH_DOMAIN: &str = "trellis/tx-hash/v1";
/// Default admission limit for one encoded transaction.
pub const DEFAULT_MAX_TX_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TxError {
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("transaction is not valid protobuf: {0}")]
    Malformed(String),
    #[error("transaction is not canonically encoded (re-encoding differs)")]
    NonCanonical,
    #[error("field `{field}`: {reason}")]
    Field {
        field: &'static str,
        reason: &'static str,
    },
    #[error("signature does not verify")]
    BadSignature,
}

fn field(field: &'static str, reason: &'static str) -> TxError {
    TxError::Field { field, reason }
}

/// An anchor tag: at most 64 bytes of UTF-8 without control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Tag(String);

impl Tag {
    pub const MAX_BYTES: usize = 64;

    pub fn parse(s: &str) -> Result<Tag, TxError> {
        if s.len() > Self::MAX_BYTES {
            return Err(field("anchor.tag", "longer than 64 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(field("anchor.tag", "contains control characters"));
        }
        Ok(Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An organisation id on the beacon: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgId(String);

impl OrgId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: &str, name: &'static str) -> Result<OrgId, TxError> {
        if s.is_empty() || s.len() > Self::MAX_CHARS {
            return Err(field(name, "must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(field(name, "may only hold A-Z a-z 0-9 . _ -"));
        }
        Ok(OrgId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OrgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The names of governance parameters a proposal may change.
pub const GOVERNANCE_PARAMETERS: [&str; 2] = ["approval_threshold", "proposal_ttl_blocks"];

/// What a governance proposal asks the members to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalKind {
    /// Admit an organisation with its org key (which must carry an identity attestation).
    AdmitMember { org: OrgId, org_key: PublicKey },
    /// Remove a member organisation; its accounts lose their member role.
    RemoveMember { org: OrgId },
    /// Change a consortium parameter (one of [`GOVERNANCE_PARAMETERS`]); the value is checked
    /// by the beacon application.
    SetParameter { name: String, value: String },
}

/// Highest identity assurance level.
pub const MAX_ATTESTATION_LEVEL: u32 = 3;
/// Longest certificate serial, in bytes (RFC 5280).
pub const MAX_SERIAL_BYTES: usize = 20;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record a 32-byte evidence digest with a short tag.
    Anchor { digest: Digest, tag: Tag },
    /// A verifier (operator account) attests that it checked the real-name identity behind
    /// `subject`; `commitment` is a salted hash of the verified data.
    AttestIdentity {
        subject: PublicKey,
        commitment: Digest,
        level: u32,
    },
    /// Open a governance proposal.
    Propose(ProposalKind),
    /// A member org's vote on an open proposal.
    Vote { proposal_id: u64, approve: bool },
    /// Revoke a certificate of the consortium CA; `serial` is its big-endian serial number.
    RevokeCertificate { serial: Vec<u8>, reason: u32 },
}

fn kind_to_pb(kind: &ProposalKind) -> pb::propose::Kind {
    match kind {
        ProposalKind::AdmitMember { org, org_key } => {
            pb::propose::Kind::AdmitMember(pb::AdmitMember {
                org: org.as_str().to_string(),
                org_key: org_key.0.to_vec(),
            })
        }
        ProposalKind::RemoveMember { org } => pb::propose::Kind::RemoveMember(pb::RemoveMember {
            org: org.as_str().to_string(),
        }),
        ProposalKind::SetParameter { name, value } => {
            pb::propose::Kind::SetParameter(pb::SetParameter {
                name: name.clone(),
                value: value.clone(),
            })
        }
    }
}

fn kind_from_pb(kind: Option<pb::propose::Kind>) -> Result<ProposalKind, TxError> {
    Ok(match kind {
        None => return Err(field("propose.kind", "is missing")),
        Some(pb::propose::Kind::AdmitMember(a)) => ProposalKind::AdmitMember {
            org: OrgId::parse(&a.org, "propose.admit_member.org")?,
            org_key: strong_key(PublicKey(array(
                &a.org_key,
                "propose.admit_member.org_key",
                "is not a 32-byte ed25519 key",
            )?))?,
        },
        Some(pb::propose::Kind::RemoveMember(r)) => ProposalKind::RemoveMember {
            org: OrgId::parse(&r.org, "propose.remove_member.org")?,
        },
        Some(pb::propose::Kind::SetParameter(p)) => {
            if !GOVERNANCE_PARAMETERS.contains(&p.name.as_str()) {
                return Err(field(
                    "propose.set_parameter.name",
                    "is not a governance parameter",
                ));
            }
            if p.value.is_empty() || p.value.len() > 64 {
                return Err(field(
                    "propose.set_parameter.value",
                    "must be 1 to 64 bytes",
                ));
            }
            ProposalKind::SetParameter {
                name: p.name,
                value: p.value,
            }
        }
    })
}

/// The protobuf form of a proposal kind (state records embed it).
pub fn proposal_kind_to_pb(kind: &ProposalKind) -> pb::propose::Kind {
    kind_to_pb(kind)
}

fn action_to_pb(action: &Action) -> pb::transaction_body::Action {
    use pb::transaction_body::Action as A;
    match action {
        Action::Anchor { digest, tag } => A::Anchor(pb::Anchor {
            digest: digest.0.to_vec(),
            tag: tag.as_str().to_string(),
        }),
        Action::AttestIdentity {
            subject,
            commitment,
            level,
        } => A::AttestIdentity(pb::AttestIdentity {
            subject_key: subject.0.to_vec(),
            commitment: commitment.0.to_vec(),
            level: *level,
        }),
        Action::Propose(kind) => A::Propose(pb::Propose {
            kind: Some(kind_to_pb(kind)),
        }),
        Action::Vote {
            proposal_id,
            approve,
        } => A::Vote(pb::GovernanceVote {
            proposal_id: *proposal_id,
            approve: *approve,
        }),
        Action::RevokeCertificate { serial, reason } => {
            A::RevokeCertificate(pb::RevokeCertificate {
                serial: serial.clone(),
                reason: *reason,
            })
        }
    }
}

fn action_from_pb(action: Option<pb::transaction_body::Action>) -> Result<Action, TxError> {
    use pb::transaction_body::Action as A;
    Ok(match action {
        None => return Err(field("action", "is missing")),
        Some(A::Anchor(a)) => Action::Anchor {
            digest: Digest(array(&a.digest, "anchor.digest", "is not 32 bytes")?),
            tag: Tag::parse(&a.tag)?,
        },
        Some(A::AttestIdentity(a)) => {
            if a.level == 0 || a.level > MAX_ATTESTATION_LEVEL {
                return Err(field("attest_identity.level", "must be 1 to 3"));
            }
            Action::AttestIdentity {
                subject: PublicKey(array(
                    &a.subject_key,
                    "attest_identity.subject_key",
                    "is not a 32-byte ed25519 key",
                )?),
                commitment: Digest(array(
                    &a.commitment,
                    "attest_identity.commitment",
                    "is not 32 bytes",
                )?),
                level: a.level,
            }
        }
        Some(A::Propose(p)) => Action::Propose(kind_from_pb(p.kind)?),
        Some(A::Vote(v)) => {
            if v.proposal_id == 0 {
                return Err(field("vote.proposal_id", "must be positive"));
            }
            Action::Vote {
                proposal_id: v.proposal_id,
                approve: v.approve,
            }
        }
        Some(A::RevokeCertificate(r)) => {
            // One serial has one byte string: no empty serial and no leading zero byte.
            if r.serial.is_empty() || r.serial.len() > MAX_SERIAL_BYTES || r.serial[0] == 0 {
                return Err(field(
                    "revoke_certificate.serial",
                    "must be 1 to 20 bytes without a leading zero byte",
                ));
            }
            // RFC 5280 reason codes 0-10; 7 is unused.
            if r.reason > 10 || r.reason == 7 {
                return Err(field(
                    "revoke_certificate.reason",
                    "is not an RFC 5280 CRLReason code",
                ));
            }
            Action::RevokeCertificate {
                serial: r.serial,
                reason: r.reason,
            }
        }
    })
}

/// A parsed, canonically encoded, signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    chain_id: String,
    sender: PublicKey,
    nonce: u64,
    action: Action,
    signature: Signature,
    body: Vec<u8>,
    encoded: Vec<u8>,
    hash: Digest,
}

fn signing_bytes(body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(SIGNING_DOMAIN);
    e.fixed(body);
    e.finish()
}

fn hash_of(body: &[u8]) -> Digest {
    // The hash covers the body only: it names the transaction whatever signature bytes carry it.
    let mut e = Encoder::new(HASH_DOMAIN);
    e.fixed(body);
    e.hash()
}

/// An admitted org's key signs its transactions, checked with ZIP-215: a weak key
/// ([`trellis_consensus::crypto::is_strong_key`]) would let anyone sign as the org.
fn strong_key(key: PublicKey) -> Result<PublicKey, TxError> {
    if !trellis_consensus::crypto::is_strong_key(&key) {
        return Err(field(
            "propose.admit_member.org_key",
            "is not a strong ed25519 key (small order, torsion part or non-canonical encoding)",
        ));
    }
    Ok(key)
}

fn array<const N: usize>(
    bytes: &[u8],
    name: &'static str,
    reason: &'static str,
) -> Result<[u8; N], TxError> {
    bytes.try_into().map_err(|_| field(name, reason))
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn sign(chain_id: &str, signer: &Signer, nonce: u64, action: Action) -> Transaction {
        let pb_action = action_to_pb(&action);
        let body = pb::TransactionBody {
            chain_id: chain_id.to_string(),
            sender: signer.public_key().0.to_vec(),
            nonce,
            action: Some(pb_action),
        }
        .encode_to_vec();
        let signature = signer.sign(&signing_bytes(&body));
        let encoded = pb::SignedTransaction {
            body: body.clone(),
            signature: signature.0.to_vec(),
        }
        .encode_to_vec();
        Transaction {
            chain_id: chain_id.to_string(),
            sender: signer.public_key(),
            nonce,
            action,
            signature,
            hash: hash_of(&body),
            body,
            encoded,
        }
    }

    /// Parses wire bytes: size, protobuf, canonical encoding, field shapes. Does not check the
    /// signature.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Transaction, TxError> {
        if bytes.len() > max_bytes {
            return Err(TxError::TooLarge {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let signed =
            pb::SignedTransaction::decode(bytes).map_err(|e| TxError::Malformed(e.to_string()))?;
        if signed.encode_to_vec() != bytes {
            return Err(TxError::NonCanonical);
        }
        let body = pb::TransactionBody::decode(signed.body.as_slice())
            .map_err(|e| TxError::Malformed(e.to_string()))?;
        if body.encode_to_vec() != signed.body {
            return Err(TxError::NonCanonical);
        }
        if body.chain_id.is_empty() {
            return Err(field("chain_id", "is empty"));
        }
        let sender = PublicKey(array(
            &body.sender,
            "sender",
            "is not a 32-byte ed25519 key",
        )?);
        let signature = Signature(array(&signed.signature, "signature", "is not 64 bytes")?);
        let action = action_from_pb(body.action)?;
        Ok(Transaction {
            chain_id: body.chain_id,
            sender,
            nonce: body.nonce,
            action,
            signature,
            hash: hash_of(&signed.body),
            body: signed.body,
            encoded: bytes.to_vec(),
        })
    }

    /// The hash of the transaction `bytes` would decode to, read without decoding it: the body
    /// field that a canonical encoding starts with, hashed. For finding a copy that was already
    /// decoded from the same bytes (compare [`Transaction::encoded`] before using it); `None` when
    /// the bytes do not start with a complete body field.
    pub fn peek_hash(bytes: &[u8]) -> Option<Digest> {
        // Field 1 (`body`), length-delimited: tag byte 0x0a, then the length as a varint.
        let mut rest = bytes.strip_prefix(&[0x0a])?;
        let len = prost::encoding::decode_varint(&mut rest).ok()?;
        let body = rest.get(..usize::try_from(len).ok()?)?;
        Some(hash_of(body))
    }

    pub fn verify_signature(&self) -> Result<(), TxError> {
        crypto::verify(&self.sender, &self.signature, &signing_bytes(&self.body))
            .map_err(|_| TxError::BadSignature)
    }

    /// Verifies many signatures in one batch; if the batch fails, finds the bad ones. Returns
    /// one result per transaction, in order.
    pub fn verify_batch<'a>(
        txs: impl IntoIterator<Item = &'a Transaction>,
    ) -> Vec<Result<(), TxError>> {
        let txs: Vec<&Transaction> = txs.into_iter().collect();
        let items: Vec<(PublicKey, Signature, Vec<u8>)> = txs
            .iter()
            .map(|t| (t.sender, t.signature, signing_bytes(&t.body)))
            .collect();
        match crypto::verify_batch(&items) {
            Ok(()) => vec![Ok(()); txs.len()],
            Err(CryptoError::BadKey | CryptoError::BadSignature) => {
                txs.iter().map(|t| t.verify_signature()).collect()
            }
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    pub fn sender(&self) -> PublicKey {
        self.sender
    }
    pub fn nonce(&self) -> u64 {
        self.nonce
    }
    pub fn action(&self) -> &Action {
        &self.action
    }
    /// The transaction's name: SHA-256 over its domain and body bytes.
    pub fn hash(&self) -> Digest {
        self.hash
    }
    /// The canonical wire bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}
