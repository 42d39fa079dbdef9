//! The shard application: a business consortium's chain (its chain id is its shard id).
//!
//! Genesis ([`ShardSpec`]) registers the member orgs' accounts, the shard's member list, the
//! beacon committee the shard trusts first and the shard's next committee. Transactions:
//! - `PutRecord` — a member account writes the next version of a record: a salted commitment
//!   (the chain never sees the payload), optional ciphertext and a schema tag. The org that
//!   first wrote a key owns it; only its accounts write later versions, and every version stays
//!   readable;
//! - `Anchor` — a member account records a 32-byte evidence digest, as on the beacon (same
//!   record layout, so anchor proof bundles work unchanged);
//! - `CertifiedUpdate` — any registered account carries beacon state values (the shard's
//!   record, its member orgs' records, its committee) with proofs against a beacon header
//!   certified by the committee the shard trusts. The shard takes nothing from a relayer's
//!   word: the proofs decide, and the submitter gains nothing by submitting.
//!
//! Every transaction is checked in the beacon's order, and every refusal gives a receipt:
//! 1. the transaction is for this chain and its signature verifies;
//! 2. the sender is a registered account;
//! 3. its nonce is exactly the account's next nonce;
//! 4. the action's own rules, all checked before any write.
//!
//! Past check 3 the sender's nonce is consumed whatever happens next; a refused action writes
//! nothing else. A closed shard refuses every action but certified updates (the beacon may
//! still change what the shard must know).

mod app;
mod reads;
mod update;

pub use app::ShardApp;
pub use reads::*;

use crate::app::{Applied, BlockInput, ExecutedBlock, Refusal, TxReceipt};
use crate::state::{Overlay, StateError, StateKey, StateView, WriteSet, decode_at};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use trellis_consensus::{Committee, Epoch};
use trellis_types::genesis::ChainParams;
use trellis_types::pb::{self, Role, ShardStatus};
use trellis_types::{Digest, PublicKey, ShardAction, Transaction};

/// What a shard is made from: the beacon's decision to create it, as its founders hold it.
#[derive(Clone, Debug)]
pub struct ShardSpec {
    /// Also the chain id.
    pub shard_id: String,
    pub genesis_time_ms: u64,
    pub params: ChainParams,
    /// Member org ids, sorted and distinct.
    pub members: Vec<String>,
    /// Member accounts: key and org (role member).
    pub accounts: Vec<(PublicKey, String)>,
    /// The shard's first committee (consensus keys, in order).
    pub committee: Vec<PublicKey>,
    pub beacon_chain_id: String,
    /// The beacon epoch whose committee the shard trusts first.
    pub beacon_epoch: Epoch,
    /// That committee.
    pub beacon_committee: Vec<PublicKey>,
    /// The beacon state height the shard was created from: updates must be proven against a
    /// higher one.
    pub beacon_state_height: u64,
    /// Digest of what the shard was made from (becomes `ChainGenesis::digest`).
    pub origin: Digest,
}

/// Why a shard spec cannot start a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the shard id is empty")]
    NoShardId,
    #[error("the beacon chain id is empty or the shard's own")]
    BadBeaconChainId,
    #[error("the shard has no member org")]
    NoMembers,
    #[error("org id {0:?} is not valid")]
    BadOrg(String),
    #[error("member orgs are not sorted and distinct")]
    MembersNotSorted,
    #[error("account {0:?} belongs to org {1:?}, which is not a member of the shard")]
    NotAMember(PublicKey, String),
    #[error("account {0:?} is listed twice")]
    DuplicateAccount(PublicKey),
    #[error("account {0:?} is not a strong ed25519 key")]
    WeakKey(PublicKey),
    #[error("the shard's committee is not valid: {0}")]
    BadCommittee(String),
    #[error("the trusted beacon committee is not valid: {0}")]
    BadBeaconCommittee(String),
}

impl ShardSpec {
    /// The shard's committee of epoch 0.
    pub fn first_committee(&self) -> Result<Committee, SpecError> {
        Committee::new(self.committee.clone()).map_err(|e| SpecError::BadCommittee(e.to_string()))
    }

    /// The initial state.
    pub fn write_set(&self) -> Result<WriteSet, SpecError> {
        if self.shard_id.is_empty() {
            return Err(SpecError::NoShardId);
        }
        if self.beacon_chain_id.is_empty() || self.beacon_chain_id == self.shard_id {
            return Err(SpecError::BadBeaconChainId);
        }
        if self.members.is_empty() {
            return Err(SpecError::NoMembers);
        }
        if let Some(bad) = self
            .members
            .iter()
            .find(|o| trellis_types::OrgId::parse(o, "org").is_err())
        {
            return Err(SpecError::BadOrg(bad.clone()));
        }
        if self.members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SpecError::MembersNotSorted);
        }
        self.first_committee()?;
        Committee::new(self.beacon_committee.clone())
            .map_err(|e| SpecError::BadBeaconCommittee(e.to_string()))?;
        let mut writes = WriteSet::new();
        let mut keys: BTreeMap<&str, BTreeSet<[u8; 32]>> = self
            .members
            .iter()
            .map(|o| (o.as_str(), BTreeSet::new()))
            .collect();
        for (key, org) in &self.accounts {
            let Some(org_keys) = keys.get_mut(org.as_str()) else {
                return Err(SpecError::NotAMember(*key, org.clone()));
            };
            if writes.contains_key(&StateKey::account(key)) {
                return Err(SpecError::DuplicateAccount(*key));
            }
            // Accounts sign with ZIP-215 rules: a weak key would let anyone write as the org.
            if !trellis_consensus::crypto::is_strong_key(key) {
                return Err(SpecError::WeakKey(*key));
            }
            org_keys.insert(key.0);
            let account = pb::Account {
                org: org.clone(),
                role: Role::Member as i32,
                next_nonce: 0,
            };
            writes.insert(StateKey::account(key), Some(account.encode_to_vec()));
        }
        // Each validator of the first committee gets an account to relay certified updates with.
        for key in &self.committee {
            if writes.contains_key(&StateKey::account(key)) {
                continue;
            }
            let account = pb::Account {
                org: String::new(),
                role: Role::Validator as i32,
                next_nonce: 0,
            };
            writes.insert(StateKey::account(key), Some(account.encode_to_vec()));
        }
        let membership = pb::ShardMembership {
            status: ShardStatus::Active as i32,
            orgs: keys
                .into_iter()
                .map(|(org, keys)| pb::ShardOrg {
                    org: org.to_string(),
                    keys: keys.into_iter().map(|k| k.to_vec()).collect(),
                })
                .collect(),
        };
        writes.insert(StateKey::shard_members(), Some(membership.encode_to_vec()));
        let trust = pb::BeaconTrust {
            beacon_chain_id: self.beacon_chain_id.clone(),
            epoch: self.beacon_epoch,
            committee: self.beacon_committee.iter().map(|k| k.0.to_vec()).collect(),
            applied_state_height: self.beacon_state_height,
            applied_height: 0,
        };
        writes.insert(StateKey::beacon_trust(), Some(trust.encode_to_vec()));
        let next = pb::ChainCommittee {
            chain_id: self.shard_id.clone(),
            members: self.committee.iter().map(|k| k.0.to_vec()).collect(),
            decided_height: 0,
        };
        writes.insert(StateKey::next_committee(), Some(next.encode_to_vec()));
        Ok(writes)
    }
}

/// Why a shard transaction was not applied.
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
    #[error("the action is not a shard action: {0}")]
    MalformedAction(String),
    #[error("the shard is closed")]
    ShardClosed,
    #[error("accounts with role {role:?} may not {action}")]
    RoleMayNot { action: &'static str, role: Role },
    #[error("org {0} is not a member of the shard")]
    NotAMember(String),
    #[error("the record is owned by org {0}")]
    NotTheOwner(String),
    #[error("digest was already anchored")]
    AlreadyAnchored,
    #[error("the update is proven against beacon state height {got}, height {applied} is applied")]
    StaleUpdate { applied: u64, got: u64 },
    #[error("the update's proof does not hold: {0}")]
    BadProof(String),
    #[error("the update is not for this shard: {0}")]
    NotForThisShard(String),
    #[error("the update cannot be applied: {0}")]
    BadUpdate(String),
    #[error("stored record is unreadable")]
    CorruptState,
}

impl Rejection {
    /// A stable, machine-readable name for the rejection (clients map it to their errors).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::WrongChain => "wrong-chain",
            Rejection::BadSignature => "bad-signature",
            Rejection::UnknownAccount => "unknown-account",
            Rejection::BadNonce { .. } => "bad-nonce",
            Rejection::MalformedAction(_) => "malformed-action",
            Rejection::ShardClosed => "shard-closed",
            Rejection::RoleMayNot { .. } => "role-not-allowed",
            Rejection::NotAMember(_) => "not-a-member",
            Rejection::NotTheOwner(_) => "not-the-owner",
            Rejection::AlreadyAnchored => "already-anchored",
            Rejection::StaleUpdate { .. } => "stale-update",
            Rejection::BadProof(_) => "bad-proof",
            Rejection::NotForThisShard(_) => "not-for-this-shard",
            Rejection::BadUpdate(_) => "bad-update",
            Rejection::CorruptState => "corrupt-state",
        }
    }
}

impl From<&Rejection> for Refusal {
    fn from(r: &Rejection) -> Refusal {
        Refusal {
            code: r.code(),
            reason: r.to_string(),
        }
    }
}

/// The shard's member orgs and status.
pub fn read_membership(
    view: &(impl StateView + ?Sized),
) -> Result<Option<pb::ShardMembership>, StateError> {
    decode_at(view, &StateKey::shard_members())
}

/// The beacon committee the shard trusts and the beacon state height it applied last.
pub fn read_beacon_trust(
    view: &(impl StateView + ?Sized),
) -> Result<Option<pb::BeaconTrust>, StateError> {
    decode_at(view, &StateKey::beacon_trust())
}

/// The shard's next committee as the beacon decided it.
pub fn read_next_committee(
    view: &(impl StateView + ?Sized),
) -> Result<Option<Committee>, StateError> {
    let key = StateKey::next_committee();
    let Some(record) = decode_at::<pb::ChainCommittee>(view, &key)? else {
        return Ok(None);
    };
    committee_of(&record.members)
        .map(Some)
        .ok_or_else(|| StateError::Corrupt(key.to_string()))
}

/// The latest version of a record.
pub fn read_record(
    view: &(impl StateView + ?Sized),
    collection: &str,
    key: &str,
) -> Result<Option<pb::RecordVersion>, StateError> {
    decode_at(view, &StateKey::record(collection, key))
}

/// One version of a record.
pub fn read_record_version(
    view: &(impl StateView + ?Sized),
    collection: &str,
    key: &str,
    version: u64,
) -> Result<Option<pb::RecordVersion>, StateError> {
    decode_at(view, &StateKey::record_version(collection, key, version))
}

/// A committee from stored keys; `None` when they do not make one.
fn committee_of(keys: &[Vec<u8>]) -> Option<Committee> {
    let mut members = Vec::with_capacity(keys.len());
    for k in keys {
        members.push(PublicKey(<[u8; 32]>::try_from(k.as_slice()).ok()?));
    }
    Committee::new(members).ok()
}

/// Executes a block's transactions in order on top of `view`, the state after the block's
/// parent. A read the state store fails stops the block: `Err`, and nothing of it is to be
/// written.
pub fn execute_block(
    shard_id: &str,
    block: BlockInput<'_>,
    view: &(impl StateView + ?Sized),
) -> Result<ExecutedBlock, StateError> {
    let txs = block.txs;
    // Verification is a pure function of the transaction (ZIP-215): skipping the ones this node
    // verified at admission changes no outcome.
    let unchecked: Vec<usize> = (0..txs.len())
        .filter(|i| !block.verified.get(*i).copied().unwrap_or(false))
        .collect();
    let verdicts = Transaction::verify_batch(unchecked.iter().map(|i| txs[*i].as_ref()));
    let mut signatures: Vec<Result<(), trellis_types::TxError>> = vec![Ok(()); txs.len()];
    for (i, verdict) in unchecked.into_iter().zip(verdicts) {
        signatures[i] = verdict;
    }
    let mut state = Overlay::new(view);
    let mut receipts = Vec::with_capacity(txs.len());
    for (tx, signature) in txs.iter().zip(signatures) {
        let outcome = if tx.chain_id() != shard_id {
            Err(Rejection::WrongChain)
        } else if signature.is_err() {
            Err(Rejection::BadSignature)
        } else {
            match ShardAction::decode(tx.action()) {
                Err(e) => Err(Rejection::MalformedAction(e.to_string())),
                Ok(action) => match apply(&mut state, shard_id, block.height, tx, &action) {
                    Ok(applied) => Ok(applied),
                    Err(Stop::Refused(r)) => Err(r),
                    Err(Stop::Unreadable(e)) => return Err(e),
                },
            }
        };
        receipts.push(TxReceipt {
            tx_hash: tx.hash(),
            outcome: outcome.map_err(|r| Refusal::from(&r)),
        });
    }
    Ok(ExecutedBlock {
        writes: state.writes,
        receipts,
    })
}

/// Why a transaction stopped: refused (its receipt says why), or the state could not be read
/// (the whole block stops on this node).
enum Stop {
    Refused(Rejection),
    Unreadable(StateError),
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Stop {
        Stop::Refused(r)
    }
}

impl From<StateError> for Stop {
    fn from(e: StateError) -> Stop {
        match e {
            // The same bytes on every replica: a deterministic refusal.
            StateError::Corrupt(_) => Stop::Refused(Rejection::CorruptState),
            StateError::Store(_) => Stop::Unreadable(e),
        }
    }
}

/// Writes of one transaction, applied only when every check passed.
type Writes = Vec<(StateKey, Option<Vec<u8>>)>;

fn put(writes: &mut Writes, key: StateKey, record: &impl Message) {
    writes.push((key, Some(record.encode_to_vec())));
}

fn read<M: Message + Default, V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    key: &StateKey,
) -> Result<Option<M>, Stop> {
    Ok(decode_at(state, key)?)
}

fn apply<V: StateView + ?Sized>(
    state: &mut Overlay<'_, V>,
    shard_id: &str,
    height: u64,
    tx: &Transaction,
    action: &ShardAction,
) -> Result<Applied, Stop> {
    let account_key = StateKey::account(&tx.sender());
    let account: pb::Account =
        read(state, &account_key)?.ok_or(Stop::Refused(Rejection::UnknownAccount))?;
    let bad_nonce = Rejection::BadNonce {
        expected: account.next_nonce,
        got: tx.nonce(),
    };
    if tx.nonce() != account.next_nonce {
        return Err(bad_nonce.into());
    }
    let next_nonce = account.next_nonce.checked_add(1).ok_or(bad_nonce)?;
    let mut writes = Writes::new();
    let outcome = act(state, shard_id, height, tx, action, &account, &mut writes);
    if outcome.is_ok() {
        for (k, v) in writes {
            match v {
                Some(v) => state.put(k, v),
                None => state.delete(k),
            }
        }
    }
    // The nonce is consumed whatever the action's fate, so signed bytes count once. The
    // sender's record is re-read after the action's writes: a certified update may just have
    // cleared (or granted) the sender's own role.
    let mut account: pb::Account = read(state, &account_key)?.unwrap_or(account);
    account.next_nonce = next_nonce;
    state.put(account_key, account.encode_to_vec());
    outcome
}

/// The action's own rules; writes go to `writes` and are applied only when it succeeds.
fn act<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    shard_id: &str,
    height: u64,
    tx: &Transaction,
    action: &ShardAction,
    account: &pb::Account,
    writes: &mut Writes,
) -> Result<Applied, Stop> {
    let membership: pb::ShardMembership =
        read(state, &StateKey::shard_members())?.ok_or(Stop::Refused(Rejection::CorruptState))?;
    match action {
        ShardAction::PutRecord {
            collection,
            key,
            commitment,
            ciphertext,
            schema,
        } => {
            require_writer(&membership, account, "write records")?;
            let (collection, key) = (collection.as_str(), key.as_str());
            let latest_key = StateKey::record(collection, key);
            let latest: Option<pb::RecordVersion> = read(state, &latest_key)?;
            let (owner_org, version) = match latest {
                None => (account.org.clone(), 1),
                Some(latest) => {
                    // The org that first wrote a key owns it: another org's version would pass
                    // for the owner's record.
                    if latest.owner_org != account.org {
                        return Err(Rejection::NotTheOwner(latest.owner_org).into());
                    }
                    let next = latest.version.checked_add(1);
                    (latest.owner_org, next.ok_or(Rejection::CorruptState)?)
                }
            };
            let record = pb::RecordVersion {
                owner_org,
                version,
                commitment: commitment.0.to_vec(),
                ciphertext: ciphertext.clone(),
                schema: schema.as_str().to_string(),
                sender: tx.sender().0.to_vec(),
                height,
                tx_hash: tx.hash().0.to_vec(),
            };
            put(
                writes,
                StateKey::record_version(collection, key, version),
                &record,
            );
            put(writes, latest_key, &record);
            Ok(Applied {
                facts: vec![("version", version)],
            })
        }
        ShardAction::Anchor { digest, tag } => {
            require_writer(&membership, account, "anchor")?;
            let anchor_key = StateKey::anchor(digest);
            if state.get(&anchor_key)?.is_some() {
                return Err(Rejection::AlreadyAnchored.into());
            }
            let record = pb::AnchorRecord {
                sender: tx.sender().0.to_vec(),
                tag: tag.as_str().to_string(),
                tx_hash: tx.hash().0.to_vec(),
            };
            put(writes, anchor_key, &record);
            Ok(Applied::default())
        }
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes,
            values,
        } => update::apply(
            state,
            update::Update {
                shard_id,
                height,
                headers,
                commit_qc,
                epoch_changes,
                values,
            },
            membership,
            writes,
        ),
    }
}

/// Only accounts with the member role, of an org that is a member of an open shard, write.
fn require_writer(
    membership: &pb::ShardMembership,
    account: &pb::Account,
    action: &'static str,
) -> Result<(), Stop> {
    if membership.status() != ShardStatus::Active {
        return Err(Rejection::ShardClosed.into());
    }
    if account.role() != Role::Member {
        return Err(Rejection::RoleMayNot {
            action,
            role: account.role(),
        }
        .into());
    }
    if !membership.orgs.iter().any(|o| o.org == account.org) {
        return Err(Rejection::NotAMember(account.org.clone()).into());
    }
    Ok(())
}
