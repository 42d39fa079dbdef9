//! The actions of each application, carried as the envelope's action bytes
//! ([`crate::Transaction`]): [`BeaconAction`] for the beacon. Each decodes strictly (canonical
//! protobuf, field shapes) so that admission refuses a malformed action with the field it names,
//! before any chain orders it.

use crate::pb;
use crate::tx::{TxError, array, field};
use prost::Message;
use trellis_consensus::{Digest, PublicKey};

/// An action a transaction can carry: its canonical bytes go into the signed envelope.
pub trait EncodeAction {
    fn encode_action(&self) -> Vec<u8>;
}

/// Raw action bytes, as signed (tools and tests that build malformed actions on purpose).
impl EncodeAction for Vec<u8> {
    fn encode_action(&self) -> Vec<u8> {
        self.clone()
    }
}

/// Decodes `bytes` as `M`, refusing any encoding but the canonical one.
pub(crate) fn decode_canonical<M: Message + Default>(bytes: &[u8]) -> Result<M, TxError> {
    let m = M::decode(bytes).map_err(|e| TxError::Malformed(e.to_string()))?;
    if m.encoded_len() != bytes.len() || m.encode_to_vec() != bytes {
        return Err(TxError::NonCanonical);
    }
    Ok(m)
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

/// What a beacon transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeaconAction {
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

/// The protobuf form of a proposal kind (state records embed it).
pub fn proposal_kind_to_pb(kind: &ProposalKind) -> pb::propose::Kind {
    kind_to_pb(kind)
}

fn action_to_pb(action: &BeaconAction) -> pb::beacon_action::Action {
    use pb::beacon_action::Action as A;
    match action {
        BeaconAction::Anchor { digest, tag } => A::Anchor(pb::Anchor {
            digest: digest.0.to_vec(),
            tag: tag.as_str().to_string(),
        }),
        BeaconAction::AttestIdentity {
            subject,
            commitment,
            level,
        } => A::AttestIdentity(pb::AttestIdentity {
            subject_key: subject.0.to_vec(),
            commitment: commitment.0.to_vec(),
            level: *level,
        }),
        BeaconAction::Propose(kind) => A::Propose(pb::Propose {
            kind: Some(kind_to_pb(kind)),
        }),
        BeaconAction::Vote {
            proposal_id,
            approve,
        } => A::Vote(pb::GovernanceVote {
            proposal_id: *proposal_id,
            approve: *approve,
        }),
        BeaconAction::RevokeCertificate { serial, reason } => {
            A::RevokeCertificate(pb::RevokeCertificate {
                serial: serial.clone(),
                reason: *reason,
            })
        }
    }
}

fn action_from_pb(action: Option<pb::beacon_action::Action>) -> Result<BeaconAction, TxError> {
    use pb::beacon_action::Action as A;
    Ok(match action {
        None => return Err(field("action", "is missing")),
        Some(A::Anchor(a)) => BeaconAction::Anchor {
            digest: Digest(array(&a.digest, "anchor.digest", "is not 32 bytes")?),
            tag: Tag::parse(&a.tag)?,
        },
        Some(A::AttestIdentity(a)) => {
            if a.level == 0 || a.level > MAX_ATTESTATION_LEVEL {
                return Err(field("attest_identity.level", "must be 1 to 3"));
            }
            BeaconAction::AttestIdentity {
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
        Some(A::Propose(p)) => BeaconAction::Propose(kind_from_pb(p.kind)?),
        Some(A::Vote(v)) => {
            if v.proposal_id == 0 {
                return Err(field("vote.proposal_id", "must be positive"));
            }
            BeaconAction::Vote {
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
            BeaconAction::RevokeCertificate {
                serial: r.serial,
                reason: r.reason,
            }
        }
    })
}

impl BeaconAction {
    /// Parses a beacon action from the envelope's action bytes.
    pub fn decode(bytes: &[u8]) -> Result<BeaconAction, TxError> {
        let action: pb::BeaconAction = decode_canonical(bytes)?;
        action_from_pb(action.action)
    }
}

impl EncodeAction for BeaconAction {
    fn encode_action(&self) -> Vec<u8> {
        pb::BeaconAction {
            action: Some(action_to_pb(self)),
        }
        .encode_to_vec()
    }
}
