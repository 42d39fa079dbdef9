//! Safety rules: the only code that signs votes, timeouts and proposals.
//!
//! The rules, enforced by every [`SafetyRules`] backend:
//!
//! 1. **Epoch.** Sign only for the epoch recorded in [`SafetyData::epoch`]; moving to a later
//!    epoch resets the round state, moving back is refused.
//! 2. **One vote per round.** Vote only in a round above `last_voted_round`. Asked again for the
//!    round last voted in, for the same block, return the stored vote unchanged; any other block
//!    in that round (or any earlier round) is refused.
//! 3. **Extension.** The block must directly extend a certificate of the previous round
//!    (`block.round == qc.round + 1`), or come with a timeout certificate of the previous round
//!    (`block.round == tc.round + 1`) and extend a certificate at least as high as the highest one
//!    reported in that timeout certificate (`qc.round >= tc.max_high_qc_round`).
//! 4. **Lock.** The block's certificate must not be older than the lock:
//!    `qc.round >= locked_round`, where `locked_round` is the highest certified round this replica
//!    has voted on or timed out with. Voting raises the lock.
//! 5. **Timeouts.** Time out of round `r` only if `r >= last_voted_round` (after timing out, no
//!    vote in `r` leaves), only with a highest certificate `hqc` no older than the lock, and only
//!    if `r` is justified: `r == hqc.round + 1` or `r == tc.round + 1`. Re-asked for the same round
//!    with the same certificate it returns the stored timeout; with a higher certificate it signs
//!    the round again reporting it (a higher report only strengthens the timeout certificate).
//! 6. **One proposal per round.** Propose only in a round above `last_proposed_round`.
//! 7. **Persist first.** Every call that changes [`SafetyData`] returns the data to persist; the
//!    replica holds the signed message back until the driver acknowledges that this data is
//!    durable. A crash before the acknowledgement loses the message with the state, so a restart
//!    from what was persisted can never produce a conflicting vote.
//!
//! The rules trust that certificates passed in were verified by the caller (the replica checks
//! every certificate before it reaches them).

use crate::certificate::{QuorumCert, TimeoutCert, TimeoutVote, Vote};
use crate::crypto::{MessageKind, Signer, signing_bytes};
use crate::types::{
    Block, BlockHeader, Digest, Epoch, PublicKey, Round, Signature, ValidatorIndex,
};

/// What a validator must persist before anything it signed leaves it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SafetyData {
    pub epoch: Epoch,
    pub last_voted_round: Round,
    pub locked_round: Round,
    pub last_proposed_round: Round,
    pub last_vote: Option<Vote>,
    pub last_timeout: Option<TimeoutVote>,
    /// Liveness data persisted alongside: the highest certificates known when last signing, so a
    /// restarted replica can rejoin the round it left instead of waiting for others.
    pub high_qc: Option<QuorumCert>,
    pub high_tc: Option<TimeoutCert>,
}

impl SafetyData {
    pub fn new(epoch: Epoch) -> SafetyData {
        SafetyData {
            epoch,
            ..SafetyData::default()
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SafetyError {
    #[error("epoch {got} is not the current safety epoch {want}")]
    WrongEpoch { got: Epoch, want: Epoch },
    #[error("round {round} is not above last voted round {last}")]
    OldRound { round: Round, last: Round },
    #[error("block does not extend a certificate of the previous round")]
    NotExtending,
    #[error("block certificate round {qc_round} is below the lock {locked}")]
    BelowLock { qc_round: Round, locked: Round },
    #[error("timeout round {round} is not justified by the highest certificates")]
    UnjustifiedTimeout { round: Round },
    #[error("already proposed in round {0}")]
    AlreadyProposed(Round),
}

/// Bugs that can be planted to prove the simulator catches broken safety rules.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PlantedBug {
    /// Rules 3 and 4 are skipped: a vote no longer checks which certificate the block extends,
    /// so a block on an older certificate than the lock (or the previous round) gets votes.
    SkipLockCheck,
    /// Rule 2 is skipped: a replica may vote for several blocks in one round.
    SkipRoundCheck,
}

/// The signing interface of a replica. Small and synchronous on purpose: each call applies the
/// rules above to in-memory [`SafetyData`] and returns the signed message. The caller persists
/// [`SafetyRules::data`] when it changed before letting the message out (rule 7).
pub trait SafetyRules {
    fn data(&self) -> &SafetyData;
    fn public_key(&self) -> PublicKey;
    /// Enter `epoch` (rule 1); a no-op for the current epoch.
    fn start_epoch(&mut self, epoch: Epoch) -> Result<(), SafetyError>;
    fn sign_proposal(
        &mut self,
        chain_id: &str,
        header: &BlockHeader,
    ) -> Result<Signature, SafetyError>;
    fn vote(
        &mut self,
        chain_id: &str,
        author: ValidatorIndex,
        block: &Block,
        tc: Option<&TimeoutCert>,
    ) -> Result<Vote, SafetyError>;
    fn sign_timeout(
        &mut self,
        chain_id: &str,
        author: ValidatorIndex,
        round: Round,
        high_qc: &QuorumCert,
        tc: Option<&TimeoutCert>,
    ) -> Result<TimeoutVote, SafetyError>;
}

/// Safety rules holding the key in process.
pub struct LocalSafetyRules {
    signer: Signer,
    data: SafetyData,
    #[cfg(feature = "sim")]
    planted: Option<PlantedBug>,
}

impl LocalSafetyRules {
    /// Starts from what was last persisted (or [`SafetyData::new`] on first start).
    pub fn new(signer: Signer, data: SafetyData) -> Self {
        LocalSafetyRules {
            signer,
            data,
            #[cfg(feature = "sim")]
            planted: None,
        }
    }

    #[cfg(feature = "sim")]
    pub fn plant(&mut self, bug: Option<PlantedBug>) {
        self.planted = bug;
    }

    fn skip(&self, _bug: u8) -> bool {
        #[cfg(feature = "sim")]
        {
            return match self.planted {
                Some(PlantedBug::SkipLockCheck) => _bug == 0,
                Some(PlantedBug::SkipRoundCheck) => _bug == 1,
                None => false,
            };
        }
        #[allow(unreachable_code)]
        false
    }

    fn check_epoch(&self, epoch: Epoch) -> Result<(), SafetyError> {
        if epoch != self.data.epoch {
            return Err(SafetyError::WrongEpoch {
                got: epoch,
                want: self.data.epoch,
            });
        }
        Ok(())
    }

    fn raise_high(&mut self, qc: &QuorumCert, tc: Option<&TimeoutCert>) {
        if qc.epoch() == self.data.epoch
            && self
                .data
                .high_qc
                .as_ref()
                .is_none_or(|h| qc.round() > h.round())
        {
            self.data.high_qc = Some(qc.clone());
        }
        if let Some(tc) = tc
            && tc.epoch == self.data.epoch
            && self
                .data
                .high_tc
                .as_ref()
                .is_none_or(|h| tc.round > h.round)
        {
            self.data.high_tc = Some(tc.clone());
        }
    }
}

const SKIP_LOCK: u8 = 0;
const SKIP_ROUND: u8 = 1;

impl SafetyRules for LocalSafetyRules {
    fn data(&self) -> &SafetyData {
        &self.data
    }

    fn public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    fn start_epoch(&mut self, epoch: Epoch) -> Result<(), SafetyError> {
        if epoch < self.data.epoch {
            return Err(SafetyError::WrongEpoch {
                got: epoch,
                want: self.data.epoch,
            });
        }
        if epoch > self.data.epoch {
            self.data = SafetyData::new(epoch);
        }
        Ok(())
    }

    fn sign_proposal(
        &mut self,
        chain_id: &str,
        header: &BlockHeader,
    ) -> Result<Signature, SafetyError> {
        self.check_epoch(header.epoch)?;
        if header.round <= self.data.last_proposed_round {
            return Err(SafetyError::AlreadyProposed(header.round));
        }
        self.data.last_proposed_round = header.round;
        let msg = signing_bytes(
            chain_id,
            MessageKind::Proposal,
            header.epoch,
            header.round,
            &header.id(),
            &Digest::ZERO,
        );
        Ok(self.signer.sign(&msg))
    }

    fn vote(
        &mut self,
        chain_id: &str,
        author: ValidatorIndex,
        block: &Block,
        tc: Option<&TimeoutCert>,
    ) -> Result<Vote, SafetyError> {
        self.check_epoch(block.epoch())?;
        let round = block.round();
        // Rule 2: a repeated request for the same vote gets the stored one.
        if let Some(v) = &self.data.last_vote
            && v.vote_data.round == round
            && v.vote_data.block_id == block.id()
        {
            return Ok(v.clone());
        }
        if round <= self.data.last_voted_round && !self.skip(SKIP_ROUND) {
            return Err(SafetyError::OldRound {
                round,
                last: self.data.last_voted_round,
            });
        }
        // Rule 3.
        let qc_round = block.qc.round();
        let direct = qc_round.checked_add(1) == Some(round);
        let via_tc = tc.is_some_and(|tc| {
            tc.epoch == block.epoch()
                && tc.round.checked_add(1) == Some(round)
                && qc_round >= tc.max_high_qc_round()
        });
        if !direct && !via_tc && !self.skip(SKIP_LOCK) {
            return Err(SafetyError::NotExtending);
        }
        // Rule 4.
        if qc_round < self.data.locked_round && !self.skip(SKIP_LOCK) {
            return Err(SafetyError::BelowLock {
                qc_round,
                locked: self.data.locked_round,
            });
        }
        let vote_data = block.vote_data();
        let signature = self.signer.sign(&Vote::signing_bytes(chain_id, &vote_data));
        let vote = Vote {
            vote_data,
            author,
            signature,
        };
        self.data.last_voted_round = self.data.last_voted_round.max(round);
        self.data.locked_round = self.data.locked_round.max(qc_round);
        self.data.last_vote = Some(vote.clone());
        self.raise_high(&block.qc, tc);
        Ok(vote)
    }

    fn sign_timeout(
        &mut self,
        chain_id: &str,
        author: ValidatorIndex,
        round: Round,
        high_qc: &QuorumCert,
        tc: Option<&TimeoutCert>,
    ) -> Result<TimeoutVote, SafetyError> {
        self.check_epoch(high_qc.epoch())?;
        if let Some(t) = &self.data.last_timeout
            && t.round == round
            && t.high_qc_round >= high_qc.round()
        {
            return Ok(t.clone());
        }
        if round < self.data.last_voted_round {
            return Err(SafetyError::OldRound {
                round,
                last: self.data.last_voted_round,
            });
        }
        if high_qc.round() < self.data.locked_round {
            return Err(SafetyError::BelowLock {
                qc_round: high_qc.round(),
                locked: self.data.locked_round,
            });
        }
        let justified = high_qc.round().checked_add(1) == Some(round)
            || tc.is_some_and(|tc| {
                tc.epoch == self.data.epoch && tc.round.checked_add(1) == Some(round)
            });
        if !justified {
            return Err(SafetyError::UnjustifiedTimeout { round });
        }
        let epoch = self.data.epoch;
        let signature = self.signer.sign(&TimeoutVote::signing_bytes(
            chain_id,
            epoch,
            round,
            high_qc.round(),
        ));
        let timeout = TimeoutVote {
            epoch,
            round,
            high_qc_round: high_qc.round(),
            author,
            signature,
        };
        self.data.last_voted_round = round;
        self.data.locked_round = self.data.locked_round.max(high_qc.round());
        self.data.last_timeout = Some(timeout.clone());
        self.raise_high(high_qc, tc);
        Ok(timeout)
    }
}
