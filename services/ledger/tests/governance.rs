//! Governance on the beacon: identity attestations, proposals, votes, thresholds, expiry,
//! admission and removal of members, parameter changes and certificate revocations. Every
//! refusal leaves state untouched and names its reason.

use trellis_ledger::beacon::{
    Applied, BeaconGenesis, GenesisAccount, Governance, Rejection, execute_block,
    proposal_standing, read_account, read_attestation, read_governance, read_member,
    read_member_index, read_proposal, read_revocations,
};
use trellis_ledger::state::MemoryState;
use trellis_types::pb::{MemberStatus, Role};
use trellis_types::{
    BeaconAction, Digest, OrgId, ProposalKind, PublicKey, Signer, Tag, Transaction,
};

const CHAIN: &str = "trellis-governance-test";
const OPERATOR: u8 = 10;
const REGULATOR: u8 = 11;
const NEWCOMER: u8 = 20;

fn signer(i: u8) -> Signer {
    Signer::from_seed([i; 32])
}

fn key(i: u8) -> PublicKey {
    signer(i).public_key()
}

fn org(s: &str) -> OrgId {
    OrgId::parse(s, "org").expect("valid org id")
}

/// Three member orgs (keys 1..=3), an operator and a regulator.
fn genesis(ttl: u64) -> BeaconGenesis {
    let account = |i: u8, org: &str, role| GenesisAccount {
        key: key(i),
        org: org.into(),
        role,
    };
    BeaconGenesis {
        chain_id: CHAIN.into(),
        nodes: vec![],
        shards: vec![],
        committee: vec![signer(200).public_key()],
        accounts: vec![
            account(1, "org-1", Role::Member),
            account(2, "org-2", Role::Member),
            account(3, "org-3", Role::Member),
            account(OPERATOR, "consortium", Role::Operator),
            account(REGULATOR, "regulator", Role::Regulator),
        ],
        governance: Governance {
            proposal_ttl_blocks: ttl,
            ..Governance::default()
        },
    }
}

/// A chain in memory: state, height and every account's next nonce.
struct Chain {
    state: MemoryState,
    height: u64,
}

impl Chain {
    fn new(ttl: u64) -> Chain {
        let mut state = MemoryState::default();
        state.apply(&genesis(ttl).write_set().expect("valid genesis"));
        Chain { state, height: 0 }
    }

    /// Signs `action` with account `i` at its next nonce and executes it in the next block.
    fn run(&mut self, i: u8, action: BeaconAction) -> Result<Applied, Rejection> {
        let nonce = read_account(&self.state, &key(i))
            .expect("state reads")
            .map_or(0, |a| a.next_nonce);
        let tx = Transaction::sign(CHAIN, &signer(i), nonce, action);
        self.height += 1;
        let before = self.state.clone();
        let out = execute_block(CHAIN, self.height, &self.state, &[tx]).expect("state reads");
        self.state.apply(&out.writes);
        let outcome = out.receipts[0].outcome.clone();
        if outcome.is_err() {
            // A refused action only consumes the sender's nonce (when it got that far).
            let mut expected = before.clone();
            if let Some(mut acct) = read_account(&before, &key(i)).expect("state reads") {
                acct.next_nonce += 1;
                expected.0.insert(
                    trellis_ledger::state::StateKey::account(&key(i)),
                    prost::Message::encode_to_vec(&acct),
                );
            }
            assert_eq!(self.state, expected, "a rejected transaction changed state");
        }
        outcome
    }

    fn attest(&mut self, subject: u8) -> Result<Applied, Rejection> {
        self.run(
            OPERATOR,
            BeaconAction::AttestIdentity {
                subject: key(subject),
                commitment: Digest([subject; 32]),
                level: 2,
            },
        )
    }

    fn propose(&mut self, by: u8, kind: ProposalKind) -> Result<u64, Rejection> {
        self.run(by, BeaconAction::Propose(kind))
            .map(|a| a.proposal_id.expect("a proposal id"))
    }

    fn vote(&mut self, by: u8, id: u64, approve: bool) -> Result<Applied, Rejection> {
        self.run(
            by,
            BeaconAction::Vote {
                proposal_id: id,
                approve,
            },
        )
    }

    fn standing(&self, id: u64) -> &'static str {
        proposal_standing(
            &read_proposal(&self.state, id)
                .expect("state reads")
                .expect("proposal"),
            self.height,
        )
    }
}

fn admit(o: &str, k: u8) -> ProposalKind {
    ProposalKind::AdmitMember {
        org: org(o),
        org_key: key(k),
    }
}

fn anchor(d: u8) -> BeaconAction {
    BeaconAction::Anchor {
        digest: Digest([d; 32]),
        tag: Tag::parse("t").expect("tag"),
    }
}

#[test]
fn genesis_registers_member_orgs_and_parameters() {
    let c = Chain::new(100);
    let index = read_member_index(&c.state).expect("state reads");
    assert_eq!(index.orgs, vec!["org-1", "org-2", "org-3"]);
    let m = read_member(&c.state, "org-2")
        .expect("state reads")
        .expect("member");
    assert_eq!(m.status(), MemberStatus::Active);
    assert_eq!(m.keys, vec![key(2).0.to_vec()]);
    assert!(
        read_member(&c.state, "consortium")
            .expect("state reads")
            .is_none(),
        "operators are not members"
    );
    let g = read_governance(&c.state).expect("state reads");
    assert_eq!((g.approval_num, g.approval_den), (2, 3));
    assert_eq!(g.proposal_ttl_blocks, 100);
}

#[test]
fn an_attested_org_is_admitted_by_two_of_three_members_and_can_then_anchor() {
    let mut c = Chain::new(100);
    // Without an attestation nobody may propose it.
    assert_eq!(
        c.propose(OPERATOR, admit("org-4", NEWCOMER)),
        Err(Rejection::NoAttestation)
    );
    c.attest(NEWCOMER).expect("operator attests");
    let att = read_attestation(&c.state, &key(NEWCOMER))
        .expect("state reads")
        .expect("attestation");
    assert_eq!(att.level, 2);
    assert_eq!(att.verifier, key(OPERATOR).0.to_vec());
    let id = c
        .propose(OPERATOR, admit("org-4", NEWCOMER))
        .expect("proposal");
    assert_eq!(id, 1);
    let p = read_proposal(&c.state, id)
        .expect("state reads")
        .expect("stored");
    assert_eq!(p.electorate, 3);
    assert_eq!(c.standing(id), "open");
    // The newcomer cannot act before admission.
    assert_eq!(c.run(NEWCOMER, anchor(1)), Err(Rejection::UnknownAccount));
    c.vote(1, id, true).expect("first yes");
    assert_eq!(c.standing(id), "open", "1 of 3 is below 2/3");
    assert_eq!(
        c.vote(1, id, true),
        Err(Rejection::AlreadyVoted("org-1".into()))
    );
    c.vote(2, id, true).expect("second yes");
    assert_eq!(c.standing(id), "passed");
    let m = read_member(&c.state, "org-4")
        .expect("state reads")
        .expect("admitted");
    assert_eq!(m.status(), MemberStatus::Active);
    assert_eq!(m.proposal_id, id);
    assert_eq!(
        read_member_index(&c.state).expect("state reads").orgs,
        vec!["org-1", "org-2", "org-3", "org-4"]
    );
    assert_eq!(
        read_account(&c.state, &key(NEWCOMER))
            .expect("state reads")
            .expect("account")
            .role(),
        Role::Member
    );
    c.run(NEWCOMER, anchor(7)).expect("the new member anchors");
    // A decided proposal takes no more votes.
    assert_eq!(c.vote(3, id, true), Err(Rejection::ProposalClosed(id)));
}

#[test]
fn only_current_members_vote_and_roles_are_enforced() {
    let mut c = Chain::new(100);
    c.attest(NEWCOMER).expect("attest");
    // Only the verifier that attested the key may pair it with an org id.
    assert_eq!(
        c.propose(1, admit("org-4", NEWCOMER)),
        Err(Rejection::NotTheVerifier)
    );
    let id = c
        .propose(OPERATOR, admit("org-4", NEWCOMER))
        .expect("the verifier proposes");
    let not_allowed = |role| Rejection::RoleMayNot {
        action: "vote",
        role,
    };
    assert_eq!(c.vote(OPERATOR, id, true), Err(not_allowed(Role::Operator)));
    assert_eq!(
        c.vote(REGULATOR, id, true),
        Err(not_allowed(Role::Regulator))
    );
    assert_eq!(c.vote(NEWCOMER, id, true), Err(Rejection::UnknownAccount));
    assert_eq!(c.vote(1, 99, true), Err(Rejection::UnknownProposal(99)));
    // Attesting and revoking are operator work; a member or regulator is refused.
    assert!(matches!(
        c.run(
            1,
            BeaconAction::AttestIdentity {
                subject: key(30),
                commitment: Digest([1; 32]),
                level: 1
            }
        ),
        Err(Rejection::RoleMayNot { .. })
    ));
    assert!(matches!(
        c.run(
            REGULATOR,
            BeaconAction::RevokeCertificate {
                serial: vec![1],
                reason: 1
            }
        ),
        Err(Rejection::RoleMayNot { .. })
    ));
    assert!(matches!(
        c.propose(REGULATOR, admit("org-5", 30)),
        Err(Rejection::RoleMayNot { .. })
    ));
}

#[test]
fn proposals_expire_and_no_votes_reject() {
    let mut c = Chain::new(3);
    c.attest(NEWCOMER).expect("attest");
    let id = c.propose(OPERATOR, admit("org-4", NEWCOMER)).expect("open");
    let expires = read_proposal(&c.state, id)
        .expect("state reads")
        .expect("p")
        .expires_height;
    assert_eq!(expires, c.height + 3);
    // A second proposal for the same org is refused while the first is open.
    assert_eq!(
        c.propose(OPERATOR, admit("org-4", NEWCOMER)),
        Err(Rejection::ProposalOpen(id))
    );
    c.vote(1, id, true).expect("in time");
    c.height = expires; // the last block that accepts votes
    c.height -= 1;
    c.vote(2, id, false)
        .expect("still in time at the expiry height");
    assert_eq!(c.standing(id), "open");
    assert_eq!(
        c.vote(3, id, true),
        Err(Rejection::ProposalExpired {
            id,
            expires_height: expires
        })
    );
    assert_eq!(c.standing(id), "expired");
    assert!(
        read_member(&c.state, "org-4")
            .expect("state reads")
            .is_none()
    );
    // Once expired, the org may be proposed again, and two no-votes reject it outright.
    let again = c
        .propose(OPERATOR, admit("org-4", NEWCOMER))
        .expect("again");
    c.vote(1, again, false).expect("no");
    assert_eq!(c.standing(again), "open", "2 of 3 yes is still possible");
    c.vote(2, again, false).expect("no");
    assert_eq!(c.standing(again), "rejected");
    assert!(
        read_account(&c.state, &key(NEWCOMER))
            .expect("state reads")
            .is_none()
    );
}

#[test]
fn removal_clears_the_roles_of_the_org_and_keeps_nonces() {
    let mut c = Chain::new(100);
    c.run(3, anchor(1)).expect("org-3 anchors");
    let id = c
        .propose(1, ProposalKind::RemoveMember { org: org("org-3") })
        .expect("open");
    c.vote(1, id, true).expect("yes");
    c.vote(2, id, true).expect("yes");
    assert_eq!(c.standing(id), "passed");
    let m = read_member(&c.state, "org-3")
        .expect("state reads")
        .expect("record stays");
    assert_eq!(m.status(), MemberStatus::Removed);
    let acct = read_account(&c.state, &key(3))
        .expect("state reads")
        .expect("account stays");
    assert_eq!(acct.role(), Role::Unspecified);
    assert_eq!(acct.next_nonce, 1, "the nonce never restarts");
    assert_eq!(
        c.run(3, anchor(2)),
        Err(Rejection::RoleMayNotAnchor(Role::Unspecified))
    );
    // The electorate of a new proposal is the two remaining members.
    c.attest(NEWCOMER).expect("attest");
    let next = c.propose(OPERATOR, admit("org-4", NEWCOMER)).expect("open");
    assert_eq!(
        read_proposal(&c.state, next)
            .expect("state reads")
            .expect("p")
            .electorate,
        2
    );
    assert!(matches!(
        c.vote(3, next, true),
        Err(Rejection::RoleMayNot { .. })
    ));
    c.vote(1, next, true).expect("yes");
    assert_eq!(c.standing(next), "open", "1 of 2 is below 2/3");
    c.vote(2, next, true).expect("yes");
    assert_eq!(c.standing(next), "passed");
}

#[test]
fn parameters_change_only_through_a_passed_proposal() {
    let mut c = Chain::new(100);
    let set = |name: &str, value: &str| ProposalKind::SetParameter {
        name: name.into(),
        value: value.into(),
    };
    for bad in ["1/2", "0/3", "4/3", "x", "2/0", "1/1001"] {
        assert!(
            matches!(
                c.propose(1, set("approval_threshold", bad)),
                Err(Rejection::BadParameter { .. })
            ),
            "{bad} was accepted"
        );
    }
    assert!(matches!(
        c.propose(1, set("proposal_ttl_blocks", "0")),
        Err(Rejection::BadParameter { .. })
    ));
    let id = c
        .propose(1, set("approval_threshold", "3/3"))
        .expect("open");
    c.vote(1, id, true).expect("yes");
    assert_eq!(
        read_governance(&c.state).expect("state reads").approval_num,
        2,
        "not yet"
    );
    c.vote(2, id, true).expect("yes");
    let g = read_governance(&c.state).expect("state reads");
    assert_eq!((g.approval_num, g.approval_den), (3, 3));
    // Now unanimity is needed.
    let id = c
        .propose(1, set("proposal_ttl_blocks", "50"))
        .expect("open");
    c.vote(1, id, true).expect("yes");
    c.vote(2, id, true).expect("yes");
    assert_eq!(c.standing(id), "open");
    c.vote(3, id, true).expect("yes");
    assert_eq!(
        read_governance(&c.state)
            .expect("state reads")
            .proposal_ttl_blocks,
        50
    );
}

#[test]
fn admission_checks_key_and_membership() {
    let mut c = Chain::new(100);
    assert_eq!(
        c.propose(OPERATOR, admit("org-1", NEWCOMER)),
        Err(Rejection::AlreadyMember("org-1".into()))
    );
    c.attest(2).expect("attest an existing key");
    assert_eq!(
        c.propose(OPERATOR, admit("org-9", 2)),
        Err(Rejection::KeyInUse)
    );
    assert_eq!(
        c.propose(1, ProposalKind::RemoveMember { org: org("org-9") }),
        Err(Rejection::UnknownMember("org-9".into()))
    );
}

#[test]
fn revocations_are_recorded_once_and_sorted() {
    let mut c = Chain::new(100);
    for serial in [vec![0x30, 1], vec![0x10], vec![0x20, 2]] {
        c.run(
            OPERATOR,
            BeaconAction::RevokeCertificate { serial, reason: 1 },
        )
        .expect("revoke");
    }
    assert_eq!(
        c.run(
            OPERATOR,
            BeaconAction::RevokeCertificate {
                serial: vec![0x10],
                reason: 4
            }
        ),
        Err(Rejection::AlreadyRevoked)
    );
    let list = read_revocations(&c.state).expect("state reads");
    let serials: Vec<Vec<u8>> = list.entries.iter().map(|e| e.serial.clone()).collect();
    assert_eq!(serials, vec![vec![0x10], vec![0x20, 2], vec![0x30, 1]]);
    assert!(
        list.entries
            .iter()
            .all(|e| e.revoker == key(OPERATOR).0.to_vec())
    );
}

#[test]
fn governance_is_deterministic() {
    let play = || {
        let mut c = Chain::new(10);
        c.attest(NEWCOMER).expect("attest");
        let id = c.propose(OPERATOR, admit("org-4", NEWCOMER)).expect("open");
        c.vote(2, id, true).expect("yes");
        c.vote(3, id, true).expect("yes");
        c.state
    };
    assert_eq!(play(), play());
}

#[test]
fn removals_decided_in_parallel_never_empty_the_consortium() {
    let mut c = Chain::new(100);
    let remove = |o: &str| ProposalKind::RemoveMember { org: org(o) };
    let ra = c.propose(OPERATOR, remove("org-1")).expect("open");
    let rb = c.propose(OPERATOR, remove("org-2")).expect("open");
    let rc = c.propose(OPERATOR, remove("org-3")).expect("open");
    // org-1 votes to remove org-3 early; that vote stops counting once org-1 is gone.
    c.vote(1, rc, true).expect("yes");
    c.vote(2, ra, true).expect("yes");
    c.vote(3, ra, true).expect("yes");
    assert_eq!(c.standing(ra), "passed");
    c.vote(2, rb, true).expect("yes");
    assert_eq!(
        c.standing(rb),
        "open",
        "1 of the 2 members left is below 2/3"
    );
    c.vote(3, rb, true).expect("yes");
    assert_eq!(c.standing(rb), "passed", "org-3 remains");
    // org-1's early yes no longer counts; org-3's own yes would pass the removal of the last
    // member, which takes no effect.
    c.vote(3, rc, true).expect("yes");
    let p = read_proposal(&c.state, rc)
        .expect("state reads")
        .expect("p");
    assert_eq!(p.electorate, 1);
    assert_eq!(c.standing(rc), "rejected");
    assert_eq!(
        read_member(&c.state, "org-3")
            .expect("state reads")
            .expect("m")
            .status(),
        MemberStatus::Active
    );
}
