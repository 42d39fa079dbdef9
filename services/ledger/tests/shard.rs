//! The shard application: genesis, records and their versions, anchors, the transaction checks,
//! and certified updates made from a real beacon state (the beacon's genesis writes plus records
//! written here, in a real Jellyfish Merkle tree) under real certified beacon headers (real
//! signatures, real epoch changes). No mocks: everything goes through `Application`.

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};
use prost::Message as _;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use trellis_consensus::types::payload_digest;
use trellis_consensus::{
    Block, BlockHeader, Committee, EpochChangeProof, EpochState, QuorumCert, SignerBitmap,
    StateCommitment, Vote,
};
use trellis_ledger::app::{
    Access, Application, Applied, BlockInput, ExecutedBlock, ReadArgs, ReadError, Refusal,
};
use trellis_ledger::beacon::{
    BeaconGenesis, GenesisAccount, GenesisShardSpec, Governance, read_account,
};
use trellis_ledger::shard::{ShardApp, ShardSpec, SpecError};
use trellis_ledger::state::{MemoryState, StateKey};
use trellis_types::actions::EncodeAction;
use trellis_types::pb::{self, MemberStatus, Role, ShardStatus};
use trellis_types::state_proof::key_hash;
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{
    Collection, Digest, ProvenValue, PublicKey, RecordKey, ShardAction, Signer, StateProof, Tag,
    Transaction, TxError,
};

const BEACON: &str = "beacon-test";
const SHARD: &str = "shard-scf";

fn signer(seed: u8) -> Signer {
    Signer::from_seed([seed; 32])
}

fn key(seed: u8) -> PublicKey {
    signer(seed).public_key()
}

fn keys(seeds: impl IntoIterator<Item = u8>) -> Vec<PublicKey> {
    seeds.into_iter().map(key).collect()
}

/// Accounts: org-1 0x41, org-2 0x42, org-3 0x43 (a beacon member, not of the shard at first).
const ORG1: u8 = 0x41;
const ORG2: u8 = 0x42;
const ORG3: u8 = 0x43;

fn beacon_signers(seeds: std::ops::RangeInclusive<u8>) -> Vec<Signer> {
    seeds.map(signer).collect()
}

fn spec() -> ShardSpec {
    ShardSpec {
        shard_id: SHARD.into(),
        genesis_time_ms: 5_000,
        params: Default::default(),
        members: vec!["org-1".into(), "org-2".into()],
        accounts: vec![(key(ORG1), "org-1".into()), (key(ORG2), "org-2".into())],
        committee: keys(0x21..=0x24),
        beacon_chain_id: BEACON.into(),
        beacon_epoch: 0,
        beacon_committee: keys(1..=4),
        beacon_state_height: 0,
        origin: Digest([9; 32]),
    }
}

// ---------------------------------------------------------------------------------------------
// The shard side: a chain executed block by block through the application interface.

struct Shard {
    app: ShardApp,
    state: MemoryState,
    height: u64,
}

impl Shard {
    fn new() -> Shard {
        Shard::with(spec())
    }

    fn with(spec: ShardSpec) -> Shard {
        let app = ShardApp::new(spec);
        let genesis = app.genesis().expect("a valid spec");
        let mut state = MemoryState::default();
        state.apply(&genesis.writes);
        Shard {
            app,
            state,
            height: 0,
        }
    }

    fn nonce(&self, seed: u8) -> u64 {
        self.app
            .next_nonce(&self.state, &key(seed))
            .expect("readable")
            .unwrap_or(0)
    }

    /// A transaction of `seed`'s account at its next nonce.
    fn tx(&self, seed: u8, action: impl EncodeAction) -> Transaction {
        Transaction::sign(SHARD, &signer(seed), self.nonce(seed), action)
    }

    fn execute(&self, txs: &[Transaction]) -> ExecutedBlock {
        let txs: Vec<Arc<Transaction>> = txs.iter().cloned().map(Arc::new).collect();
        let block = BlockInput {
            height: self.height + 1,
            txs: &txs,
            verified: &[],
        };
        self.app
            .execute(block, &self.state)
            .expect("state readable")
    }

    fn run(&mut self, txs: &[Transaction]) -> Vec<Result<Applied, Refusal>> {
        let executed = self.execute(txs);
        self.state.apply(&executed.writes);
        self.height += 1;
        executed.receipts.into_iter().map(|r| r.outcome).collect()
    }

    fn run_one(&mut self, tx: Transaction) -> Result<Applied, Refusal> {
        self.run(&[tx]).remove(0)
    }

    /// Signs and runs `action` for `seed`'s account.
    fn act(&mut self, seed: u8, action: impl EncodeAction) -> Result<Applied, Refusal> {
        let tx = self.tx(seed, action);
        self.run_one(tx)
    }

    fn account(&self, seed: u8) -> Option<pb::Account> {
        read_account(&self.state, &key(seed)).expect("readable")
    }

    fn read(
        &self,
        route: &str,
        path: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> serde_json::Value {
        self.try_read(route, path, query).expect("an answer")
    }

    fn try_read(
        &self,
        route: &str,
        path: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, ReadError> {
        let pairs = |p: &[(&str, &str)]| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let args = ReadArgs {
            path: pairs(path),
            query: pairs(query),
            height: self.height,
        };
        self.app.read(route, &args, &self.state)
    }

    fn members(&self) -> serde_json::Value {
        self.read("/members", &[], &[])
    }

    /// What the shard knows of the beacon and its members, whatever its height.
    fn beacon_view(&self) -> serde_json::Value {
        let mut v = self.members();
        v.as_object_mut().map(|o| o.remove("height"));
        v
    }
}

fn code(outcome: &Result<Applied, Refusal>) -> &'static str {
    match outcome {
        Ok(_) => "applied",
        Err(r) => r.code,
    }
}

fn put(collection: &str, record: &str, payload: &[u8]) -> ShardAction {
    ShardAction::PutRecord {
        collection: Collection::parse(collection, "collection").expect("a collection"),
        key: RecordKey::parse(record, "key").expect("a key"),
        commitment: commitment(payload),
        ciphertext: None,
        schema: Collection::parse("invoice.v1", "schema").expect("a schema"),
    }
}

/// The client's salted commitment: SHA-256(salt ‖ payload).
fn commitment(payload: &[u8]) -> Digest {
    Digest::of(&[b"sixteen-byte-slt".as_slice(), payload].concat())
}

fn anchor(digest: u8) -> ShardAction {
    ShardAction::Anchor {
        digest: Digest([digest; 32]),
        tag: Tag::parse("contract-7").expect("a tag"),
    }
}

// ---------------------------------------------------------------------------------------------
// The beacon side: real state in a real Jellyfish Merkle tree, real certified headers.

/// Tree nodes and values in memory, enough for jmt to build a tree and its proofs.
#[derive(Default)]
struct Tree {
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<OwnedValue>>,
}

impl TreeReader for Tree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }
    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .values
            .range((key_hash, 0)..=(key_hash, max_version))
            .next_back()
            .and_then(|(_, v)| v.clone()))
    }
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}

/// The beacon's genesis state, with the shard as the spec above has it.
fn beacon_state() -> MemoryState {
    let account = |seed: u8, org: &str| GenesisAccount {
        key: key(seed),
        org: org.into(),
        role: Role::Member,
    };
    let genesis = BeaconGenesis {
        chain_id: BEACON.into(),
        committee: keys(1..=4),
        accounts: vec![
            account(ORG1, "org-1"),
            account(ORG2, "org-2"),
            account(ORG3, "org-3"),
        ],
        nodes: vec![],
        shards: vec![GenesisShardSpec {
            shard_id: SHARD.into(),
            members: vec!["org-1".into(), "org-2".into()],
            committee: keys(0x21..=0x24),
        }],
        governance: Governance::default(),
    };
    let mut state = MemoryState::default();
    state.apply(&genesis.write_set().expect("a valid beacon genesis"));
    state
}

fn write(state: &mut MemoryState, key: StateKey, record: &impl prost::Message) {
    state.0.insert(key, record.encode_to_vec());
}

fn shard_record(state: &mut MemoryState, members: &[&str], status: ShardStatus) {
    let record = pb::ShardRecord {
        shard_id: SHARD.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        status: status as i32,
        created_height: 0,
        proposal_id: 0,
        closed_height: 0,
    };
    write(state, StateKey::shard(SHARD), &record);
}

fn member_record(state: &mut MemoryState, org: &str, status: MemberStatus, seeds: &[u8]) {
    let record = pb::Member {
        org: org.into(),
        status: status as i32,
        keys: seeds.iter().map(|s| key(*s).0.to_vec()).collect(),
        admitted_height: 3,
        removed_height: 0,
        proposal_id: 1,
    };
    write(state, StateKey::member(org), &record);
}

fn committee_record(state: &mut MemoryState, seeds: std::ops::RangeInclusive<u8>) {
    let record = pb::ChainCommittee {
        chain_id: SHARD.into(),
        members: seeds.map(|s| key(s).0.to_vec()).collect(),
        decided_height: 6,
    };
    write(state, StateKey::committee(SHARD), &record);
}

/// `state` as a tree at some `height`: its commitment and the proofs of `keys`.
fn prove(
    state: &MemoryState,
    height: u64,
    keys: &[StateKey],
) -> (StateCommitment, Vec<ProvenValue>) {
    let mut tree = Tree::default();
    let (root, batch) = JellyfishMerkleTree::<_, Sha256>::new(&tree)
        .put_value_set(
            state
                .0
                .iter()
                .map(|(k, v)| (key_hash(k.as_bytes()), Some(v.clone()))),
            0,
        )
        .expect("a tree");
    for (k, node) in batch.node_batch.nodes() {
        tree.nodes.insert(k.clone(), node.clone());
    }
    for ((version, hash), value) in batch.node_batch.values() {
        tree.values.insert((*hash, *version), value.clone());
    }
    let mut keys = keys.to_vec();
    keys.sort();
    let values = keys
        .iter()
        .map(|k| {
            let (value, proof) = JellyfishMerkleTree::<_, Sha256>::new(&tree)
                .get_with_proof(key_hash(k.as_bytes()), 0)
                .expect("a proof");
            ProvenValue {
                key: k.as_bytes().to_vec(),
                value,
                proof: StateProof(proof),
            }
        })
        .collect();
    (
        StateCommitment {
            height,
            root: Digest(root.0),
        },
        values,
    )
}

fn committee(signers: &[Signer]) -> Committee {
    Committee::new(signers.iter().map(Signer::public_key).collect()).expect("distinct keys")
}

/// A certificate over `block` by the first three of `signers` (a quorum of four).
fn certify(block: &Block, signers: &[Signer]) -> QuorumCert {
    let vote_data = block.vote_data();
    let msg = Vote::signing_bytes(&block.header.chain_id, &vote_data);
    let mut bitmap = SignerBitmap::new(signers.len());
    let mut signatures = Vec::new();
    for i in 0..3u32 {
        bitmap.set(i);
        signatures.push(signers[i as usize].sign(&msg));
    }
    QuorumCert {
        vote_data,
        signers: bitmap,
        signatures,
    }
}

/// A beacon chain that certifies blocks one after another, across epochs.
struct BeaconChain {
    epoch: EpochState,
    signers: Vec<Signer>,
    /// The certificate of the highest block.
    qc: QuorumCert,
    /// Epoch-change proofs from epoch 0.
    epoch_changes: Vec<EpochChangeProof>,
}

/// A state commitment blocks that only fill a chain may carry.
const FILLER: StateCommitment = StateCommitment {
    height: 0,
    root: Digest::ZERO,
};

impl BeaconChain {
    fn new() -> BeaconChain {
        BeaconChain::signed_by(beacon_signers(1..=4))
    }

    fn signed_by(signers: Vec<Signer>) -> BeaconChain {
        let epoch = EpochState::genesis_with_state(BEACON, committee(&signers), 1_000, FILLER);
        BeaconChain {
            qc: epoch.root_qc(),
            epoch,
            signers,
            epoch_changes: Vec::new(),
        }
    }

    /// The next block, certified.
    fn block(&mut self, state: StateCommitment, next: Option<Committee>) -> Block {
        let vd = &self.qc.vote_data;
        let header = BlockHeader {
            chain_id: BEACON.into(),
            epoch: vd.epoch,
            round: vd.round + 1,
            height: vd.height + 1,
            parent_id: vd.block_id,
            qc_digest: vd.digest(),
            author: 0,
            timestamp_ms: 2_000 + vd.height * 500,
            payload_digest: payload_digest(b""),
            state,
            next_committee: next,
        };
        let block = Block::new(header, self.qc.clone(), Vec::new());
        block.check_well_formed().expect("a well-formed block");
        self.qc = certify(&block, &self.signers);
        block
    }

    /// `count` headers whose first commits to `state`, and the certificate committing the last.
    fn certify_state(
        &mut self,
        state: StateCommitment,
        count: usize,
    ) -> (Vec<BlockHeader>, QuorumCert) {
        while self.qc.vote_data.height < state.height {
            self.block(FILLER, None);
        }
        let headers: Vec<BlockHeader> =
            (0..count).map(|_| self.block(state, None).header).collect();
        // The child's certificate commits its parent (2-chain rule).
        self.block(FILLER, None);
        (headers, self.qc.clone())
    }

    /// Ends the epoch, handing over to `next`.
    fn change_epoch(&mut self, next: Vec<Signer>) {
        let ending = self.block(FILLER, Some(committee(&next)));
        let suffix = self.block(FILLER, None);
        self.block(FILLER, None);
        self.epoch_changes.push(EpochChangeProof {
            ending: ending.header.clone(),
            suffix: vec![suffix.header],
            commit_qc: self.qc.clone(),
        });
        self.epoch = self.epoch.next(&ending.header).expect("an ending block");
        self.signers = next;
        self.qc = self.epoch.root_qc();
    }

    /// A certified update carrying `keys` of `state` as of beacon state height `height`, with
    /// the epoch changes from `from_epoch`.
    fn update(
        &mut self,
        state: &MemoryState,
        height: u64,
        keys: &[StateKey],
        from_epoch: u64,
    ) -> ShardAction {
        let (commitment, values) = prove(state, height, keys);
        let (headers, commit_qc) = self.certify_state(commitment, 1);
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes: self.epoch_changes[from_epoch as usize..].to_vec(),
            values,
        }
    }
}

/// The beacon after org-2 left the shard and org-3 joined it (keys 0x43 and 0x44), org-1 gained
/// a second key (0x51), and the shard's next committee became 0x25..=0x28.
fn reshaped_beacon() -> MemoryState {
    let mut state = beacon_state();
    shard_record(&mut state, &["org-1", "org-3"], ShardStatus::Active);
    member_record(&mut state, "org-1", MemberStatus::Active, &[ORG1, 0x51]);
    member_record(&mut state, "org-3", MemberStatus::Active, &[ORG3, 0x44]);
    committee_record(&mut state, 0x25..=0x28);
    state
}

fn reshaping_keys() -> Vec<StateKey> {
    vec![
        StateKey::shard(SHARD),
        StateKey::member("org-1"),
        StateKey::member("org-3"),
        StateKey::committee(SHARD),
    ]
}

fn refusal(outcome: Result<Applied, Refusal>) -> Refusal {
    outcome.expect_err("refused")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn genesis_is_checked() {
    let check = |change: &dyn Fn(&mut ShardSpec), want: SpecError| {
        let mut s = spec();
        change(&mut s);
        assert_eq!(s.write_set(), Err(want.clone()));
        let err = ShardApp::new(s).genesis().expect_err("refused");
        assert_eq!(err.0, want.to_string());
    };
    check(&|s| s.shard_id.clear(), SpecError::NoShardId);
    check(&|s| s.beacon_chain_id.clear(), SpecError::BadBeaconChainId);
    check(
        &|s| s.beacon_chain_id = SHARD.into(),
        SpecError::BadBeaconChainId,
    );
    check(
        &|s| {
            s.members.clear();
            s.accounts.clear();
        },
        SpecError::NoMembers,
    );
    check(
        &|s| s.members.push("org 9".into()),
        SpecError::BadOrg("org 9".into()),
    );
    check(&|s| s.members.reverse(), SpecError::MembersNotSorted);
    check(
        &|s| s.members.push("org-2".into()),
        SpecError::MembersNotSorted,
    );
    check(
        &|s| s.accounts.push((key(ORG3), "org-3".into())),
        SpecError::NotAMember(key(ORG3), "org-3".into()),
    );
    check(
        &|s| s.accounts.push((key(ORG1), "org-2".into())),
        SpecError::DuplicateAccount(key(ORG1)),
    );
    let mut identity = [0u8; 32];
    identity[0] = 1;
    check(
        &|s| s.accounts.push((PublicKey(identity), "org-1".into())),
        SpecError::WeakKey(PublicKey(identity)),
    );
    for bad in [
        |s: &mut ShardSpec| s.committee.clear(),
        |s: &mut ShardSpec| s.committee.push(s.committee[0]),
    ] {
        let mut s = spec();
        bad(&mut s);
        assert!(matches!(s.write_set(), Err(SpecError::BadCommittee(_))));
    }
    let mut s = spec();
    s.beacon_committee.clear();
    assert!(matches!(
        s.write_set(),
        Err(SpecError::BadBeaconCommittee(_))
    ));
}

#[test]
fn genesis_registers_members_trust_and_next_committee() {
    let app = ShardApp::new(spec());
    let genesis = app.genesis().expect("valid");
    assert_eq!((app.kind(), app.chain_id()), ("shard", SHARD));
    assert_eq!(genesis.chain_id, SHARD);
    assert_eq!(genesis.digest, Digest([9; 32]));
    assert_eq!(genesis.committee.members(), keys(0x21..=0x24).as_slice());
    let shard = Shard::new();
    let a = shard.account(ORG1).expect("registered");
    assert_eq!(
        (a.org.as_str(), a.role(), a.next_nonce),
        ("org-1", Role::Member, 0)
    );
    let members = shard.members();
    assert_eq!(members["status"], "active");
    assert_eq!(members["members"][0]["org"], "org-1");
    assert_eq!(members["members"][1]["keys"][0], hex::encode(key(ORG2).0));
    assert_eq!(members["beacon"]["epoch"], 0);
    assert_eq!(members["beacon"]["applied_state_height"], 0);
    let ending = EpochState::genesis(SHARD, genesis.committee.clone(), 0);
    assert_eq!(
        app.next_committee(&shard.state, &ending).expect("readable"),
        Some(genesis.committee)
    );
}

#[test]
fn every_version_of_a_record_is_kept() {
    let mut shard = Shard::new();
    for v in 1..=3u64 {
        let outcome = shard.act(
            ORG1,
            put("invoices", "INV/2026/7", format!("v{v}").as_bytes()),
        );
        assert_eq!(
            outcome,
            Ok(Applied {
                facts: vec![("version", v)]
            })
        );
    }
    let latest = shard.read(
        "/records/{collection}/{key}",
        &[("collection", "invoices"), ("key", "INV/2026/7")],
        &[],
    );
    assert_eq!(latest["version"], 3);
    assert_eq!(latest["owner_org"], "org-1");
    assert_eq!(latest["commitment"], commitment(b"v3").to_hex());
    assert_eq!(latest["schema"], "invoice.v1");
    assert!(latest.get("ciphertext").is_none());
    let path = [("collection", "invoices"), ("key", "INV/2026/7")];
    let route = "/records/{collection}/{key}/versions";
    let page = shard.read(route, &path, &[("limit", "2")]);
    let versions = page["versions"].as_array().expect("a list");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["commitment"], commitment(b"v1").to_hex());
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(page["next"], 2);
    let rest = shard.read(route, &path, &[("limit", "2"), ("after", "2")]);
    assert_eq!(
        rest["versions"][0]["commitment"],
        commitment(b"v3").to_hex()
    );
    assert!(rest.get("next").is_none());
    // Ciphertext, when given, is kept with its version.
    let mut with_ciphertext = put("invoices", "INV/2026/8", b"x");
    if let ShardAction::PutRecord { ciphertext, .. } = &mut with_ciphertext {
        *ciphertext = Some(vec![0xc1; 40]);
    }
    assert!(shard.act(ORG1, with_ciphertext).is_ok());
    let r = shard.read(
        "/records/{collection}/{key}",
        &[("collection", "invoices"), ("key", "INV/2026/8")],
        &[],
    );
    assert_eq!(r["ciphertext"], hex::encode([0xc1; 40]));
    let missing = shard.try_read(
        "/records/{collection}/{key}",
        &[("collection", "invoices"), ("key", "none")],
        &[],
    );
    assert!(matches!(
        missing,
        Err(ReadError::NotFound {
            kind: "unknown-record",
            ..
        })
    ));
    let bad = shard.try_read(
        "/records/{collection}/{key}",
        &[("collection", "in voices"), ("key", "x")],
        &[],
    );
    assert!(matches!(
        bad,
        Err(ReadError::BadParam {
            field: "collection",
            ..
        })
    ));
}

#[test]
fn another_org_cannot_write_a_record_it_does_not_own() {
    let mut shard = Shard::new();
    assert!(shard.act(ORG1, put("invoices", "INV-1", b"mine")).is_ok());
    let before = shard.state.clone();
    let tx = shard.tx(ORG2, put("invoices", "INV-1", b"theirs"));
    let executed = shard.execute(std::slice::from_ref(&tx));
    let refused = refusal(executed.receipts[0].outcome.clone());
    assert_eq!(refused.code, "not-the-owner");
    assert!(refused.reason.contains("org-1"), "{}", refused.reason);
    // The refused action wrote nothing but the sender's nonce.
    assert_eq!(
        executed.writes.keys().collect::<Vec<_>>(),
        vec![&StateKey::account(&key(ORG2))]
    );
    assert_eq!(code(&shard.run_one(tx)), "not-the-owner");
    assert_eq!(shard.account(ORG2).expect("registered").next_nonce, 1);
    assert_eq!(
        before.0.get(&StateKey::record("invoices", "INV-1")),
        shard.state.0.get(&StateKey::record("invoices", "INV-1"))
    );
    // Its own key, and the same key in another collection, are its to write.
    assert!(shard.act(ORG2, put("invoices", "INV-2", b"theirs")).is_ok());
    assert!(shard.act(ORG2, put("orders", "INV-1", b"theirs")).is_ok());
}

#[test]
fn unknown_and_non_member_accounts_cannot_write() {
    let mut shard = Shard::new();
    let stranger = Transaction::sign(SHARD, &signer(0x77), 0, put("invoices", "x", b"x"));
    assert_eq!(code(&shard.run_one(stranger)), "unknown-account");
    assert!(shard.account(0x77).is_none());
    // An account of an org that is not a member of the shard, and one without a role.
    let outsider = pb::Account {
        org: "org-9".into(),
        role: Role::Member as i32,
        next_nonce: 0,
    };
    write(&mut shard.state, StateKey::account(&key(0x78)), &outsider);
    let outcome = shard.act(0x78, put("invoices", "x", b"x"));
    assert_eq!(
        refusal(outcome).reason,
        "org org-9 is not a member of the shard"
    );
    let roleless = pb::Account {
        org: "org-1".into(),
        role: Role::Unspecified as i32,
        next_nonce: 0,
    };
    write(&mut shard.state, StateKey::account(&key(0x79)), &roleless);
    assert_eq!(code(&shard.act(0x79, anchor(1))), "role-not-allowed");
    assert_eq!(shard.account(0x79).expect("registered").next_nonce, 1);
}

#[test]
fn nonces_are_exact() {
    let mut shard = Shard::new();
    let late = Transaction::sign(SHARD, &signer(ORG1), 1, anchor(1));
    let refused = refusal(shard.run_one(late));
    assert_eq!(refused.code, "bad-nonce");
    assert_eq!(shard.account(ORG1).expect("registered").next_nonce, 0);
    let first = Transaction::sign(SHARD, &signer(ORG1), 0, anchor(1));
    assert!(shard.run_one(first.clone()).is_ok());
    assert_eq!(code(&shard.run_one(first)), "bad-nonce");
}

#[test]
fn field_rules_name_the_field() {
    let app = ShardApp::new(spec());
    let field_of = |action: pb::shard_action::Action| {
        let bytes = pb::ShardAction {
            action: Some(action),
        }
        .encode_to_vec();
        match app.check_action(&bytes) {
            Err(TxError::Field { field, .. }) => field,
            other => panic!("not a field error: {other:?}"),
        }
    };
    let record = || pb::PutRecord {
        collection: "invoices".into(),
        key: "INV-1".into(),
        commitment: vec![7; 32],
        ciphertext: None,
        schema: "invoice.v1".into(),
    };
    let put = pb::shard_action::Action::PutRecord;
    let cases: Vec<(pb::PutRecord, &str)> = vec![
        (
            pb::PutRecord {
                collection: "".into(),
                ..record()
            },
            "put_record.collection",
        ),
        (
            pb::PutRecord {
                collection: "in/voices".into(),
                ..record()
            },
            "put_record.collection",
        ),
        (
            pb::PutRecord {
                collection: "c".repeat(65),
                ..record()
            },
            "put_record.collection",
        ),
        (
            pb::PutRecord {
                key: "".into(),
                ..record()
            },
            "put_record.key",
        ),
        (
            pb::PutRecord {
                key: "a\u{0}b".into(),
                ..record()
            },
            "put_record.key",
        ),
        (
            pb::PutRecord {
                key: "k".repeat(129),
                ..record()
            },
            "put_record.key",
        ),
        (
            pb::PutRecord {
                commitment: vec![7; 31],
                ..record()
            },
            "put_record.commitment",
        ),
        (
            pb::PutRecord {
                ciphertext: Some(vec![]),
                ..record()
            },
            "put_record.ciphertext",
        ),
        (
            pb::PutRecord {
                ciphertext: Some(vec![1; 16 * 1024 + 1]),
                ..record()
            },
            "put_record.ciphertext",
        ),
        (
            pb::PutRecord {
                schema: "".into(),
                ..record()
            },
            "put_record.schema",
        ),
        (
            pb::PutRecord {
                schema: "a b".into(),
                ..record()
            },
            "put_record.schema",
        ),
    ];
    for (p, want) in cases {
        assert_eq!(field_of(put(p.clone())), want, "{p:?}");
    }
    // The limits themselves are allowed.
    let edge = pb::PutRecord {
        collection: "c".repeat(64),
        key: "k".repeat(128),
        ciphertext: Some(vec![1; 16 * 1024]),
        ..record()
    };
    let bytes = pb::ShardAction {
        action: Some(put(edge)),
    }
    .encode_to_vec();
    assert_eq!(app.check_action(&bytes), Ok(()));
    assert_eq!(
        field_of(pb::shard_action::Action::Anchor(pb::Anchor {
            digest: vec![1; 32],
            tag: "t".repeat(65),
        })),
        "anchor.tag"
    );
    let update = || pb::CertifiedUpdate {
        headers: vec![vec![1, 2, 3]],
        commit_qc: vec![],
        epoch_changes: vec![],
        values: vec![pb::ProvenValue {
            key: b"shard/x".to_vec(),
            value: None,
            proof: vec![],
        }],
    };
    assert_eq!(
        field_of(pb::shard_action::Action::CertifiedUpdate(update())),
        "certified_update.headers"
    );
    assert_eq!(
        field_of(pb::shard_action::Action::CertifiedUpdate(
            pb::CertifiedUpdate {
                headers: vec![],
                ..update()
            }
        )),
        "certified_update.headers"
    );
    assert_eq!(
        app.check_action(&[]),
        Err(TxError::Field {
            field: "action",
            reason: "is missing"
        })
    );
    // Not canonical: an unknown field after a valid action.
    let mut bytes = anchor(1).encode_action();
    bytes.extend_from_slice(&[0x08, 0x01]);
    assert_eq!(app.check_action(&bytes), Err(TxError::NonCanonical));
    // Executed anyway (a proposer slipped it in), it gets a receipt naming the field.
    let mut shard = Shard::new();
    let raw = pb::ShardAction {
        action: Some(put(pb::PutRecord {
            key: "".into(),
            ..record()
        })),
    }
    .encode_to_vec();
    let outcome = shard.act(ORG1, raw);
    assert_eq!(code(&outcome), "malformed-action");
    assert!(refusal(outcome).reason.contains("put_record.key"));
}

#[test]
fn a_certified_update_with_unsorted_values_is_malformed() {
    let mut beacon = BeaconChain::new();
    let state = reshaped_beacon();
    let ShardAction::CertifiedUpdate {
        headers,
        commit_qc,
        epoch_changes,
        mut values,
    } = beacon.update(&state, 3, &reshaping_keys(), 0)
    else {
        unreachable!()
    };
    values.reverse();
    let action = ShardAction::CertifiedUpdate {
        headers,
        commit_qc,
        epoch_changes,
        values,
    };
    let app = ShardApp::new(spec());
    assert!(matches!(
        app.check_action(&action.encode_action()),
        Err(TxError::Field {
            field: "certified_update.values.key",
            ..
        })
    ));
}

#[test]
fn actions_round_trip_through_their_bytes() {
    let mut beacon = BeaconChain::new();
    let update = beacon.update(&reshaped_beacon(), 3, &reshaping_keys(), 0);
    for action in [put("invoices", "INV-1", b"x"), anchor(3), update] {
        let bytes = action.encode_action();
        assert_eq!(ShardAction::decode(&bytes), Ok(action));
    }
}

#[test]
fn a_transaction_for_another_chain_or_with_a_bad_signature_is_refused() {
    let mut shard = Shard::new();
    let for_beacon = Transaction::sign(BEACON, &signer(ORG1), 0, anchor(1));
    assert_eq!(code(&shard.run_one(for_beacon)), "wrong-chain");
    let tx = shard.tx(ORG1, anchor(1));
    let mut bytes = tx.encoded().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = Transaction::decode(&bytes, DEFAULT_MAX_TX_BYTES).expect("well formed");
    assert_eq!(code(&shard.run_one(forged)), "bad-signature");
    // Neither consumed the nonce.
    assert_eq!(shard.account(ORG1).expect("registered").next_nonce, 0);
}

#[test]
fn anchors_are_recorded_once() {
    let mut shard = Shard::new();
    let tx = shard.tx(ORG2, anchor(0xab));
    assert!(shard.run_one(tx.clone()).is_ok());
    let record: pb::AnchorRecord = pb::AnchorRecord::decode(
        shard.state.0[&StateKey::from_bytes(trellis_types::anchor_state_key(&Digest([0xab; 32])))]
            .as_slice(),
    )
    .expect("a record");
    assert_eq!(record.sender, key(ORG2).0.to_vec());
    assert_eq!(record.tag, "contract-7");
    assert_eq!(record.tx_hash, tx.hash().0.to_vec());
    assert_eq!(code(&shard.act(ORG1, anchor(0xab))), "already-anchored");
}

#[test]
fn a_certified_update_reshapes_membership_accounts_and_the_next_committee() {
    let mut shard = Shard::new();
    // Nonces org-2 used before it left must not restart.
    assert!(shard.act(ORG2, anchor(1)).is_ok());
    let mut beacon = BeaconChain::new();
    let update = beacon.update(&reshaped_beacon(), 5, &reshaping_keys(), 0);
    let outcome = shard.act(ORG1, update);
    assert_eq!(
        outcome,
        Ok(Applied {
            facts: vec![("beacon_state_height", 5), ("beacon_epoch", 0)]
        })
    );
    // org-2 left the shard: its account stays, with its nonce, but cannot write.
    let org2 = shard.account(ORG2).expect("kept");
    assert_eq!((org2.role(), org2.next_nonce), (Role::Unspecified, 1));
    assert_eq!(
        code(&shard.act(ORG2, put("invoices", "x", b"x"))),
        "role-not-allowed"
    );
    // org-3 joined with two keys, org-1 gained one: new accounts at nonce 0, and they write.
    for seed in [ORG3, 0x44, 0x51] {
        let a = shard.account(seed).expect("registered");
        assert_eq!((a.role(), a.next_nonce), (Role::Member, 0));
        assert!(
            shard
                .act(seed, put("invoices", &format!("by-{seed}"), b"x"))
                .is_ok()
        );
    }
    // ORG1 submitted the update: its nonce went on from 0.
    assert_eq!(shard.account(ORG1).expect("kept").next_nonce, 1);
    let app_committee = shard
        .app
        .next_committee(
            &shard.state,
            &EpochState::genesis(SHARD, committee(&beacon_signers(0x21..=0x24)), 0),
        )
        .expect("readable")
        .expect("decided");
    assert_eq!(app_committee.members(), keys(0x25..=0x28).as_slice());
    let members = shard.members();
    let orgs: Vec<&str> = members["members"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["org"].as_str().expect("an org"))
        .collect();
    assert_eq!(orgs, ["org-1", "org-3"]);
    assert_eq!(members["beacon"]["applied_state_height"], 5);
    // Applied by the shard's second block.
    assert_eq!(members["beacon"]["applied_height"], 2);
    assert_eq!(members["next_committee"][0], hex::encode(key(0x25).0));
}

#[test]
fn a_member_removed_on_the_beacon_can_no_longer_write() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    // org-2 is removed from the consortium; the shard record still lists it.
    let mut state = beacon_state();
    member_record(&mut state, "org-2", MemberStatus::Removed, &[ORG2]);
    let update = beacon.update(&state, 4, &[StateKey::member("org-2")], 0);
    assert!(shard.act(ORG1, update).is_ok());
    assert_eq!(shard.account(ORG2).expect("kept").role(), Role::Unspecified);
    assert_eq!(code(&shard.act(ORG2, anchor(2))), "role-not-allowed");
    assert_eq!(shard.members()["members"][1]["keys"], serde_json::json!([]));
    // A member record of an org that is not a member of the shard is not the shard's to take.
    let update = beacon.update(&state, 6, &[StateKey::member("org-3")], 0);
    let refused = refusal(shard.act(ORG1, update));
    assert_eq!(refused.code, "not-for-this-shard");
    assert!(shard.account(ORG3).is_none());
}

#[test]
fn a_stale_update_is_refused() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    let state = reshaped_beacon();
    assert!(
        shard
            .act(ORG1, beacon.update(&state, 7, &reshaping_keys(), 0))
            .is_ok()
    );
    // The beacon as it was before, proven at the same height and at a lower one: neither may
    // undo the newer view.
    let old = beacon_state();
    let old_keys = [StateKey::shard(SHARD), StateKey::member("org-2")];
    for height in [7, 6] {
        let update = beacon.update(&old, height, &old_keys, 0);
        let before = shard.state.clone();
        let refused = refusal(shard.act(ORG1, update));
        assert_eq!(refused.code, "stale-update");
        assert!(
            refused.reason.contains("height 7 is applied"),
            "{}",
            refused.reason
        );
        let changed: Vec<&StateKey> = shard
            .state
            .0
            .keys()
            .filter(|k| before.0.get(*k) != shard.state.0.get(*k))
            .collect();
        assert_eq!(changed, vec![&StateKey::account(&key(ORG1))]);
    }
    assert_eq!(shard.account(ORG2).expect("kept").role(), Role::Unspecified);
}

/// Every forgery is `bad-proof`, and the shard is unchanged but for the submitter's nonce.
fn assert_forged(shard: &mut Shard, action: ShardAction, why: &str) {
    let before = (shard.beacon_view(), shard.account(ORG2));
    let nonce = shard.nonce(ORG1);
    let refused = refusal(shard.act(ORG1, action));
    assert_eq!(refused.code, "bad-proof", "{refused:?}");
    assert!(refused.reason.contains(why), "{why}: {}", refused.reason);
    assert_eq!((shard.beacon_view(), shard.account(ORG2)), before);
    assert_eq!(shard.nonce(ORG1), nonce + 1);
}

#[test]
fn a_forged_update_is_refused() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    let state = reshaped_beacon();
    let valid = || -> ShardAction {
        let mut beacon = BeaconChain::new();
        beacon.update(&state, 5, &reshaping_keys(), 0)
    };
    let with_values = |f: &dyn Fn(&mut Vec<ProvenValue>)| -> ShardAction {
        let ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes,
            mut values,
        } = valid()
        else {
            unreachable!()
        };
        f(&mut values);
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes,
            values,
        }
    };

    // A value changed under its true proof: org-2 put back among the members.
    let mut forged_record = beacon_state();
    shard_record(
        &mut forged_record,
        &["org-1", "org-2", "org-3"],
        ShardStatus::Active,
    );
    let forged_bytes = forged_record.0[&StateKey::shard(SHARD)].clone();
    let shard_key = StateKey::shard(SHARD).as_bytes().to_vec();
    assert_forged(
        &mut shard,
        with_values(&|values| {
            let v = values
                .iter_mut()
                .find(|v| v.key == shard_key)
                .expect("the shard record");
            v.value = Some(forged_bytes.clone());
        }),
        "values[",
    );

    // The proof of another key: org-1's record and proof, presented as org-3's.
    let (_, org1) = prove(&state, 5, &[StateKey::member("org-1")]);
    let org3_key = StateKey::member("org-3").as_bytes().to_vec();
    assert_forged(
        &mut shard,
        with_values(&|values| {
            let v = values
                .iter_mut()
                .find(|v| v.key == org3_key)
                .expect("org-3's record");
            v.value = org1[0].value.clone();
            v.proof = org1[0].proof.clone();
        }),
        "values[",
    );

    // Headers certified by a committee the shard does not trust.
    let mut rogue = BeaconChain::signed_by(beacon_signers(11..=14));
    assert_forged(
        &mut shard,
        rogue.update(&state, 5, &reshaping_keys(), 0),
        "commit-cert",
    );

    // A broken header chain: the second header is not the first's child.
    let (commitment, values) = prove(&state, 5, &reshaping_keys());
    let (mut headers, commit_qc) = beacon.certify_state(commitment, 2);
    headers.swap(0, 1);
    assert_forged(
        &mut shard,
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc: commit_qc.clone(),
            epoch_changes: vec![],
            values: values.clone(),
        },
        "unlinked",
    );

    // Values proven against another state than the certified one.
    let (_, other_values) = prove(&beacon_state(), 5, &[StateKey::shard(SHARD)]);
    let (headers, commit_qc) = beacon.certify_state(commitment, 1);
    assert_forged(
        &mut shard,
        ShardAction::CertifiedUpdate {
            headers,
            commit_qc,
            epoch_changes: vec![],
            values: other_values,
        },
        "values[0]",
    );

    // The genuine update still applies.
    assert_eq!(shard.account(ORG2).expect("kept").role(), Role::Member);
    assert!(shard.act(ORG1, valid()).is_ok());
    assert_eq!(shard.account(ORG2).expect("kept").role(), Role::Unspecified);
}

#[test]
fn an_update_about_another_shard_is_refused() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    let mut state = beacon_state();
    let other = pb::ShardRecord {
        shard_id: "shard-other".into(),
        members: vec!["org-3".into()],
        status: ShardStatus::Active as i32,
        ..Default::default()
    };
    write(&mut state, StateKey::shard("shard-other"), &other);
    for key in [
        StateKey::shard("shard-other"),
        StateKey::committee(BEACON),
        StateKey::member_index(),
    ] {
        let refused = refusal(shard.act(ORG1, beacon.update(&state, 3, &[key], 0)));
        assert_eq!(refused.code, "not-for-this-shard", "{refused:?}");
    }
    // An absent record proves nothing to apply.
    let absent = beacon.update(&state, 3, &[StateKey::member("org-7")], 0);
    assert_eq!(code(&shard.act(ORG1, absent)), "bad-update");
}

#[test]
fn a_beacon_epoch_change_carried_by_an_update_is_followed() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    beacon.change_epoch(beacon_signers(3..=6));
    let state = reshaped_beacon();
    // Without the epoch change, the certificate's committee is unknown to the shard.
    let ShardAction::CertifiedUpdate {
        headers,
        commit_qc,
        values,
        ..
    } = beacon.update(&state, 4, &reshaping_keys(), 0)
    else {
        unreachable!()
    };
    let without = ShardAction::CertifiedUpdate {
        headers: headers.clone(),
        commit_qc: commit_qc.clone(),
        epoch_changes: vec![],
        values: values.clone(),
    };
    assert_forged(&mut shard, without, "epoch-changes");
    let with = ShardAction::CertifiedUpdate {
        headers,
        commit_qc,
        epoch_changes: beacon.epoch_changes.clone(),
        values,
    };
    assert!(shard.act(ORG1, with).is_ok());
    let trust = shard.members()["beacon"].clone();
    assert_eq!(trust["epoch"], 1);
    assert_eq!(
        trust["committee"],
        serde_json::json!(
            keys(3..=6)
                .iter()
                .map(|k| hex::encode(k.0))
                .collect::<Vec<_>>()
        )
    );
    // From now on the shard trusts epoch 1's committee: an update of epoch 1 needs no proof,
    // and the old committee's word counts no more.
    let mut later = reshaped_beacon();
    member_record(&mut later, "org-3", MemberStatus::Removed, &[ORG3, 0x44]);
    let update = beacon.update(&later, 9, &[StateKey::member("org-3")], 1);
    assert!(shard.act(ORG1, update).is_ok());
    assert_eq!(shard.account(0x44).expect("kept").role(), Role::Unspecified);
    let mut old_committee = BeaconChain::new();
    let stale_trust = old_committee.update(&later, 12, &[StateKey::member("org-1")], 0);
    assert_forged(&mut shard, stale_trust, "epoch-changes");
}

#[test]
fn a_closed_shard_takes_only_certified_updates() {
    let mut shard = Shard::new();
    let mut beacon = BeaconChain::new();
    let mut state = beacon_state();
    shard_record(&mut state, &["org-1", "org-2"], ShardStatus::Closed);
    assert!(
        shard
            .act(ORG2, beacon.update(&state, 3, &[StateKey::shard(SHARD)], 0))
            .is_ok()
    );
    assert_eq!(shard.members()["status"], "closed");
    assert_eq!(
        code(&shard.act(ORG1, put("invoices", "x", b"x"))),
        "shard-closed"
    );
    assert_eq!(code(&shard.act(ORG1, anchor(4))), "shard-closed");
    // Further updates still apply: org-2's removal still reaches the shard.
    member_record(&mut state, "org-2", MemberStatus::Removed, &[ORG2]);
    assert!(
        shard
            .act(
                ORG1,
                beacon.update(&state, 4, &[StateKey::member("org-2")], 0)
            )
            .is_ok()
    );
    assert_eq!(shard.account(ORG2).expect("kept").role(), Role::Unspecified);
}

#[test]
fn the_same_block_executes_to_the_same_writes() {
    let mut shard = Shard::new();
    assert!(shard.act(ORG1, put("invoices", "INV-1", b"x")).is_ok());
    let mut beacon = BeaconChain::new();
    let update = beacon.update(&reshaped_beacon(), 5, &reshaping_keys(), 0);
    let txs = vec![
        Transaction::sign(SHARD, &signer(ORG1), 1, put("invoices", "INV-1", b"y")),
        Transaction::sign(SHARD, &signer(ORG2), 0, put("invoices", "INV-1", b"z")),
        Transaction::sign(SHARD, &signer(ORG2), 1, anchor(9)),
        Transaction::sign(SHARD, &signer(ORG2), 2, update),
        Transaction::sign(SHARD, &signer(ORG2), 3, anchor(10)),
        Transaction::sign(SHARD, &signer(0x44), 0, put("orders", "PO-1", b"p")),
        Transaction::sign(BEACON, &signer(ORG1), 2, anchor(11)),
    ];
    let first = shard.execute(&txs);
    let second = shard.execute(&txs);
    assert_eq!(first, second);
    let codes: Vec<&str> = first.receipts.iter().map(|r| code(&r.outcome)).collect();
    assert_eq!(
        codes,
        [
            "applied",
            "not-the-owner",
            "applied",
            "applied",
            "role-not-allowed",
            "applied",
            "wrong-chain"
        ]
    );
    // Marking signatures as verified at admission changes nothing.
    let arcs: Vec<Arc<Transaction>> = txs.iter().cloned().map(Arc::new).collect();
    let verified = vec![true; txs.len()];
    let block = BlockInput {
        height: shard.height + 1,
        txs: &arcs,
        verified: &verified,
    };
    assert_eq!(
        shard.app.execute(block, &shard.state).expect("readable"),
        first
    );
}

#[test]
fn a_record_that_does_not_decode_is_a_corrupt_state_refusal() {
    let mut shard = Shard::new();
    shard
        .state
        .0
        .insert(StateKey::record("invoices", "INV-1"), vec![0xff, 0xff]);
    assert_eq!(
        code(&shard.act(ORG1, put("invoices", "INV-1", b"x"))),
        "corrupt-state"
    );
    assert_eq!(shard.account(ORG1).expect("kept").next_nonce, 1);
}

#[test]
fn routes_are_for_members_and_proof_keys_are_the_records() {
    let app = ShardApp::new(spec());
    assert!(app.routes().iter().all(|r| r.access == Access::Members));
    let doc = app.openapi();
    for route in app.routes() {
        assert!(doc.paths.paths.contains_key(route.path), "{}", route.path);
    }
    assert_eq!(
        app.proof_key("record", "invoices/INV/2026/7")
            .expect("a key"),
        StateKey::record("invoices", "INV/2026/7")
    );
    assert_eq!(
        app.proof_key("anchor", &"ab".repeat(32)).expect("a key"),
        StateKey::anchor(&Digest([0xab; 32]))
    );
    assert_eq!(
        app.proof_key("account", &hex::encode(key(ORG1).0))
            .expect("a key"),
        StateKey::account(&key(ORG1))
    );
    for (namespace, id) in [
        ("record", "no-slash"),
        ("record", "in voices/x"),
        ("anchor", "ab"),
        ("member", "org-1"),
    ] {
        assert!(
            matches!(
                app.proof_key(namespace, id),
                Err(ReadError::BadParam { .. })
            ),
            "{namespace} {id}"
        );
    }
    let shard = Shard::new();
    let account = shard.read(
        "/accounts/{key}",
        &[("key", &hex::encode(key(ORG1).0))],
        &[],
    );
    assert_eq!(account["role"], "member");
    assert_eq!(account["org"], "org-1");
}
