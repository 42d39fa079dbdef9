//! Certified state: the checks that lead from a committee someone already trusts to a state
//! commitment a quorum of a (possibly later) committee of the same chain certified. The anchor
//! bundle ([`crate::bundle`]) runs them from a genesis committee; a shard runs them from the
//! beacon committee it trusts, to accept beacon state values carried by a certified update.
//!
//! The links, checked in this order (the first that fails is reported as a [`BrokenLink`]):
//! 1. there is at least one header, and every header is of `chain_id`;
//! 2. each header is the parent of the next, one height above it, at a later round of the same
//!    epoch or in the next epoch, and commits to a state below its own height;
//! 3. `commit_qc` commits the last header (2-chain rule, one height and round above it) in the
//!    last header's epoch;
//! 4. `epoch_changes` lead from the trusted committee to the committee of that epoch, one
//!    verified proof per epoch;
//! 5. a quorum of that committee signed `commit_qc`.
//!
//! A block committed implies its ancestors are, so the headers need not reach the certificate's
//! own block; what is certified is the state the first header commits to.

use crate::bundle::BrokenLink;
use trellis_consensus::{
    BlockHeader, Committee, Epoch, EpochChangeProof, QuorumCert, StateCommitment,
};

/// What a verified chain of headers certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedState {
    /// The state the first header commits to.
    pub state: StateCommitment,
    /// The epoch of the commit certificate, and the committee that signed it: the committee to
    /// trust from now on.
    pub epoch: Epoch,
    pub committee: Committee,
}

/// Checks every link from `trusted_committee` (of `trusted_epoch`) to the state `headers[0]`
/// commits to; see the module docs for the order.
pub fn certified_state(
    chain_id: &str,
    trusted_epoch: Epoch,
    trusted_committee: &Committee,
    headers: &[BlockHeader],
    commit_qc: &QuorumCert,
    epoch_changes: &[EpochChangeProof],
) -> Result<CertifiedState, BrokenLink> {
    let last = check_headers(chain_id, headers)?;
    let vd = &commit_qc.vote_data;
    if vd.commits() != Some(last.id())
        || vd.parent_round != last.round
        || last.height.checked_add(1) != Some(vd.height)
    {
        return Err(BrokenLink::NotCommitted);
    }
    if vd.epoch != last.epoch {
        return Err(BrokenLink::EpochMismatch {
            qc: vd.epoch,
            header: last.epoch,
        });
    }
    // One proof per epoch from the trusted one; a certificate older than the trusted epoch
    // is signed by a committee no longer trusted, and needs a "negative" count: never matches.
    if vd.epoch.checked_sub(trusted_epoch) != Some(epoch_changes.len() as u64) {
        return Err(BrokenLink::EpochChanges {
            epoch: vd.epoch,
            from: trusted_epoch,
            got: epoch_changes.len(),
        });
    }
    let mut committee = trusted_committee;
    for (index, (proof, epoch)) in epoch_changes.iter().zip(trusted_epoch..).enumerate() {
        committee = proof
            .verify(chain_id, epoch, committee)
            .map_err(|error| BrokenLink::EpochChange { index, error })?;
    }
    commit_qc
        .verify(chain_id, committee)
        .map_err(BrokenLink::CommitCert)?;
    Ok(CertifiedState {
        state: headers[0].state,
        epoch: vd.epoch,
        committee: committee.clone(),
    })
}

/// Links 1 and 2 of the module docs; returns the last header.
fn check_headers<'a>(
    chain_id: &str,
    headers: &'a [BlockHeader],
) -> Result<&'a BlockHeader, BrokenLink> {
    let last = headers.last().ok_or(BrokenLink::NoHeaders)?;
    if let Some(i) = headers.iter().position(|h| h.chain_id != chain_id) {
        return Err(BrokenLink::OtherChain(i));
    }
    let pairs = || {
        headers
            .windows(2)
            .enumerate()
            .map(|(i, w)| (i + 1, &w[0], &w[1]))
    };
    if let Some((next, ..)) = pairs().find(|(_, prev, h)| h.parent_id != prev.id()) {
        return Err(BrokenLink::Unlinked { next });
    }
    // Each check runs over all headers before the next: the first broken link is the first
    // header breaking the earliest rule, as docs/proof-format.md orders them.
    let parent = |i: usize| i.checked_sub(1).map(|p| &headers[p]);
    let height_ok = |i: usize, h: &BlockHeader| {
        h.state.height < h.height
            && parent(i).is_none_or(|p| p.height.checked_add(1) == Some(h.height))
    };
    if let Some(i) = (0..headers.len()).find(|&i| !height_ok(i, &headers[i])) {
        return Err(BrokenLink::Height(i));
    }
    // Rounds rise within an epoch and start again in the next (whose root is round 0).
    let round_ok = |i: usize, h: &BlockHeader| {
        h.round > 0
            && parent(i).is_none_or(|p| {
                (h.epoch == p.epoch && h.round > p.round) || p.epoch.checked_add(1) == Some(h.epoch)
            })
    };
    if let Some(i) = (0..headers.len()).find(|&i| !round_ok(i, &headers[i])) {
        return Err(BrokenLink::Round(i));
    }
    Ok(last)
}
