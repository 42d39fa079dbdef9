//! The beacon application: the consortium registry and the evidence index.
//!
//! Genesis registers member orgs with their accounts (plus operator, regulator and bank
//! accounts) and the governance parameters. Transactions:
//! - `Anchor` — a member account records a 32-byte evidence digest with a short tag;
//! - `AttestIdentity` — an operator account (the identity service's verifier) records a salted
//!   commitment to the real-name identity it checked for an org key;
//! - `Propose` — a member or operator opens a proposal: admit an attested org, remove a member,
//!   change a governance parameter;
//! - `Vote` — a member org votes once on an open, unexpired proposal; when the yes-votes reach the
//!   threshold the proposal passes and takes effect in the same transaction; when they no longer
//!   can, it is rejected;
//! - `RevokeCertificate` — an operator (the consortium CA) revokes a certificate serial.
//!
//! Every transaction is checked in order, and every refusal gives a receipt saying why:
//! 1. the transaction is for this chain and its signature verifies;
//! 2. the sender is a registered account;
//! 3. its nonce is exactly the account's next nonce;
//! 4. the action's own rules (role, membership, proposal state, ...), all checked before any
//!    write.
//!
//! A transaction refused by checks 1–3 changes nothing. Past them, the sender's nonce is
//! consumed whatever happens next, so signed bytes count once and cannot be replayed when the
//! refusal no longer holds; a refused action writes nothing else. Applied transactions also
//! write their records. Only keys,
//! hashes, org ids and salted commitments are written: never personal data.

mod app;
mod reads;

pub use app::{BeaconApp, read_committee, read_shard};
pub use reads::*;

use crate::state::{Overlay, StateError, StateKey, StateView, WriteSet, decode_at};
use prost::Message;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use trellis_types::actions::proposal_kind_to_pb;
use trellis_types::pb::{self, MemberStatus, ProposalStatus, Role};
use trellis_types::{BeaconAction, Digest, ProposalKind, PublicKey, Transaction};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisAccount {
    pub key: PublicKey,
    pub org: String,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisNode {
    pub key: PublicKey,
    pub org: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisShardSpec {
    pub shard_id: String,
    pub members: Vec<String>,
    pub committee: Vec<PublicKey>,
}

/// Governance parameters (see `trellis.v1.GovernanceParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Governance {
    pub approval_num: u32,
    pub approval_den: u32,
    pub proposal_ttl_blocks: u64,
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            approval_num: 2,
            approval_den: 3,
            proposal_ttl_blocks: trellis_types::genesis::DEFAULT_PROPOSAL_TTL_BLOCKS,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconGenesis {
    pub chain_id: String,
    /// The committee of epoch 0, in order: the beacon's first decision for itself.
    pub committee: Vec<PublicKey>,
    pub accounts: Vec<GenesisAccount>,
    /// Nodes with the org each belongs to (the beacon's validators and the shards').
    pub nodes: Vec<GenesisNode>,
    /// Shards present from genesis.
    pub shards: Vec<GenesisShardSpec>,
    pub governance: Governance,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("account {0:?} is listed twice")]
    DuplicateAccount(PublicKey),
    #[error("account {0:?} has no role")]
    NoRole(PublicKey),
    #[error("the chain id is empty")]
    NoChainId,
    #[error("org id {0:?} is not valid")]
    BadOrg(String),
    #[error("governance parameters are not valid")]
    BadGovernance,
    #[error("node {0:?} is listed twice with different orgs")]
    NodeOrgs(PublicKey),
    #[error("shard {0:?} is not valid: {1}")]
    BadShard(String, &'static str),
}

impl BeaconGenesis {
    /// The initial state.
    pub fn write_set(&self) -> Result<WriteSet, GenesisError> {
        if self.chain_id.is_empty() {
            return Err(GenesisError::NoChainId);
        }
        let g = self.governance;
        let threshold = format!("{}/{}", g.approval_num, g.approval_den);
        if parse_threshold(&threshold).is_none() || g.proposal_ttl_blocks == 0 {
            return Err(GenesisError::BadGovernance);
        }
        let mut seen = BTreeSet::new();
        let mut writes = WriteSet::new();
        let mut members: BTreeMap<&str, Vec<Vec<u8>>> = BTreeMap::new();
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
            if a.role == Role::Member {
                if trellis_types::OrgId::parse(&a.org, "org").is_err() {
                    return Err(GenesisError::BadOrg(a.org.clone()));
                }
                members.entry(&a.org).or_default().push(a.key.0.to_vec());
            }
        }
        for (org, keys) in &members {
            let member = pb::Member {
                org: org.to_string(),
                status: MemberStatus::Active as i32,
                keys: keys.clone(),
                ..Default::default()
            };
            writes.insert(StateKey::member(org), Some(member.encode_to_vec()));
        }
        let index = pb::MemberIndex {
            orgs: members.keys().map(|o| o.to_string()).collect(),
        };
        writes.insert(StateKey::member_index(), Some(index.encode_to_vec()));
        let params = pb::GovernanceParams {
            approval_num: g.approval_num,
            approval_den: g.approval_den,
            proposal_ttl_blocks: g.proposal_ttl_blocks,
        };
        writes.insert(StateKey::governance_params(), Some(params.encode_to_vec()));
        let committee = |chain_id: &str, members: &[PublicKey]| pb::ChainCommittee {
            chain_id: chain_id.to_string(),
            members: members.iter().map(|k| k.0.to_vec()).collect(),
            decided_height: 0,
        };
        writes.insert(
            StateKey::committee(&self.chain_id),
            Some(committee(&self.chain_id, &self.committee).encode_to_vec()),
        );
        let mut nodes: BTreeMap<PublicKey, &GenesisNode> = BTreeMap::new();
        for n in &self.nodes {
            if let Some(first) = nodes.insert(n.key, n)
                && first.org != n.org
            {
                return Err(GenesisError::NodeOrgs(n.key));
            }
        }
        for n in nodes.values() {
            let record = pb::NodeRecord {
                org: n.org.clone(),
                name: n.name.clone(),
            };
            writes.insert(StateKey::node(&n.key), Some(record.encode_to_vec()));
        }
        let mut shard_ids = BTreeSet::new();
        for shard in &self.shards {
            let bad = |why| GenesisError::BadShard(shard.shard_id.clone(), why);
            if shard.shard_id == self.chain_id || !shard_ids.insert(shard.shard_id.clone()) {
                return Err(bad("its id is taken"));
            }
            let mut members = shard.members.clone();
            members.sort();
            members.dedup();
            if members.is_empty() || members.len() != shard.members.len() {
                return Err(bad("it needs distinct member orgs"));
            }
            let is_member_org = |org: &String| {
                self.accounts
                    .iter()
                    .any(|a| a.org == *org && a.role == Role::Member)
            };
            if !members.iter().all(is_member_org) {
                return Err(bad("a member org has no member account"));
            }
            if shard.committee.is_empty() {
                return Err(bad("it needs a committee"));
            }
            let record = pb::ShardRecord {
                shard_id: shard.shard_id.clone(),
                members,
                status: pb::ShardStatus::Active as i32,
                created_height: 0,
                proposal_id: 0,
                closed_height: 0,
            };
            writes.insert(
                StateKey::shard(&shard.shard_id),
                Some(record.encode_to_vec()),
            );
            writes.insert(
                StateKey::committee(&shard.shard_id),
                Some(committee(&shard.shard_id, &shard.committee).encode_to_vec()),
            );
        }
        let index = pb::ShardIndex {
            shards: shard_ids.into_iter().collect(),
        };
        writes.insert(StateKey::shard_index(), Some(index.encode_to_vec()));
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
    #[error("accounts with role {role:?} may not {action}")]
    RoleMayNot { action: &'static str, role: Role },
    #[error("the sender's org is not an active member")]
    NotAMember,
    #[error("org {0} is already a member")]
    AlreadyMember(String),
    #[error("org {0} is not an active member")]
    UnknownMember(String),
    #[error("the org key is already a registered account")]
    KeyInUse,
    #[error("the org key has no identity attestation")]
    NoAttestation,
    #[error("only the verifier that attested the org key may propose its admission")]
    NotTheVerifier,
    #[error("proposal {0} about this org is still open")]
    ProposalOpen(u64),
    #[error("removing the last member would leave nobody to govern")]
    LastMember,
    #[error("parameter {name}: {reason}")]
    BadParameter { name: String, reason: &'static str },
    #[error("proposal {0} does not exist")]
    UnknownProposal(u64),
    #[error("proposal {0} is already decided")]
    ProposalClosed(u64),
    #[error("proposal {id} expired at height {expires_height}")]
    ProposalExpired { id: u64, expires_height: u64 },
    #[error("org {0} already voted on this proposal")]
    AlreadyVoted(String),
    #[error("certificate serial is already revoked")]
    AlreadyRevoked,
    #[error("stored record is unreadable")]
    CorruptState,
    #[error("the action is not a beacon action: {0}")]
    MalformedAction(String),
}

impl Rejection {
    /// A stable, machine-readable name for the rejection (clients map it to their errors).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::WrongChain => "wrong-chain",
            Rejection::BadSignature => "bad-signature",
            Rejection::UnknownAccount => "unknown-account",
            Rejection::BadNonce { .. } => "bad-nonce",
            Rejection::RoleMayNotAnchor(_) | Rejection::RoleMayNot { .. } => "role-not-allowed",
            Rejection::AlreadyAnchored => "already-anchored",
            Rejection::NotAMember => "not-a-member",
            Rejection::AlreadyMember(_) => "already-member",
            Rejection::UnknownMember(_) => "unknown-member",
            Rejection::KeyInUse => "key-in-use",
            Rejection::NoAttestation => "no-attestation",
            Rejection::NotTheVerifier => "not-the-verifier",
            Rejection::ProposalOpen(_) => "proposal-open",
            Rejection::LastMember => "last-member",
            Rejection::BadParameter { .. } => "bad-parameter",
            Rejection::UnknownProposal(_) => "unknown-proposal",
            Rejection::ProposalClosed(_) => "proposal-closed",
            Rejection::ProposalExpired { .. } => "proposal-expired",
            Rejection::AlreadyVoted(_) => "already-voted",
            Rejection::AlreadyRevoked => "already-revoked",
            Rejection::CorruptState => "corrupt-state",
            Rejection::MalformedAction(_) => "malformed-action",
        }
    }
}

/// What an applied transaction did beyond raising its sender's nonce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The proposal the transaction opened or voted on.
    pub proposal_id: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub tx_hash: Digest,
    pub outcome: Result<Applied, Rejection>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    pub writes: WriteSet,
    pub receipts: Vec<Receipt>,
}

pub fn read_account(
    view: &(impl StateView + ?Sized),
    key: &PublicKey,
) -> Result<Option<pb::Account>, StateError> {
    decode_at(view, &StateKey::account(key))
}

pub fn read_anchor(
    view: &(impl StateView + ?Sized),
    digest: &Digest,
) -> Result<Option<pb::AnchorRecord>, StateError> {
    decode_at(view, &StateKey::anchor(digest))
}

pub fn read_member(
    view: &(impl StateView + ?Sized),
    org: &str,
) -> Result<Option<pb::Member>, StateError> {
    decode_at(view, &StateKey::member(org))
}

/// Every org ever admitted (empty before the first).
pub fn read_member_index(view: &(impl StateView + ?Sized)) -> Result<pb::MemberIndex, StateError> {
    Ok(decode_at(view, &StateKey::member_index())?.unwrap_or_default())
}

pub fn read_attestation(
    view: &(impl StateView + ?Sized),
    key: &PublicKey,
) -> Result<Option<pb::Attestation>, StateError> {
    decode_at(view, &StateKey::attestation(key))
}

/// The governance parameters; the defaults where genesis wrote none.
pub fn read_governance(view: &(impl StateView + ?Sized)) -> Result<Governance, StateError> {
    Ok(
        decode_at::<pb::GovernanceParams>(view, &StateKey::governance_params())?
            .map(|p| Governance {
                approval_num: p.approval_num,
                approval_den: p.approval_den,
                proposal_ttl_blocks: p.proposal_ttl_blocks,
            })
            .unwrap_or_default(),
    )
}

pub fn read_proposal(
    view: &(impl StateView + ?Sized),
    id: u64,
) -> Result<Option<pb::GovernanceProposal>, StateError> {
    decode_at(view, &StateKey::proposal(id))
}

/// The highest proposal id handed out (0 when none).
pub fn read_last_proposal_id(view: &(impl StateView + ?Sized)) -> Result<u64, StateError> {
    Ok(
        decode_at::<pb::ProposalCounter>(view, &StateKey::proposal_counter())?
            .map(|c| c.last)
            .unwrap_or(0),
    )
}

/// Revoked certificate serials (empty before the first revocation).
pub fn read_revocations(
    view: &(impl StateView + ?Sized),
) -> Result<pb::RevocationList, StateError> {
    Ok(decode_at(view, &StateKey::revocations())?.unwrap_or_default())
}

/// How a proposal stands at `height`: its recorded status, or expired when it is still open
/// past its last voting height.
pub fn proposal_standing(p: &pb::GovernanceProposal, height: u64) -> &'static str {
    match p.status() {
        ProposalStatus::Passed => "passed",
        ProposalStatus::Rejected => "rejected",
        ProposalStatus::Open if height > p.expires_height => "expired",
        _ => "open",
    }
}

/// Executes a block's transactions in order on top of `view`; `height` is the block's height
/// (proposals expire by height).
pub fn execute_block(
    chain_id: &str,
    height: u64,
    view: &(impl StateView + ?Sized),
    txs: &[Transaction],
) -> Result<BlockOutcome, StateError> {
    execute_block_checked(chain_id, height, view, txs, |_| false)
}

/// [`execute_block`] where `already_verified(i)` says that this node has already verified the
/// signature of `txs[i]` (at admission to its pool). Verification is a pure function of the
/// transaction (ZIP-215), so skipping it for those changes no outcome; it only saves the work.
/// The transactions may be shared (`Arc<Transaction>`, as a node's pool holds them).
///
/// A read the state store fails stops the block: `Err`, and nothing of it is to be written.
pub fn execute_block_checked<T: Borrow<Transaction>>(
    chain_id: &str,
    height: u64,
    view: &(impl StateView + ?Sized),
    txs: &[T],
    already_verified: impl Fn(usize) -> bool,
) -> Result<BlockOutcome, StateError> {
    let unchecked: Vec<usize> = (0..txs.len()).filter(|i| !already_verified(*i)).collect();
    let verdicts = Transaction::verify_batch(unchecked.iter().map(|i| txs[*i].borrow()));
    let mut signatures: Vec<Result<(), trellis_types::TxError>> = vec![Ok(()); txs.len()];
    for (i, verdict) in unchecked.into_iter().zip(verdicts) {
        signatures[i] = verdict;
    }
    let mut state = Overlay::new(view);
    let mut receipts = Vec::with_capacity(txs.len());
    for (tx, signature) in txs.iter().zip(signatures) {
        let tx: &Transaction = tx.borrow();
        let outcome = if tx.chain_id() != chain_id {
            Err(Rejection::WrongChain)
        } else if signature.is_err() {
            Err(Rejection::BadSignature)
        } else {
            match BeaconAction::decode(tx.action()) {
                Err(e) => Err(Rejection::MalformedAction(e.to_string())),
                Ok(action) => match apply(&mut state, height, tx, &action) {
                    Ok(applied) => Ok(applied),
                    Err(Stop::Refused(r)) => Err(r),
                    Err(Stop::Unreadable(e)) => return Err(e),
                },
            }
        };
        receipts.push(Receipt {
            tx_hash: tx.hash(),
            outcome,
        });
    }
    Ok(BlockOutcome {
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
    height: u64,
    tx: &Transaction,
    action: &BeaconAction,
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
    let outcome = act(state, height, tx, action, &account, &mut writes);
    if outcome.is_ok() {
        for (k, v) in writes {
            match v {
                Some(v) => state.put(k, v),
                None => state.delete(k),
            }
        }
    }
    // The nonce is consumed whatever the action's fate, so signed bytes count once: a refused
    // action cannot be replayed later, when what refused it (an open proposal, a missing one)
    // no longer holds. The sender's record is re-read after the action's writes: a vote that
    // removes the sender's own org has just cleared its role.
    let mut account: pb::Account = read(state, &account_key)?.unwrap_or(account);
    account.next_nonce = next_nonce;
    state.put(account_key, account.encode_to_vec());
    outcome
}

/// The action's own rules; writes go to `writes` and are applied only when it succeeds.
fn act<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    height: u64,
    tx: &Transaction,
    action: &BeaconAction,
    account: &pb::Account,
    writes: &mut Writes,
) -> Result<Applied, Stop> {
    let role = account.role();
    let applied = match action {
        BeaconAction::Anchor { digest, tag } => {
            if role != Role::Member {
                return Err(Stop::Refused(Rejection::RoleMayNotAnchor(role)));
            }
            let anchor_key = StateKey::anchor(digest);
            if state.get(&anchor_key)?.is_some() {
                return Err(Stop::Refused(Rejection::AlreadyAnchored));
            }
            let record = pb::AnchorRecord {
                sender: tx.sender().0.to_vec(),
                tag: tag.as_str().to_string(),
                tx_hash: tx.hash().0.to_vec(),
            };
            put(writes, anchor_key, &record);
            Applied::default()
        }
        BeaconAction::AttestIdentity {
            subject,
            commitment,
            level,
        } => {
            require_role(role, Role::Operator, "attest identities")?;
            let record = pb::Attestation {
                commitment: commitment.0.to_vec(),
                level: *level,
                verifier: tx.sender().0.to_vec(),
                height,
                tx_hash: tx.hash().0.to_vec(),
            };
            put(writes, StateKey::attestation(subject), &record);
            Applied::default()
        }
        BeaconAction::Propose(kind) => {
            if role != Role::Operator {
                require_active_member(state, account, "open proposals")?;
            }
            let id = propose(state, height, tx, kind, writes)?;
            Applied {
                proposal_id: Some(id),
            }
        }
        BeaconAction::Vote {
            proposal_id,
            approve,
        } => {
            require_active_member(state, account, "vote")?;
            vote(state, height, &account.org, *proposal_id, *approve, writes)?;
            Applied {
                proposal_id: Some(*proposal_id),
            }
        }
        BeaconAction::RevokeCertificate { serial, reason } => {
            require_role(role, Role::Operator, "revoke certificates")?;
            let mut list: pb::RevocationList =
                read(state, &StateKey::revocations())?.unwrap_or_default();
            let at = match list
                .entries
                .binary_search_by(|e| e.serial.as_slice().cmp(serial.as_slice()))
            {
                Ok(_) => return Err(Stop::Refused(Rejection::AlreadyRevoked)),
                Err(at) => at,
            };
            list.entries.insert(
                at,
                pb::Revocation {
                    serial: serial.clone(),
                    reason: *reason,
                    height,
                    revoker: tx.sender().0.to_vec(),
                },
            );
            put(writes, StateKey::revocations(), &list);
            Applied::default()
        }
    };
    Ok(applied)
}

fn require_role(role: Role, needed: Role, action: &'static str) -> Result<(), Stop> {
    if role == needed {
        Ok(())
    } else {
        Err(Stop::Refused(Rejection::RoleMayNot { action, role }))
    }
}

fn require_active_member<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    account: &pb::Account,
    action: &'static str,
) -> Result<(), Stop> {
    if account.role() != Role::Member {
        return Err(Stop::Refused(Rejection::RoleMayNot {
            action,
            role: account.role(),
        }));
    }
    match read::<pb::Member, V>(state, &StateKey::member(&account.org))? {
        Some(m) if m.status() == MemberStatus::Active => Ok(()),
        _ => Err(Stop::Refused(Rejection::NotAMember)),
    }
}

fn active_members<V: StateView + ?Sized>(state: &Overlay<'_, V>) -> Result<u64, Stop> {
    let index: pb::MemberIndex = read(state, &StateKey::member_index())?.unwrap_or_default();
    let mut n = 0;
    for org in &index.orgs {
        if let Some(m) = read::<pb::Member, V>(state, &StateKey::member(org))?
            && m.status() == MemberStatus::Active
        {
            n += 1;
        }
    }
    Ok(n)
}

/// The id of `org`'s proposal that is still open and unexpired, if any.
fn open_proposal_for<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    height: u64,
    org: &str,
) -> Result<Option<u64>, Stop> {
    let Some(c) = read::<pb::ProposalCounter, V>(state, &StateKey::open_proposal(org))? else {
        return Ok(None);
    };
    let p: Option<pb::GovernanceProposal> = read(state, &StateKey::proposal(c.last))?;
    Ok(p.filter(|p| proposal_standing(p, height) == "open")
        .map(|p| p.id))
}

/// Parses an `approval_threshold` value "n/d": 1 ≤ n ≤ d ≤ 1000 and more than half.
pub fn parse_threshold(value: &str) -> Option<(u32, u32)> {
    let (n, d) = value.split_once('/')?;
    let (n, d): (u32, u32) = (n.parse().ok()?, d.parse().ok()?);
    // A threshold of half or less would let two disjoint halves pass contradicting proposals.
    (n >= 1 && n <= d && d <= 1000 && 2 * n > d).then_some((n, d))
}

fn check_parameter(name: &str, value: &str) -> Result<(), Rejection> {
    let bad = |reason| Rejection::BadParameter {
        name: name.to_string(),
        reason,
    };
    match name {
        "approval_threshold" => parse_threshold(value)
            .map(|_| ())
            .ok_or_else(|| bad("must be n/d with d ≤ 1000 and more than half")),
        "proposal_ttl_blocks" => match value.parse::<u64>() {
            Ok(v) if (1..=100_000_000).contains(&v) => Ok(()),
            _ => Err(bad("must be an integer from 1 to 100000000")),
        },
        _ => Err(bad("is not a governance parameter")),
    }
}

fn propose<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    height: u64,
    tx: &Transaction,
    kind: &ProposalKind,
    writes: &mut Writes,
) -> Result<u64, Stop> {
    let subject_org = match kind {
        ProposalKind::AdmitMember { org, org_key } => {
            if let Some(m) = read::<pb::Member, V>(state, &StateKey::member(org.as_str()))?
                && m.status() == MemberStatus::Active
            {
                return Err(Stop::Refused(Rejection::AlreadyMember(org.to_string())));
            }
            if state.get(&StateKey::account(org_key))?.is_some() {
                return Err(Stop::Refused(Rejection::KeyInUse));
            }
            let attestation: pb::Attestation = read(state, &StateKey::attestation(org_key))?
                .ok_or(Stop::Refused(Rejection::NoAttestation))?;
            // The verifier that checked the identity names the org it belongs to: nobody else
            // may pair that attested key with an org id (front-running or mislabelling it).
            if attestation.verifier != tx.sender().0 {
                return Err(Stop::Refused(Rejection::NotTheVerifier));
            }
            Some(org.as_str())
        }
        ProposalKind::RemoveMember { org } => {
            match read::<pb::Member, V>(state, &StateKey::member(org.as_str()))? {
                Some(m) if m.status() == MemberStatus::Active => {}
                _ => return Err(Stop::Refused(Rejection::UnknownMember(org.to_string()))),
            }
            if active_members(state)? <= 1 {
                return Err(Stop::Refused(Rejection::LastMember));
            }
            Some(org.as_str())
        }
        ProposalKind::SetParameter { name, value } => {
            check_parameter(name, value)?;
            None
        }
    };
    if let Some(org) = subject_org
        && let Some(open) = open_proposal_for(state, height, org)?
    {
        return Err(Stop::Refused(Rejection::ProposalOpen(open)));
    }
    let last = read::<pb::ProposalCounter, V>(state, &StateKey::proposal_counter())?
        .map(|c| c.last)
        .unwrap_or(0);
    let id = last + 1;
    let g = read_governance(state)?;
    let proposal = pb::GovernanceProposal {
        id,
        proposer: tx.sender().0.to_vec(),
        kind: Some(match proposal_kind_to_pb(kind) {
            pb::propose::Kind::AdmitMember(a) => pb::governance_proposal::Kind::AdmitMember(a),
            pb::propose::Kind::RemoveMember(r) => pb::governance_proposal::Kind::RemoveMember(r),
            pb::propose::Kind::SetParameter(s) => pb::governance_proposal::Kind::SetParameter(s),
        }),
        created_height: height,
        expires_height: height.saturating_add(g.proposal_ttl_blocks),
        electorate: active_members(state)?,
        yes: vec![],
        no: vec![],
        status: ProposalStatus::Open as i32,
        decided_height: 0,
        approval_num: g.approval_num,
        approval_den: g.approval_den,
    };
    put(writes, StateKey::proposal(id), &proposal);
    put(
        writes,
        StateKey::proposal_counter(),
        &pb::ProposalCounter { last: id },
    );
    if let Some(org) = subject_org {
        put(
            writes,
            StateKey::open_proposal(org),
            &pb::ProposalCounter { last: id },
        );
    }
    Ok(id)
}

fn vote<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    height: u64,
    voter_org: &str,
    id: u64,
    approve: bool,
    writes: &mut Writes,
) -> Result<(), Stop> {
    let mut p: pb::GovernanceProposal = read(state, &StateKey::proposal(id))?
        .ok_or(Stop::Refused(Rejection::UnknownProposal(id)))?;
    match proposal_standing(&p, height) {
        "open" => {}
        "expired" => {
            return Err(Stop::Refused(Rejection::ProposalExpired {
                id,
                expires_height: p.expires_height,
            }));
        }
        _ => return Err(Stop::Refused(Rejection::ProposalClosed(id))),
    }
    if p.yes.iter().chain(&p.no).any(|o| o == voter_org) {
        return Err(Stop::Refused(Rejection::AlreadyVoted(
            voter_org.to_string(),
        )));
    }
    if approve {
        p.yes.push(voter_org.to_string());
    } else {
        p.no.push(voter_org.to_string());
    }
    // Membership may have changed since the proposal opened: only orgs that are members now
    // count, both in the electorate and among the votes.
    let mut active = BTreeSet::new();
    let index: pb::MemberIndex = read(state, &StateKey::member_index())?.unwrap_or_default();
    for org in &index.orgs {
        if let Some(m) = read::<pb::Member, V>(state, &StateKey::member(org))?
            && m.status() == MemberStatus::Active
        {
            active.insert(org.clone());
        }
    }
    p.electorate = active.len() as u64;
    let (num, den) = (u128::from(p.approval_num), u128::from(p.approval_den));
    let electorate = u128::from(p.electorate);
    let yes = p.yes.iter().filter(|o| active.contains(*o)).count() as u128;
    let no = p.no.iter().filter(|o| active.contains(*o)).count() as u128;
    if yes * den >= num * electorate {
        p.status = ProposalStatus::Passed as i32;
        p.decided_height = height;
        // An org admitted by another proposal meanwhile may hold the key now: then this one
        // cannot take effect and is recorded as rejected instead.
        if !enact(state, height, &p, writes)? {
            p.status = ProposalStatus::Rejected as i32;
        }
    } else if electorate.saturating_sub(no) * den < num * electorate {
        // Even if every remaining member voted yes the threshold is out of reach.
        p.status = ProposalStatus::Rejected as i32;
        p.decided_height = height;
    }
    if p.status() != ProposalStatus::Open
        && let Some(org) = proposal_org(&p)
    {
        writes.push((StateKey::open_proposal(&org), None));
    }
    put(writes, StateKey::proposal(id), &p);
    Ok(())
}

fn proposal_org(p: &pb::GovernanceProposal) -> Option<String> {
    match &p.kind {
        Some(pb::governance_proposal::Kind::AdmitMember(a)) => Some(a.org.clone()),
        Some(pb::governance_proposal::Kind::RemoveMember(r)) => Some(r.org.clone()),
        _ => None,
    }
}

/// Applies a passed proposal's effect; false when it can no longer take effect.
fn enact<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    height: u64,
    p: &pb::GovernanceProposal,
    writes: &mut Writes,
) -> Result<bool, Stop> {
    match &p.kind {
        Some(pb::governance_proposal::Kind::AdmitMember(a)) => {
            let Ok(key) = <[u8; 32]>::try_from(a.org_key.as_slice()) else {
                return Err(Stop::Refused(Rejection::CorruptState));
            };
            let key = PublicKey(key);
            if state.get(&StateKey::account(&key))?.is_some() {
                return Ok(false);
            }
            let member = pb::Member {
                org: a.org.clone(),
                status: MemberStatus::Active as i32,
                keys: vec![key.0.to_vec()],
                admitted_height: height,
                removed_height: 0,
                proposal_id: p.id,
            };
            put(writes, StateKey::member(&a.org), &member);
            let mut index: pb::MemberIndex =
                read(state, &StateKey::member_index())?.unwrap_or_default();
            if let Err(at) = index.orgs.binary_search(&a.org) {
                index.orgs.insert(at, a.org.clone());
                put(writes, StateKey::member_index(), &index);
            }
            let account = pb::Account {
                org: a.org.clone(),
                role: Role::Member as i32,
                next_nonce: 0,
            };
            put(writes, StateKey::account(&key), &account);
        }
        Some(pb::governance_proposal::Kind::RemoveMember(r)) => {
            let Some(mut member) = read::<pb::Member, V>(state, &StateKey::member(&r.org))? else {
                return Ok(false);
            };
            // Removals decided in parallel must not empty the consortium.
            if member.status() != MemberStatus::Active || active_members(state)? <= 1 {
                return Ok(false);
            }
            member.status = MemberStatus::Removed as i32;
            member.removed_height = height;
            member.proposal_id = p.id;
            for k in &member.keys {
                let Ok(key) = <[u8; 32]>::try_from(k.as_slice()) else {
                    return Err(Stop::Refused(Rejection::CorruptState));
                };
                let key = StateKey::account(&PublicKey(key));
                // The account stays (its nonce must never restart) but loses its role.
                if let Some(mut acct) = read::<pb::Account, V>(state, &key)? {
                    acct.role = Role::Unspecified as i32;
                    put(writes, key, &acct);
                }
            }
            put(writes, StateKey::member(&r.org), &member);
        }
        Some(pb::governance_proposal::Kind::SetParameter(s)) => {
            let mut g = read_governance(state)?;
            match s.name.as_str() {
                "approval_threshold" => match parse_threshold(&s.value) {
                    Some((n, d)) => (g.approval_num, g.approval_den) = (n, d),
                    None => return Ok(false),
                },
                "proposal_ttl_blocks" => match s.value.parse() {
                    Ok(v) => g.proposal_ttl_blocks = v,
                    Err(_) => return Ok(false),
                },
                _ => return Ok(false),
            }
            let params = pb::GovernanceParams {
                approval_num: g.approval_num,
                approval_den: g.approval_den,
                proposal_ttl_blocks: g.proposal_ttl_blocks,
            };
            put(writes, StateKey::governance_params(), &params);
        }
        None => return Err(Stop::Refused(Rejection::CorruptState)),
    }
    Ok(true)
}
