//! Identifiers, blocks, votes and the canonical encoding that block ids and signatures commit to.
//!
//! The encoding here is the one thing peers must agree on byte for byte: a block id is the
//! SHA-256 of its header's canonical encoding, and every signature covers canonical bytes. Wire
//! formats (protobuf in the node) are free to differ as long as they carry the same fields.

use sha2::{Digest as _, Sha256};
use std::fmt;

pub type Epoch = u64;
pub type Round = u64;
pub type Height = u64;
/// Position of a validator in its epoch's committee (the order of [`crate::Committee`]).
pub type ValidatorIndex = u32;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

/// The id of a block: the digest of its header's canonical encoding.
pub type BlockId = Digest;

impl Digest {
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn short(&self) -> String {
        lower_hex(&self.0[..4])
    }

    pub fn to_hex(&self) -> String {
        lower_hex(&self.0)
    }
}

/// Lower-case hex without a formatter call and an allocation per byte: the API writes one
/// digest per transaction it accepts and per transaction of every block it serves.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 verification key as 32 bytes; it names a validator across epochs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pk:")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// An ed25519 signature as 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{:02x}{:02x}..", self.0[0], self.0[1])
    }
}

/// Canonical, length-prefixed big-endian encoding used for hashing and signing.
#[derive(Default)]
pub struct Encoder(Vec<u8>);

impl Encoder {
    pub fn new(domain: &str) -> Self {
        let mut e = Encoder(Vec::with_capacity(256));
        e.bytes(domain.as_bytes());
        e
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Lengths beyond u32 cannot occur: messages are bounded far below 4 GiB by the node.
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    pub fn fixed(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    pub fn digest(&mut self, d: &Digest) -> &mut Self {
        self.fixed(&d.0)
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
    pub fn hash(self) -> Digest {
        Digest::of(&self.0)
    }
}

/// The ordered set of validators of one epoch. All members have equal voting power.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Committee {
    members: Vec<PublicKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommitteeError {
    #[error("a committee needs at least one member")]
    Empty,
    #[error("member {0:?} appears twice")]
    Duplicate(PublicKey),
    #[error("a committee has at most {max} members, got {got}", max = Committee::MAX_SIZE)]
    TooLarge { got: usize },
    #[error(
        "member {index} is not a strong ed25519 key (a canonical encoding of a point of prime \
         order, not the identity): anyone could sign for it"
    )]
    WeakKey { index: usize },
}

impl Committee {
    /// Bitmaps and indices are `u32`; far above any realistic BFT committee.
    pub const MAX_SIZE: usize = 1024;

    pub fn new(members: Vec<PublicKey>) -> Result<Self, CommitteeError> {
        if members.is_empty() {
            return Err(CommitteeError::Empty);
        }
        if members.len() > Self::MAX_SIZE {
            return Err(CommitteeError::TooLarge { got: members.len() });
        }
        if let Some(index) = members
            .iter()
            .position(|m| !crate::crypto::is_strong_key(m))
        {
            return Err(CommitteeError::WeakKey { index });
        }
        let mut sorted = members.clone();
        sorted.sort();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(CommitteeError::Duplicate(w[0]));
        }
        Ok(Committee { members })
    }

    pub fn members(&self) -> &[PublicKey] {
        &self.members
    }
    pub fn size(&self) -> usize {
        self.members.len()
    }
    /// Number of Byzantine members tolerated: `f = floor((n - 1) / 3)`.
    pub fn max_faulty(&self) -> usize {
        (self.members.len() - 1) / 3
    }
    /// Signers needed for a certificate: `n - f` (that is `2f + 1` when `n = 3f + 1`).
    pub fn quorum(&self) -> usize {
        Committee::quorum_of(self.members.len())
    }
    /// [`Committee::quorum`] of a committee of `size` members.
    pub fn quorum_of(size: usize) -> usize {
        size - size.saturating_sub(1) / 3
    }
    pub fn index_of(&self, key: &PublicKey) -> Option<ValidatorIndex> {
        self.members
            .iter()
            .position(|m| m == key)
            .map(|i| i as ValidatorIndex)
    }
    pub fn member(&self, index: ValidatorIndex) -> Option<&PublicKey> {
        self.members.get(index as usize)
    }
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.index_of(key).is_some()
    }
    pub fn digest(&self) -> Digest {
        let mut e = Encoder::new("trellis/committee/v1");
        self.encode(&mut e);
        e.hash()
    }
    pub(crate) fn encode(&self, e: &mut Encoder) {
        e.u32(self.members.len() as u32);
        for m in &self.members {
            e.fixed(&m.0);
        }
    }
}

/// What a vote (and so a quorum certificate) attests: a block and its direct parent.
///
/// Carrying the parent lets a certificate alone prove a commit: a QC whose `round` is
/// `parent_round + 1` commits `parent_id` (the 2-chain rule) without shipping the blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VoteData {
    pub epoch: Epoch,
    pub round: Round,
    pub height: Height,
    pub block_id: BlockId,
    pub parent_id: BlockId,
    pub parent_round: Round,
    /// The certified block ends its epoch (it names the next committee).
    pub ends_epoch: bool,
}

impl VoteData {
    pub fn digest(&self) -> Digest {
        let mut e = Encoder::new("trellis/vote-data/v1");
        e.u64(self.epoch)
            .u64(self.round)
            .u64(self.height)
            .digest(&self.block_id)
            .digest(&self.parent_id)
            .u64(self.parent_round)
            .u8(self.ends_epoch as u8);
        e.hash()
    }

    /// The block this certificate commits under the 2-chain rule, if any.
    pub fn commits(&self) -> Option<BlockId> {
        (self.round > 0 && self.parent_round.checked_add(1) == Some(self.round))
            .then_some(self.parent_id)
    }
}

/// The application state a header commits to: the state root after executing every committed
/// block of the chain up to and including `height` (the genesis state when `height` is the
/// chain's root height). The application chooses it when proposing and checks it when
/// validating; consensus only requires `height` to be below the block's own height, so a
/// header may commit to state that lags the block by the execution pipeline.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StateCommitment {
    pub height: Height,
    pub root: Digest,
}

/// A block's header: everything its id commits to. The payload is committed by digest so that
/// proofs and epoch-change proofs can ship headers alone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BlockHeader {
    pub chain_id: String,
    pub epoch: Epoch,
    pub round: Round,
    pub height: Height,
    pub parent_id: BlockId,
    /// Digest of the parent certificate's vote data (the `qc` the block carries).
    pub qc_digest: Digest,
    pub author: ValidatorIndex,
    /// Proposer's clock when proposing, in milliseconds; strictly increasing along a chain.
    pub timestamp_ms: u64,
    pub payload_digest: Digest,
    /// Application state committed by this header (see [`StateCommitment`]).
    pub state: StateCommitment,
    /// Set on the block that ends its epoch: the committee of the next epoch.
    pub next_committee: Option<Committee>,
}

impl BlockHeader {
    pub fn id(&self) -> BlockId {
        let mut e = Encoder::new("trellis/block-header/v1");
        e.bytes(self.chain_id.as_bytes())
            .u64(self.epoch)
            .u64(self.round)
            .u64(self.height)
            .digest(&self.parent_id)
            .digest(&self.qc_digest)
            .u32(self.author)
            .u64(self.timestamp_ms)
            .digest(&self.payload_digest)
            .u64(self.state.height)
            .digest(&self.state.root);
        match &self.next_committee {
            None => {
                e.u8(0);
            }
            Some(c) => {
                e.u8(1);
                c.encode(&mut e);
            }
        }
        e.hash()
    }
}

pub fn payload_digest(payload: &[u8]) -> Digest {
    let mut e = Encoder::new("trellis/payload/v1");
    e.bytes(payload);
    e.hash()
}

/// A proposed block: header, the certificate of its parent, and the opaque application payload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    pub header: BlockHeader,
    pub qc: crate::QuorumCert,
    pub payload: Vec<u8>,
    id: BlockId,
}

impl Block {
    pub fn new(header: BlockHeader, qc: crate::QuorumCert, payload: Vec<u8>) -> Block {
        let id = header.id();
        Block {
            header,
            qc,
            payload,
            id,
        }
    }
    pub fn id(&self) -> BlockId {
        self.id
    }
    pub fn epoch(&self) -> Epoch {
        self.header.epoch
    }
    pub fn round(&self) -> Round {
        self.header.round
    }
    pub fn height(&self) -> Height {
        self.header.height
    }
    pub fn parent_id(&self) -> BlockId {
        self.header.parent_id
    }
    pub fn ends_epoch(&self) -> bool {
        self.header.next_committee.is_some()
    }

    /// Internal consistency: the cached id matches the header, the payload matches its digest,
    /// and the header agrees with the certificate it carries.
    pub fn check_well_formed(&self) -> Result<(), &'static str> {
        let h = &self.header;
        if self.id != h.id() {
            return Err("block id does not match header");
        }
        if h.payload_digest != payload_digest(&self.payload) {
            return Err("payload does not match its digest");
        }
        let qc = &self.qc.vote_data;
        if h.parent_id != qc.block_id {
            return Err("parent id differs from the certified block");
        }
        if h.qc_digest != qc.digest() {
            return Err("qc digest does not match the carried certificate");
        }
        if h.epoch != qc.epoch {
            return Err("block and its parent certificate are in different epochs");
        }
        if h.round <= qc.round {
            return Err("block round does not exceed its parent's");
        }
        if qc.height.checked_add(1) != Some(h.height) {
            return Err("block height is not parent height + 1");
        }
        if h.state.height >= h.height {
            return Err("state commitment is not below the block's height");
        }
        Ok(())
    }

    /// What a vote for this block signs.
    pub fn vote_data(&self) -> VoteData {
        VoteData {
            epoch: self.header.epoch,
            round: self.header.round,
            height: self.header.height,
            block_id: self.id,
            parent_id: self.header.parent_id,
            parent_round: self.qc.vote_data.round,
            ends_epoch: self.ends_epoch(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_written_as_lower_case_hex_of_every_byte() {
        for start in [0u8, 32, 64, 96, 128, 160, 192, 224] {
            let d = Digest(std::array::from_fn(|i| start + i as u8));
            let expected: String = d.0.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(d.to_hex(), expected);
            assert_eq!(d.short(), expected[..8]);
            assert_eq!(format!("{d}"), expected);
        }
    }
}
