//! Messages between replicas, and the epoch state a replica works in.

use crate::certificate::{QuorumCert, TimeoutCert, TimeoutVote, Vote};
use crate::types::{
    Block, BlockHeader, BlockId, Committee, Encoder, Epoch, Height, Round, Signature,
    StateCommitment, VoteData,
};

/// A leader's block for its round, with the timeout certificate of the previous round when the
/// block does not directly extend a certificate of the previous round.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Proposal {
    pub block: Block,
    pub tc: Option<TimeoutCert>,
    /// The author's signature over the block id (kind `Proposal`).
    pub signature: Signature,
}

/// A timeout vote, with the sender's highest certificate (which justifies the vote's
/// `high_qc_round`) and its highest timeout certificate (which lets lagging replicas catch up).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TimeoutMsg {
    pub vote: TimeoutVote,
    pub high_qc: QuorumCert,
    pub last_tc: Option<TimeoutCert>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    Proposal(Box<Proposal>),
    /// Sent to the leader of the round after the voted block's round.
    Vote(Vote),
    Timeout(Box<TimeoutMsg>),
    /// Asks for block `block_id` and up to `count - 1` of its ancestors.
    BlockRequest {
        epoch: Epoch,
        block_id: BlockId,
        count: u32,
    },
    /// Blocks answering a request, the requested one first, then its ancestors.
    BlockResponse {
        epoch: Epoch,
        blocks: Vec<Block>,
    },
}

impl Message {
    pub fn epoch(&self) -> Epoch {
        match self {
            Message::Proposal(p) => p.block.epoch(),
            Message::Vote(v) => v.vote_data.epoch,
            Message::Timeout(t) => t.vote.epoch,
            Message::BlockRequest { epoch, .. } | Message::BlockResponse { epoch, .. } => *epoch,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal(_) => "proposal",
            Message::Vote(_) => "vote",
            Message::Timeout(_) => "timeout",
            Message::BlockRequest { .. } => "block_request",
            Message::BlockResponse { .. } => "block_response",
        }
    }
}

/// A committee and its root: the block every block of the epoch descends from.
///
/// Epoch 0's root is a virtual genesis block whose id commits to the chain id and the genesis
/// committee. Epoch `e + 1`'s root is the committed block that ended epoch `e`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EpochState {
    pub chain_id: String,
    pub epoch: Epoch,
    pub committee: Committee,
    pub root_id: BlockId,
    pub root_height: Height,
    pub root_timestamp_ms: u64,
    /// The application state the root commits to: the genesis state for epoch 0, else the
    /// ending block's own state commitment.
    pub root_state: StateCommitment,
}

impl EpochState {
    pub fn genesis(chain_id: &str, committee: Committee, timestamp_ms: u64) -> EpochState {
        EpochState::genesis_with_state(
            chain_id,
            committee,
            timestamp_ms,
            StateCommitment::default(),
        )
    }

    /// Genesis whose root also commits to the application's genesis state.
    pub fn genesis_with_state(
        chain_id: &str,
        committee: Committee,
        timestamp_ms: u64,
        state: StateCommitment,
    ) -> EpochState {
        let mut e = Encoder::new("trellis/genesis/v1");
        e.bytes(chain_id.as_bytes()).u64(timestamp_ms);
        committee.encode(&mut e);
        e.u64(state.height).digest(&state.root);
        EpochState {
            chain_id: chain_id.to_string(),
            epoch: 0,
            committee,
            root_id: e.hash(),
            root_height: 0,
            root_timestamp_ms: timestamp_ms,
            root_state: state,
        }
    }

    /// The epoch that starts after `ending` (which names its committee) is committed.
    pub fn next(&self, ending: &BlockHeader) -> Option<EpochState> {
        let committee = ending.next_committee.clone()?;
        Some(EpochState {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch + 1,
            committee,
            root_id: ending.id(),
            root_height: ending.height,
            root_timestamp_ms: ending.timestamp_ms,
            root_state: ending.state,
        })
    }

    pub fn root_vote_data(&self) -> VoteData {
        VoteData {
            epoch: self.epoch,
            round: 0,
            height: self.root_height,
            block_id: self.root_id,
            parent_id: self.root_id,
            parent_round: 0,
            ends_epoch: false,
        }
    }

    pub fn root_qc(&self) -> QuorumCert {
        QuorumCert::root(self.root_vote_data())
    }
}

/// The round a replica moves to after seeing these certificates.
pub fn round_after(qc: &QuorumCert, tc: Option<&TimeoutCert>) -> Round {
    qc.round().max(tc.map_or(0, |t| t.round)).saturating_add(1)
}
