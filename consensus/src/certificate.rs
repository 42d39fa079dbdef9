//! Votes, timeouts, and the certificates aggregated from them: a signer bitmap plus one
//! signature per signer, in bitmap order, verified as one batch.

use crate::crypto::{self, MessageKind, signing_bytes, timeout_extra};
use crate::types::{
    BlockHeader, BlockId, Committee, Digest, Epoch, PublicKey, Round, Signature, ValidatorIndex,
    VoteData,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CertError {
    #[error("signer bitmap has {got} bytes, committee needs {want}")]
    BitmapLength { got: usize, want: usize },
    #[error("signer bitmap names a validator outside the committee")]
    BitmapOverflow,
    #[error("{signers} signers but {signatures} signatures")]
    SignatureCount { signers: usize, signatures: usize },
    #[error("{got} signers, quorum is {want}")]
    NoQuorum { got: usize, want: usize },
    #[error("certificate of epoch {got}, expected {want}")]
    WrongEpoch { got: Epoch, want: Epoch },
    #[error("per-signer data does not match the signer count")]
    Malformed,
    #[error("signature check failed")]
    BadSignature,
    #[error("not a certificate of this epoch's root")]
    BadRoot,
    #[error("epoch-change proof: {0}")]
    BadEpochChange(&'static str),
}

/// Which committee members signed, one bit per member (bit `i % 8` of byte `i / 8`).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SignerBitmap(pub Vec<u8>);

impl SignerBitmap {
    pub fn new(size: usize) -> Self {
        SignerBitmap(vec![0; size.div_ceil(8)])
    }
    pub fn set(&mut self, i: ValidatorIndex) {
        self.0[i as usize / 8] |= 1 << (i % 8);
    }
    pub fn get(&self, i: ValidatorIndex) -> bool {
        self.0
            .get(i as usize / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }
    /// Indices of the set bits, ascending.
    pub fn indices(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        (0..self.0.len() * 8)
            .map(|i| i as ValidatorIndex)
            .filter(|i| self.get(*i))
    }

    fn check(&self, committee: &Committee) -> Result<(), CertError> {
        let want = committee.size().div_ceil(8);
        if self.0.len() != want {
            return Err(CertError::BitmapLength {
                got: self.0.len(),
                want,
            });
        }
        if self.indices().any(|i| i as usize >= committee.size()) {
            return Err(CertError::BitmapOverflow);
        }
        Ok(())
    }
}

/// A signed vote for a block, sent to the leader of the next round.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Vote {
    pub vote_data: VoteData,
    pub author: ValidatorIndex,
    pub signature: Signature,
}

impl Vote {
    pub fn signing_bytes(chain_id: &str, data: &VoteData) -> Vec<u8> {
        signing_bytes(
            chain_id,
            MessageKind::Vote,
            data.epoch,
            data.round,
            &data.block_id,
            &data.digest(),
        )
    }
}

/// A validator's signed statement that it gave up on `round`, with its highest certified round.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TimeoutVote {
    pub epoch: Epoch,
    pub round: Round,
    pub high_qc_round: Round,
    pub author: ValidatorIndex,
    pub signature: Signature,
}

impl TimeoutVote {
    pub fn signing_bytes(
        chain_id: &str,
        epoch: Epoch,
        round: Round,
        high_qc_round: Round,
    ) -> Vec<u8> {
        signing_bytes(
            chain_id,
            MessageKind::Timeout,
            epoch,
            round,
            &BlockId::ZERO,
            &timeout_extra(high_qc_round),
        )
    }
}

/// A quorum certificate: at least a quorum of one epoch's committee signed the same vote data.
///
/// The certificate of an epoch's root block (round 0) has no signers; it is accepted only when
/// it equals the root the replica derived itself (genesis or the previous epoch's last block).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct QuorumCert {
    pub vote_data: VoteData,
    pub signers: SignerBitmap,
    pub signatures: Vec<Signature>,
}

impl QuorumCert {
    pub fn root(vote_data: VoteData) -> QuorumCert {
        QuorumCert {
            vote_data,
            signers: SignerBitmap::default(),
            signatures: Vec::new(),
        }
    }
    pub fn is_root(&self) -> bool {
        self.vote_data.round == 0
    }
    pub fn round(&self) -> Round {
        self.vote_data.round
    }
    pub fn epoch(&self) -> Epoch {
        self.vote_data.epoch
    }
    pub fn block_id(&self) -> BlockId {
        self.vote_data.block_id
    }

    /// Identity for verification caching: vote data and signers. Signature bytes are covered by
    /// the verification itself.
    pub fn cache_key(&self) -> Digest {
        let mut e = crate::types::Encoder::new("trellis/qc-cache/v1");
        e.digest(&self.vote_data.digest()).bytes(&self.signers.0);
        for s in &self.signatures {
            e.fixed(&s.0);
        }
        e.hash()
    }

    /// Checks a signed (non-root) certificate against `committee`, the committee of its epoch.
    pub fn verify(&self, chain_id: &str, committee: &Committee) -> Result<(), CertError> {
        self.signers.check(committee)?;
        let signers = self.signers.count();
        if signers != self.signatures.len() {
            return Err(CertError::SignatureCount {
                signers,
                signatures: self.signatures.len(),
            });
        }
        if signers < committee.quorum() {
            return Err(CertError::NoQuorum {
                got: signers,
                want: committee.quorum(),
            });
        }
        let msg = Vote::signing_bytes(chain_id, &self.vote_data);
        let items: Vec<(PublicKey, Signature, Vec<u8>)> = self
            .signers
            .indices()
            .zip(&self.signatures)
            .filter_map(|(i, s)| committee.member(i).map(|k| (*k, *s, msg.clone())))
            .collect();
        crypto::verify_batch(&items).map_err(|_| CertError::BadSignature)
    }
}

/// A timeout certificate: a quorum gave up on `round`. Carries each signer's highest certified
/// round so the next leader's block can be checked to extend the highest of them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TimeoutCert {
    pub epoch: Epoch,
    pub round: Round,
    pub signers: SignerBitmap,
    pub high_qc_rounds: Vec<Round>,
    pub signatures: Vec<Signature>,
}

impl TimeoutCert {
    /// The highest certified round among the signers: a block justified by this certificate must
    /// extend a certificate at least this high.
    pub fn max_high_qc_round(&self) -> Round {
        self.high_qc_rounds.iter().copied().max().unwrap_or(0)
    }

    pub fn verify(&self, chain_id: &str, committee: &Committee) -> Result<(), CertError> {
        self.signers.check(committee)?;
        let signers = self.signers.count();
        if signers != self.signatures.len() || signers != self.high_qc_rounds.len() {
            return Err(CertError::Malformed);
        }
        if signers < committee.quorum() {
            return Err(CertError::NoQuorum {
                got: signers,
                want: committee.quorum(),
            });
        }
        if self.high_qc_rounds.iter().any(|r| *r >= self.round) {
            return Err(CertError::Malformed);
        }
        let items: Vec<(PublicKey, Signature, Vec<u8>)> = self
            .signers
            .indices()
            .zip(self.signatures.iter().zip(&self.high_qc_rounds))
            .filter_map(|(i, (s, hqc))| {
                committee.member(i).map(|k| {
                    (
                        *k,
                        *s,
                        TimeoutVote::signing_bytes(chain_id, self.epoch, self.round, *hqc),
                    )
                })
            })
            .collect();
        crypto::verify_batch(&items).map_err(|_| CertError::BadSignature)
    }
}

/// Proof that an epoch ended: the header of the block naming the next committee, the (empty)
/// suffix blocks certified after it, and the certificate, signed by the ending epoch's committee,
/// that commits the last of them. A node holding the genesis committee walks a list of these to
/// learn every later committee.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EpochChangeProof {
    pub ending: BlockHeader,
    pub suffix: Vec<BlockHeader>,
    pub commit_qc: QuorumCert,
}

impl EpochChangeProof {
    /// Verifies the proof against the committee of the ending epoch and returns the next
    /// committee. Pure function of its inputs: usable offline.
    pub fn verify<'a>(
        &'a self,
        chain_id: &str,
        epoch: Epoch,
        committee: &Committee,
    ) -> Result<&'a Committee, CertError> {
        let ending = &self.ending;
        let next = ending
            .next_committee
            .as_ref()
            .ok_or(CertError::BadEpochChange(
                "ending block names no next committee",
            ))?;
        if ending.epoch != epoch || ending.chain_id != chain_id {
            return Err(CertError::BadEpochChange(
                "ending block of another epoch or chain",
            ));
        }
        let mut last = ending.id();
        let mut last_height = ending.height;
        for h in &self.suffix {
            if h.parent_id != last
                || last_height.checked_add(1) != Some(h.height)
                || h.epoch != epoch
            {
                return Err(CertError::BadEpochChange(
                    "suffix does not extend the ending block",
                ));
            }
            if h.next_committee.is_some() {
                return Err(CertError::BadEpochChange("suffix block names a committee"));
            }
            last = h.id();
            last_height = h.height;
        }
        let vd = &self.commit_qc.vote_data;
        if vd.epoch != epoch {
            return Err(CertError::WrongEpoch {
                got: vd.epoch,
                want: epoch,
            });
        }
        if vd.commits() != Some(last) {
            return Err(CertError::BadEpochChange(
                "certificate does not commit the chain",
            ));
        }
        if self.commit_qc.is_root() {
            return Err(CertError::BadEpochChange(
                "root certificate cannot end an epoch",
            ));
        }
        self.commit_qc.verify(chain_id, committee)?;
        Ok(next)
    }
}
