//! The node-to-node wire format and the stored forms of chain data (`proto/trellis/v1/chain.proto`).
//!
//! Consensus types carry their own canonical encoding for ids and signatures
//! ([`trellis_consensus::types::Encoder`]); this module is the transport and storage form, which
//! only has to carry the same fields. Peers are untrusted, so decoding is total: every byte
//! string gives a value or a [`WireError`] naming the bad field, never a panic, and allocation
//! stays linear in the input length (no buffer is sized from a claimed length). Decoders refuse non-canonical encodings (they
//! re-encode and compare), so one value has exactly one byte string: stored headers, proof
//! bundles and hashes of encodings cannot be altered without changing the value.

use crate::StateProof;
use crate::pb;
use jmt::proof::SparseMerkleProof;
use prost::Message as _;
use sha2::Sha256;
use trellis_consensus::{
    Block, BlockHeader, Committee, Digest, EpochChangeProof, Message, Proposal, PublicKey,
    QuorumCert, SafetyData, Signature, SignerBitmap, StateCommitment, SyncChunk, TimeoutCert,
    TimeoutMsg, TimeoutVote, Vote, VoteData,
};

/// Everything one node sends another.
#[derive(Clone, Debug)]
pub enum NetMessage {
    Consensus(Message),
    /// Signed transactions forwarded between nodes (opaque bytes, parsed by the receiver).
    Txs(Vec<Vec<u8>>),
    /// Asks for committed blocks above `from_height`, with the epoch-change proofs among them.
    SyncRequest {
        epoch: u64,
        from_height: u64,
        max_blocks: u32,
    },
    SyncResponse(SyncChunk),
}

impl PartialEq for NetMessage {
    // By hand: `SyncChunk` does not implement `PartialEq`.
    fn eq(&self, other: &Self) -> bool {
        use NetMessage::*;
        match (self, other) {
            (Consensus(a), Consensus(b)) => a == b,
            (Txs(a), Txs(b)) => a == b,
            (
                SyncRequest {
                    epoch,
                    from_height,
                    max_blocks,
                },
                SyncRequest {
                    epoch: e,
                    from_height: f,
                    max_blocks: m,
                },
            ) => (epoch, from_height, max_blocks) == (e, f, m),
            (SyncResponse(a), SyncResponse(b)) => {
                a.blocks == b.blocks
                    && a.epoch_changes == b.epoch_changes
                    && a.commit_qc == b.commit_qc
            }
            _ => false,
        }
    }
}

impl Eq for NetMessage {}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum WireError {
    #[error("not valid protobuf: {0}")]
    Protobuf(String),
    #[error("not the canonical encoding (re-encoding differs)")]
    NonCanonical,
    /// `field` is a path from the decoded message, e.g. `consensus.proposal.block.header.parent_id`.
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

impl WireError {
    fn field(field: &str, reason: impl Into<String>) -> WireError {
        WireError::Field {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with the enclosing field.
    fn within(self, outer: &str) -> WireError {
        match self {
            WireError::Field { field, reason } => WireError::Field {
                field: format!("{outer}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

trait At<T> {
    fn at(self, outer: &str) -> Result<T, WireError>;
    fn at_index(self, outer: &str, i: usize) -> Result<T, WireError>;
}

impl<T> At<T> for Result<T, WireError> {
    fn at(self, outer: &str) -> Result<T, WireError> {
        self.map_err(|e| e.within(outer))
    }
    fn at_index(self, outer: &str, i: usize) -> Result<T, WireError> {
        self.map_err(|e| e.within(&format!("{outer}[{i}]")))
    }
}

/// A domain type and its protobuf message.
trait Wire: Sized {
    type Proto: prost::Message + Default;
    fn to_proto(&self) -> Self::Proto;
    fn from_proto(p: Self::Proto) -> Result<Self, WireError>;
}

fn encode_as<T: Wire>(value: &T) -> Vec<u8> {
    value.to_proto().encode_to_vec()
}

fn decode_as<T: Wire>(bytes: &[u8]) -> Result<T, WireError> {
    let proto = T::Proto::decode(bytes).map_err(|e| WireError::Protobuf(e.to_string()))?;
    let value = T::from_proto(proto)?;
    if encode_as(&value) != bytes {
        return Err(WireError::NonCanonical);
    }
    Ok(value)
}

fn array<const N: usize>(bytes: &[u8], field: &str) -> Result<[u8; N], WireError> {
    bytes
        .try_into()
        .map_err(|_| WireError::field(field, format!("is not {N} bytes")))
}

fn digest(bytes: &[u8], field: &str) -> Result<Digest, WireError> {
    array(bytes, field).map(Digest)
}

fn signature(bytes: &[u8], field: &str) -> Result<Signature, WireError> {
    array(bytes, field).map(Signature)
}

fn signatures(list: &[Vec<u8>], field: &str) -> Result<Vec<Signature>, WireError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| signature(s, &format!("{field}[{i}]")))
        .collect()
}

fn u32_of(v: u64, field: &str) -> Result<u32, WireError> {
    u32::try_from(v).map_err(|_| WireError::field(field, "exceeds u32"))
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, WireError> {
    v.ok_or_else(|| WireError::field(field, "is missing"))
}

fn sigs_to_proto(s: &[Signature]) -> Vec<Vec<u8>> {
    s.iter().map(|s| s.0.to_vec()).collect()
}

impl Wire for Committee {
    type Proto = pb::Committee;
    fn to_proto(&self) -> pb::Committee {
        pb::Committee {
            members: self.members().iter().map(|k| k.0.to_vec()).collect(),
        }
    }
    fn from_proto(p: pb::Committee) -> Result<Self, WireError> {
        let members = p
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| array(m, &format!("members[{i}]")).map(PublicKey))
            .collect::<Result<Vec<_>, _>>()?;
        Committee::new(members).map_err(|e| WireError::field("members", e.to_string()))
    }
}

impl Wire for StateCommitment {
    type Proto = pb::StateCommitment;
    fn to_proto(&self) -> pb::StateCommitment {
        pb::StateCommitment {
            height: self.height,
            root: self.root.0.to_vec(),
        }
    }
    fn from_proto(p: pb::StateCommitment) -> Result<Self, WireError> {
        Ok(StateCommitment {
            height: p.height,
            root: digest(&p.root, "root")?,
        })
    }
}

impl Wire for BlockHeader {
    type Proto = pb::BlockHeader;
    fn to_proto(&self) -> pb::BlockHeader {
        pb::BlockHeader {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch,
            round: self.round,
            height: self.height,
            parent_id: self.parent_id.0.to_vec(),
            qc_digest: self.qc_digest.0.to_vec(),
            author: self.author.into(),
            timestamp_ms: self.timestamp_ms,
            payload_digest: self.payload_digest.0.to_vec(),
            state: Some(self.state.to_proto()),
            next_committee: self.next_committee.as_ref().map(Wire::to_proto),
        }
    }
    fn from_proto(p: pb::BlockHeader) -> Result<Self, WireError> {
        Ok(BlockHeader {
            chain_id: p.chain_id,
            epoch: p.epoch,
            round: p.round,
            height: p.height,
            parent_id: digest(&p.parent_id, "parent_id")?,
            qc_digest: digest(&p.qc_digest, "qc_digest")?,
            author: u32_of(p.author, "author")?,
            timestamp_ms: p.timestamp_ms,
            payload_digest: digest(&p.payload_digest, "payload_digest")?,
            state: StateCommitment::from_proto(required(p.state, "state")?).at("state")?,
            next_committee: p
                .next_committee
                .map(Committee::from_proto)
                .transpose()
                .at("next_committee")?,
        })
    }
}

impl Wire for VoteData {
    type Proto = pb::VoteData;
    fn to_proto(&self) -> pb::VoteData {
        pb::VoteData {
            epoch: self.epoch,
            round: self.round,
            height: self.height,
            block_id: self.block_id.0.to_vec(),
            parent_id: self.parent_id.0.to_vec(),
            parent_round: self.parent_round,
            ends_epoch: self.ends_epoch,
        }
    }
    fn from_proto(p: pb::VoteData) -> Result<Self, WireError> {
        Ok(VoteData {
            epoch: p.epoch,
            round: p.round,
            height: p.height,
            block_id: digest(&p.block_id, "block_id")?,
            parent_id: digest(&p.parent_id, "parent_id")?,
            parent_round: p.parent_round,
            ends_epoch: p.ends_epoch,
        })
    }
}

impl Wire for QuorumCert {
    type Proto = pb::QuorumCert;
    fn to_proto(&self) -> pb::QuorumCert {
        pb::QuorumCert {
            vote_data: Some(self.vote_data.to_proto()),
            signers: self.signers.0.clone(),
            signatures: sigs_to_proto(&self.signatures),
        }
    }
    fn from_proto(p: pb::QuorumCert) -> Result<Self, WireError> {
        Ok(QuorumCert {
            vote_data: VoteData::from_proto(required(p.vote_data, "vote_data")?).at("vote_data")?,
            signers: SignerBitmap(p.signers),
            signatures: signatures(&p.signatures, "signatures")?,
        })
    }
}

impl Wire for TimeoutVote {
    type Proto = pb::TimeoutVote;
    fn to_proto(&self) -> pb::TimeoutVote {
        pb::TimeoutVote {
            epoch: self.epoch,
            round: self.round,
            high_qc_round: self.high_qc_round,
            author: self.author.into(),
            signature: self.signature.0.to_vec(),
        }
    }
    fn from_proto(p: pb::TimeoutVote) -> Result<Self, WireError> {
        Ok(TimeoutVote {
            epoch: p.epoch,
            round: p.round,
            high_qc_round: p.high_qc_round,
            author: u32_of(p.author, "author")?,
            signature: signature(&p.signature, "signature")?,
        })
    }
}

impl Wire for TimeoutCert {
    type Proto = pb::TimeoutCert;
    fn to_proto(&self) -> pb::TimeoutCert {
        pb::TimeoutCert {
            epoch: self.epoch,
            round: self.round,
            signers: self.signers.0.clone(),
            high_qc_rounds: self.high_qc_rounds.clone(),
            signatures: sigs_to_proto(&self.signatures),
        }
    }
    fn from_proto(p: pb::TimeoutCert) -> Result<Self, WireError> {
        Ok(TimeoutCert {
            epoch: p.epoch,
            round: p.round,
            signers: SignerBitmap(p.signers),
            high_qc_rounds: p.high_qc_rounds,
            signatures: signatures(&p.signatures, "signatures")?,
        })
    }
}

impl Wire for Block {
    type Proto = pb::Block;
    fn to_proto(&self) -> pb::Block {
        pb::Block {
            header: Some(self.header.to_proto()),
            qc: Some(self.qc.to_proto()),
            payload: self.payload.clone(),
        }
    }
    fn from_proto(p: pb::Block) -> Result<Self, WireError> {
        let header = BlockHeader::from_proto(required(p.header, "header")?).at("header")?;
        let qc = QuorumCert::from_proto(required(p.qc, "qc")?).at("qc")?;
        Ok(Block::new(header, qc, p.payload))
    }
}

fn blocks_from_proto(blocks: Vec<pb::Block>) -> Result<Vec<Block>, WireError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        out.push(Block::from_proto(b).at_index("blocks", i)?);
    }
    Ok(out)
}

impl Wire for Vote {
    type Proto = pb::Vote;
    fn to_proto(&self) -> pb::Vote {
        pb::Vote {
            vote_data: Some(self.vote_data.to_proto()),
            author: self.author.into(),
            signature: self.signature.0.to_vec(),
        }
    }
    fn from_proto(p: pb::Vote) -> Result<Self, WireError> {
        Ok(Vote {
            vote_data: VoteData::from_proto(required(p.vote_data, "vote_data")?).at("vote_data")?,
            author: u32_of(p.author, "author")?,
            signature: signature(&p.signature, "signature")?,
        })
    }
}

impl Wire for Proposal {
    type Proto = pb::Proposal;
    fn to_proto(&self) -> pb::Proposal {
        pb::Proposal {
            block: Some(self.block.to_proto()),
            tc: self.tc.as_ref().map(Wire::to_proto),
            signature: self.signature.0.to_vec(),
        }
    }
    fn from_proto(p: pb::Proposal) -> Result<Self, WireError> {
        Ok(Proposal {
            block: Block::from_proto(required(p.block, "block")?).at("block")?,
            tc: p.tc.map(TimeoutCert::from_proto).transpose().at("tc")?,
            signature: signature(&p.signature, "signature")?,
        })
    }
}

impl Wire for TimeoutMsg {
    type Proto = pb::TimeoutMsg;
    fn to_proto(&self) -> pb::TimeoutMsg {
        pb::TimeoutMsg {
            vote: Some(self.vote.to_proto()),
            high_qc: Some(self.high_qc.to_proto()),
            last_tc: self.last_tc.as_ref().map(Wire::to_proto),
        }
    }
    fn from_proto(p: pb::TimeoutMsg) -> Result<Self, WireError> {
        Ok(TimeoutMsg {
            vote: TimeoutVote::from_proto(required(p.vote, "vote")?).at("vote")?,
            high_qc: QuorumCert::from_proto(required(p.high_qc, "high_qc")?).at("high_qc")?,
            last_tc: p
                .last_tc
                .map(TimeoutCert::from_proto)
                .transpose()
                .at("last_tc")?,
        })
    }
}

impl Wire for Message {
    type Proto = pb::ConsensusMessage;
    fn to_proto(&self) -> pb::ConsensusMessage {
        use pb::consensus_message::Kind;
        let kind = match self {
            Message::Proposal(p) => Kind::Proposal(p.to_proto()),
            Message::Vote(v) => Kind::Vote(v.to_proto()),
            Message::Timeout(t) => Kind::Timeout(t.to_proto()),
            Message::BlockRequest {
                epoch,
                block_id,
                count,
            } => Kind::BlockRequest(pb::BlockRequest {
                epoch: *epoch,
                block_id: block_id.0.to_vec(),
                count: (*count).into(),
            }),
            Message::BlockResponse { epoch, blocks } => Kind::BlockResponse(pb::BlockResponse {
                epoch: *epoch,
                blocks: blocks.iter().map(Wire::to_proto).collect(),
            }),
        };
        pb::ConsensusMessage { kind: Some(kind) }
    }
    fn from_proto(p: pb::ConsensusMessage) -> Result<Self, WireError> {
        use pb::consensus_message::Kind;
        Ok(match required(p.kind, "kind")? {
            Kind::Proposal(p) => {
                Message::Proposal(Box::new(Proposal::from_proto(p).at("proposal")?))
            }
            Kind::Vote(v) => Message::Vote(Vote::from_proto(v).at("vote")?),
            Kind::Timeout(t) => {
                Message::Timeout(Box::new(TimeoutMsg::from_proto(t).at("timeout")?))
            }
            Kind::BlockRequest(r) => Message::BlockRequest {
                epoch: r.epoch,
                block_id: digest(&r.block_id, "block_request.block_id")?,
                count: u32_of(r.count, "block_request.count")?,
            },
            Kind::BlockResponse(r) => Message::BlockResponse {
                epoch: r.epoch,
                blocks: blocks_from_proto(r.blocks).at("block_response")?,
            },
        })
    }
}

impl Wire for EpochChangeProof {
    type Proto = pb::EpochChangeProof;
    fn to_proto(&self) -> pb::EpochChangeProof {
        pb::EpochChangeProof {
            ending: Some(self.ending.to_proto()),
            suffix: self.suffix.iter().map(Wire::to_proto).collect(),
            commit_qc: Some(self.commit_qc.to_proto()),
        }
    }
    fn from_proto(p: pb::EpochChangeProof) -> Result<Self, WireError> {
        let mut suffix = Vec::with_capacity(p.suffix.len());
        for (i, h) in p.suffix.into_iter().enumerate() {
            suffix.push(BlockHeader::from_proto(h).at_index("suffix", i)?);
        }
        Ok(EpochChangeProof {
            ending: BlockHeader::from_proto(required(p.ending, "ending")?).at("ending")?,
            suffix,
            commit_qc: QuorumCert::from_proto(required(p.commit_qc, "commit_qc")?)
                .at("commit_qc")?,
        })
    }
}

impl Wire for SafetyData {
    type Proto = pb::SafetyData;
    fn to_proto(&self) -> pb::SafetyData {
        pb::SafetyData {
            epoch: self.epoch,
            last_voted_round: self.last_voted_round,
            locked_round: self.locked_round,
            last_proposed_round: self.last_proposed_round,
            last_vote: self.last_vote.as_ref().map(Wire::to_proto),
            last_timeout: self.last_timeout.as_ref().map(Wire::to_proto),
            high_qc: self.high_qc.as_ref().map(Wire::to_proto),
            high_tc: self.high_tc.as_ref().map(Wire::to_proto),
        }
    }
    fn from_proto(p: pb::SafetyData) -> Result<Self, WireError> {
        Ok(SafetyData {
            epoch: p.epoch,
            last_voted_round: p.last_voted_round,
            locked_round: p.locked_round,
            last_proposed_round: p.last_proposed_round,
            last_vote: p
                .last_vote
                .map(Vote::from_proto)
                .transpose()
                .at("last_vote")?,
            last_timeout: p
                .last_timeout
                .map(TimeoutVote::from_proto)
                .transpose()
                .at("last_timeout")?,
            high_qc: p
                .high_qc
                .map(QuorumCert::from_proto)
                .transpose()
                .at("high_qc")?,
            high_tc: p
                .high_tc
                .map(TimeoutCert::from_proto)
                .transpose()
                .at("high_tc")?,
        })
    }
}

impl Wire for SyncChunk {
    type Proto = pb::SyncChunk;
    fn to_proto(&self) -> pb::SyncChunk {
        pb::SyncChunk {
            blocks: self.blocks.iter().map(Wire::to_proto).collect(),
            epoch_changes: self.epoch_changes.iter().map(Wire::to_proto).collect(),
            commit_qc: self.commit_qc.as_ref().map(Wire::to_proto),
        }
    }
    fn from_proto(p: pb::SyncChunk) -> Result<Self, WireError> {
        let mut epoch_changes = Vec::with_capacity(p.epoch_changes.len());
        for (i, e) in p.epoch_changes.into_iter().enumerate() {
            epoch_changes.push(EpochChangeProof::from_proto(e).at_index("epoch_changes", i)?);
        }
        Ok(SyncChunk {
            blocks: blocks_from_proto(p.blocks)?,
            epoch_changes,
            commit_qc: p
                .commit_qc
                .map(QuorumCert::from_proto)
                .transpose()
                .at("commit_qc")?,
        })
    }
}

impl Wire for StateProof {
    type Proto = pb::StateProof;
    fn to_proto(&self) -> pb::StateProof {
        pb::StateProof {
            // Serialising into a Vec only fails beyond u32::MAX siblings; a proof has ≤ 256.
            jmt_proof: borsh::to_vec(&self.0).unwrap_or_default(),
        }
    }
    fn from_proto(p: pb::StateProof) -> Result<Self, WireError> {
        // borsh caps preallocation and refuses trailing bytes and unknown enum or option tags.
        borsh::from_slice::<SparseMerkleProof<Sha256>>(&p.jmt_proof)
            .map(StateProof)
            .map_err(|e| WireError::field("jmt_proof", e.to_string()))
    }
}

impl Wire for NetMessage {
    type Proto = pb::NetMessage;
    fn to_proto(&self) -> pb::NetMessage {
        use pb::net_message::Kind;
        let kind = match self {
            NetMessage::Consensus(m) => Kind::Consensus(m.to_proto()),
            NetMessage::Txs(txs) => Kind::Txs(pb::TxBatch { txs: txs.clone() }),
            NetMessage::SyncRequest {
                epoch,
                from_height,
                max_blocks,
            } => Kind::SyncRequest(pb::SyncRequest {
                epoch: *epoch,
                from_height: *from_height,
                max_blocks: (*max_blocks).into(),
            }),
            NetMessage::SyncResponse(c) => Kind::SyncResponse(c.to_proto()),
        };
        pb::NetMessage { kind: Some(kind) }
    }
    fn from_proto(p: pb::NetMessage) -> Result<Self, WireError> {
        use pb::net_message::Kind;
        Ok(match required(p.kind, "kind")? {
            Kind::Consensus(m) => NetMessage::Consensus(Message::from_proto(m).at("consensus")?),
            Kind::Txs(b) => NetMessage::Txs(b.txs),
            Kind::SyncRequest(r) => NetMessage::SyncRequest {
                epoch: r.epoch,
                from_height: r.from_height,
                max_blocks: u32_of(r.max_blocks, "sync_request.max_blocks")?,
            },
            Kind::SyncResponse(c) => {
                NetMessage::SyncResponse(SyncChunk::from_proto(c).at("sync_response")?)
            }
        })
    }
}

pub fn encode(msg: &NetMessage) -> Vec<u8> {
    encode_as(msg)
}

pub fn decode(bytes: &[u8]) -> Result<NetMessage, WireError> {
    decode_as(bytes)
}

/// A frame between nodes: `u16 len (big-endian) ‖ chain id (UTF-8) ‖ message`, the message one
/// of [`NetMessage`] as [`encode`] writes it. One connection per peer carries every chain the two
/// nodes share; the receiver routes each frame by its chain id. (A genesis limits chain ids to 64
/// characters, so the length always fits.)
pub fn encode_frame(chain_id: &str, msg: &NetMessage) -> Vec<u8> {
    let id = chain_id.as_bytes();
    let body = encode(msg);
    let mut out = Vec::with_capacity(2 + id.len() + body.len());
    out.extend_from_slice(&(id.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&id[..id.len().min(u16::MAX as usize)]);
    out.extend_from_slice(&body);
    out
}

/// Splits a frame into its chain id and its message bytes (decoded by [`decode`]).
pub fn split_frame(frame: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let (len, rest) = frame
        .split_first_chunk::<2>()
        .ok_or_else(|| WireError::field("frame.chain_id", "missing"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len || len == 0 {
        return Err(WireError::field("frame.chain_id", "truncated or empty"));
    }
    let (id, msg) = rest.split_at(len);
    let id =
        std::str::from_utf8(id).map_err(|_| WireError::field("frame.chain_id", "not UTF-8"))?;
    Ok((id, msg))
}

/// Standalone encode/decode pairs for what the node stores and proof bundles carry.
macro_rules! pairs {
    ($($enc:ident, $dec:ident, $ty:ty;)*) => {$(
        pub fn $enc(value: &$ty) -> Vec<u8> {
            encode_as(value)
        }
        pub fn $dec(bytes: &[u8]) -> Result<$ty, WireError> {
            decode_as(bytes)
        }
    )*};
}

pairs! {
    encode_block, decode_block, Block;
    encode_header, decode_header, BlockHeader;
    encode_qc, decode_qc, QuorumCert;
    encode_epoch_change, decode_epoch_change, EpochChangeProof;
    encode_safety, decode_safety, SafetyData;
    encode_state_proof, decode_state_proof, StateProof;
}
