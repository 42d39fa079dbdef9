//! Certified updates: beacon state values entering the shard.
//!
//! The update is checked before anything is read from it:
//! 1. its beacon state height is above the last applied one (else `stale-update`: an older
//!    view of the beacon must not undo a newer one);
//! 2. its headers, certificate and epoch-change proofs lead from the trusted beacon committee
//!    to a certified beacon state ([`trellis_types::certified_state`]), and every value's proof
//!    holds under that state's root (else `bad-proof`);
//! 3. every value is one the shard takes: its own `shard/` record, `member/` records of orgs
//!    that are (then) its members, its own `committee/` record (else `not-for-this-shard`),
//!    present and well formed (else `bad-update`).
//!
//! Then it applies them: the shard record sets the member orgs and the status; an org that
//! leaves, or whose beacon record says removed, has its accounts' role cleared; an active
//! member's keys become member accounts (a new key starts at nonce 0, an existing account keeps
//! its nonce, which never restarts); the committee record becomes the next committee; the
//! trust moves to the certificate's epoch and committee.

use super::{Rejection, Stop, Writes, committee_of, put, read};
use crate::app::Applied;
use crate::state::{Overlay, StateKey, StateView};
use std::collections::{BTreeMap, BTreeSet};
use trellis_consensus::{BlockHeader, EpochChangeProof, QuorumCert};
use trellis_types::pb::{self, MemberStatus, Role, ShardStatus};
use trellis_types::{OrgId, ProvenValue, PublicKey, certified_state};

/// A certified update as the shard executes it.
pub(super) struct Update<'a> {
    pub shard_id: &'a str,
    /// The shard height executing it.
    pub height: u64,
    pub headers: &'a [BlockHeader],
    pub commit_qc: &'a QuorumCert,
    pub epoch_changes: &'a [EpochChangeProof],
    pub values: &'a [ProvenValue],
}

/// What the proven values say, sorted out by kind.
#[derive(Default)]
struct BeaconValues {
    shard: Option<pb::ShardRecord>,
    members: BTreeMap<String, pb::Member>,
    committee: Option<pb::ChainCommittee>,
}

fn bad(reason: String) -> Stop {
    Stop::Refused(Rejection::BadUpdate(reason))
}

fn not_ours(reason: String) -> Stop {
    Stop::Refused(Rejection::NotForThisShard(reason))
}

pub(super) fn apply<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    u: Update<'_>,
    mut membership: pb::ShardMembership,
    writes: &mut Writes,
) -> Result<Applied, Stop> {
    let trust: pb::BeaconTrust =
        read(state, &StateKey::beacon_trust())?.ok_or(Rejection::CorruptState)?;
    let trusted = committee_of(&trust.committee).ok_or(Rejection::CorruptState)?;
    // Decoding guarantees a first header; an empty list is refused by the proof check anyway.
    let claimed = u.headers.first().map_or(0, |h| h.state.height);
    if claimed <= trust.applied_state_height {
        return Err(Rejection::StaleUpdate {
            applied: trust.applied_state_height,
            got: claimed,
        }
        .into());
    }
    let certified = certified_state(
        &trust.beacon_chain_id,
        trust.epoch,
        &trusted,
        u.headers,
        u.commit_qc,
        u.epoch_changes,
    )
    .map_err(|e| Rejection::BadProof(format!("{} ({})", e, e.code())))?;
    for (i, v) in u.values.iter().enumerate() {
        v.proof
            .verify(&certified.state.root, &v.key, v.value.as_deref())
            .map_err(|e| Rejection::BadProof(format!("values[{i}]: {e}")))?;
    }
    let values = sort_values(u.shard_id, u.values)?;

    // Accounts touched, written once at the end: an org leaving and a key granted in the same
    // update must see each other's effect.
    let mut changed: BTreeMap<PublicKey, pb::Account> = BTreeMap::new();

    if let Some(record) = &values.shard {
        membership.status = match record.status() {
            ShardStatus::Active => ShardStatus::Active,
            ShardStatus::Closed => ShardStatus::Closed,
            ShardStatus::Unspecified => return Err(bad("the shard record has no status".into())),
        } as i32;
        let mut next = Vec::with_capacity(record.members.len());
        for org in &record.members {
            OrgId::parse(org, "org").map_err(|_| bad(format!("org id {org:?} is not valid")))?;
            // Orgs staying keep their keys; new ones have none until their record comes.
            let keys = membership
                .orgs
                .iter()
                .find(|o| &o.org == org)
                .map(|o| o.keys.clone())
                .unwrap_or_default();
            next.push(pb::ShardOrg {
                org: org.clone(),
                keys,
            });
        }
        if next.windows(2).any(|w| w[0].org >= w[1].org) {
            return Err(bad(
                "the shard's member orgs are not sorted and distinct".into()
            ));
        }
        for gone in membership
            .orgs
            .iter()
            .filter(|o| !record.members.contains(&o.org))
        {
            for key in keys_of(&gone.keys)? {
                clear_role(state, &mut changed, key)?;
            }
        }
        membership.orgs = next;
    }

    for (org, member) in &values.members {
        let Some(entry) = membership.orgs.iter_mut().find(|o| &o.org == org) else {
            return Err(not_ours(format!("org {org} is not a member of the shard")));
        };
        let old: BTreeSet<PublicKey> = keys_of(&entry.keys)?.into_iter().collect();
        let new: BTreeSet<PublicKey> = if member.status() == MemberStatus::Active {
            keys_of(&member.keys)?.into_iter().collect()
        } else {
            // Removed on the beacon: no key of the org writes any more.
            BTreeSet::new()
        };
        for key in old.difference(&new) {
            clear_role(state, &mut changed, *key)?;
        }
        for key in &new {
            let granted = match current(state, &changed, *key)? {
                // An account never changes org: the beacon never reuses a key across orgs.
                Some(a) if a.org != *org => {
                    return Err(bad(format!(
                        "key {} of org {org} is an account of org {}",
                        hex::encode(key.0),
                        a.org
                    )));
                }
                Some(mut a) => {
                    a.role = Role::Member as i32;
                    a
                }
                None => pb::Account {
                    org: org.clone(),
                    role: Role::Member as i32,
                    next_nonce: 0,
                },
            };
            changed.insert(*key, granted);
        }
        entry.keys = new.iter().map(|k| k.0.to_vec()).collect();
    }

    for (key, acct) in changed {
        put(writes, StateKey::account(&key), &acct);
    }
    put(writes, StateKey::shard_members(), &membership);
    if let Some(committee) = &values.committee {
        put(writes, StateKey::next_committee(), committee);
    }
    let trust = pb::BeaconTrust {
        beacon_chain_id: trust.beacon_chain_id,
        epoch: certified.epoch,
        committee: certified
            .committee
            .members()
            .iter()
            .map(|k| k.0.to_vec())
            .collect(),
        applied_state_height: certified.state.height,
        applied_height: u.height,
    };
    put(writes, StateKey::beacon_trust(), &trust);
    Ok(Applied {
        facts: vec![
            ("beacon_state_height", certified.state.height),
            ("beacon_epoch", certified.epoch),
        ],
    })
}

/// Sorts the proven values by the record they hold; refuses a key the shard does not take and
/// a record that is absent or malformed.
fn sort_values(shard_id: &str, values: &[ProvenValue]) -> Result<BeaconValues, Stop> {
    use prost::Message as _;
    let mut out = BeaconValues::default();
    for v in values {
        let shown = crate::state::StateKey::from_bytes(v.key.clone()).to_string();
        let Some(bytes) = v.value.as_deref() else {
            // The beacon never deletes these records: an absent one says nothing to apply.
            return Err(bad(format!("`{shown}` holds nothing")));
        };
        let undecodable = || bad(format!("the record under `{shown}` does not decode"));
        if let Some(id) = v.key.strip_prefix(b"shard/") {
            if id != shard_id.as_bytes() {
                return Err(not_ours(format!("`{shown}` is another shard's record")));
            }
            let record = pb::ShardRecord::decode(bytes).map_err(|_| undecodable())?;
            if record.shard_id != shard_id {
                return Err(bad(format!("`{shown}` names shard {:?}", record.shard_id)));
            }
            out.shard = Some(record);
        } else if let Some(org) = v.key.strip_prefix(b"member/") {
            let member = pb::Member::decode(bytes).map_err(|_| undecodable())?;
            if member.org.as_bytes() != org {
                return Err(bad(format!("`{shown}` names org {:?}", member.org)));
            }
            out.members.insert(member.org.clone(), member);
        } else if let Some(chain) = v.key.strip_prefix(b"committee/") {
            if chain != shard_id.as_bytes() {
                return Err(not_ours(format!("`{shown}` is another chain's committee")));
            }
            let committee = pb::ChainCommittee::decode(bytes).map_err(|_| undecodable())?;
            if committee.chain_id != shard_id || committee_of(&committee.members).is_none() {
                return Err(bad(format!("`{shown}` is not a committee of this shard")));
            }
            out.committee = Some(committee);
        } else {
            return Err(not_ours(format!("the shard takes no `{shown}`")));
        }
    }
    Ok(out)
}

/// 32-byte keys from a record; anything else in a proven or stored record is refused.
fn keys_of(keys: &[Vec<u8>]) -> Result<Vec<PublicKey>, Stop> {
    keys.iter()
        .map(|k| {
            <[u8; 32]>::try_from(k.as_slice())
                .map(PublicKey)
                .map_err(|_| bad("a key is not 32 bytes".into()))
        })
        .collect()
}

/// An account as the update has left it so far.
fn current<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    changed: &BTreeMap<PublicKey, pb::Account>,
    key: PublicKey,
) -> Result<Option<pb::Account>, Stop> {
    match changed.get(&key) {
        Some(a) => Ok(Some(a.clone())),
        None => read(state, &StateKey::account(&key)),
    }
}

/// The account stays (its nonce must never restart) but can no longer write.
fn clear_role<V: StateView + ?Sized>(
    state: &Overlay<'_, V>,
    changed: &mut BTreeMap<PublicKey, pb::Account>,
    key: PublicKey,
) -> Result<(), Stop> {
    if let Some(mut a) = current(state, changed, key)? {
        a.role = Role::Unspecified as i32;
        changed.insert(key, a);
    }
    Ok(())
}
