//! The beacon application, first version: a genesis registry of member accounts and one
//! business transaction, `Anchor` — record a 32-byte evidence digest with a short tag, signed
//! by a member account.
//!
//! Rules, checked in order for each transaction of a block (a failed check leaves state
//! untouched and gives a receipt saying why):
//! 1. the transaction is for this chain and its signature verifies;
//! 2. the sender is a registered account;
//! 3. its nonce is exactly the account's next nonce;
//! 4. the account's role may anchor (members only);
//! 5. the digest was not anchored before (a digest has one anchor, so its proof is unique).
//!
//! Applied transactions raise the sender's next nonce and write the anchor record.

use crate::state::{Overlay, StateKey, StateView, WriteSet};
use prost::Message;
use std::collections::BTreeSet;
use trellis_types::pb::{self, Role};
use trellis_types::{Action, Digest, PublicKey, Transaction};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisAccount {
    pub key: PublicKey,
    pub org: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconGenesis {
    pub chain_id: String,
    pub accounts: Vec<GenesisAccount>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("account {0:?} is listed twice")]
    DuplicateAccount(PublicKey),
    #[error("account {0:?} has no role")]
    NoRole(PublicKey),
    #[error("the chain id is empty")]
    NoChainId,
}

impl BeaconGenesis {
    /// The initial state.
    pub fn write_set(&self) -> Result<WriteSet, GenesisError> {
        if self.chain_id.is_empty() {
            return Err(GenesisError::NoChainId);
        }
        let mut seen = BTreeSet::new();
        let mut writes = WriteSet::new();
        for a in &self.accounts {
            if !seen.insert(a.key) {
                return Err(GenesisError::DuplicateAccount(a.key));
            }
            if a.role == Role::Unspecified {
                return Err(GenesisError::NoRole(a.key));
            }
            let record = pb::Account {
                org: a.org.clone(),
                role: a.role as i32,
                next_nonce: 0,
            };
            writes.insert(StateKey::account(&a.key), Some(record.encode_to_vec()));
        }
        Ok(writes)
    }
}

/// Why a transaction was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("transaction is for another chain")]
    WrongChain,
    #[error("signature does not verify")]
    BadSignature,
    #[error("sender is not a registered account")]
    UnknownAccount,
    #[error("nonce {got} is not the account's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("accounts with role {0:?} may not anchor")]
    RoleMayNotAnchor(Role),
    #[error("digest was already anchored")]
    AlreadyAnchored,
    #[error("stored record is unreadable")]
    CorruptState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub tx_hash: Digest,
    pub outcome: Result<(), Rejection>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    pub writes: WriteSet,
    pub receipts: Vec<Receipt>,
}

pub fn read_account(view: &impl StateView, key: &PublicKey) -> Option<pb::Account> {
    view.get(&StateKey::account(key))
        .and_then(|v| pb::Account::decode(v.as_slice()).ok())
}

pub fn read_anchor(view: &impl StateView, digest: &Digest) -> Option<pb::AnchorRecord> {
    view.get(&StateKey::anchor(digest))
        .and_then(|v| pb::AnchorRecord::decode(v.as_slice()).ok())
}

/// Executes a block's transactions in order on top of `view`.
pub fn execute_block(chain_id: &str, view: &impl StateView, txs: &[Transaction]) -> BlockOutcome {
    execute_block_checked(chain_id, view, txs, |_| false)
}

/// [`execute_block`] where `already_verified(i)` says that this node has already verified the
/// signature of `txs[i]` (at admission to its pool). Verification is a pure function of the
/// transaction (ZIP-215), so skipping it for those changes no outcome; it only saves the work.
pub fn execute_block_checked(
    chain_id: &str,
    view: &impl StateView,
    txs: &[Transaction],
    already_verified: impl Fn(usize) -> bool,
) -> BlockOutcome {
    let unchecked: Vec<usize> = (0..txs.len()).filter(|i| !already_verified(*i)).collect();
    let batch: Vec<Transaction> = unchecked.iter().map(|i| txs[*i].clone()).collect();
    let mut signatures: Vec<Result<(), trellis_types::TxError>> = vec![Ok(()); txs.len()];
    for (i, verdict) in unchecked.into_iter().zip(Transaction::verify_batch(&batch)) {
        signatures[i] = verdict;
    }
    let mut state = Overlay::new(view);
    let receipts = txs
        .iter()
        .zip(signatures)
        .map(|(tx, signature)| {
            let outcome = if tx.chain_id() != chain_id {
                Err(Rejection::WrongChain)
            } else if signature.is_err() {
                Err(Rejection::BadSignature)
            } else {
                apply(&mut state, tx)
            };
            Receipt {
                tx_hash: tx.hash(),
                outcome,
            }
        })
        .collect();
    BlockOutcome {
        writes: state.writes,
        receipts,
    }
}

fn apply<V: StateView>(state: &mut Overlay<'_, V>, tx: &Transaction) -> Result<(), Rejection> {
    let account_key = StateKey::account(&tx.sender());
    let bytes = state.get(&account_key).ok_or(Rejection::UnknownAccount)?;
    let mut account = pb::Account::decode(bytes.as_slice()).map_err(|_| Rejection::CorruptState)?;
    let bad_nonce = Rejection::BadNonce {
        expected: account.next_nonce,
        got: tx.nonce(),
    };
    if tx.nonce() != account.next_nonce {
        return Err(bad_nonce);
    }
    let next_nonce = account.next_nonce.checked_add(1).ok_or(bad_nonce)?;
    match tx.action() {
        Action::Anchor { digest, tag } => {
            let role = account.role();
            if role != Role::Member {
                return Err(Rejection::RoleMayNotAnchor(role));
            }
            let anchor_key = StateKey::anchor(digest);
            if state.get(&anchor_key).is_some() {
                return Err(Rejection::AlreadyAnchored);
            }
            let record = pb::AnchorRecord {
                sender: tx.sender().0.to_vec(),
                tag: tag.as_str().to_string(),
                tx_hash: tx.hash().0.to_vec(),
            };
            state.put(anchor_key, record.encode_to_vec());
        }
    }
    account.next_nonce = next_nonce;
    state.put(account_key, account.encode_to_vec());
    Ok(())
}
