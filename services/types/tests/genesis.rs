//! The genesis file: a valid file parses into the committee and accounts it lists, defaults
//! fill the parameters, and each mistake is refused naming its field.

use trellis_types::pb::Role;
use trellis_types::{ChainParams, Genesis, GenesisError, Signer};

fn key(seed: u8) -> String {
    hex::encode(Signer::from_seed([seed; 32]).public_key().0)
}

fn sample() -> String {
    format!(
        r#"{{
  "chain_id": "trellis-beacon",
  "genesis_time_ms": 1700000000000,
  "validators": [
    {{ "name": "v1", "consensus_key": "{}" }},
    {{ "name": "v2", "consensus_key": "{}" }},
    {{ "name": "v3", "consensus_key": "{}" }},
    {{ "name": "v4", "consensus_key": "{}" }}
  ],
  "accounts": [
    {{ "name": "acme", "org": "91310000MA1FL0001X", "role": "member", "public_key": "{}" }},
    {{ "name": "watch", "org": "regulator-sh", "role": "regulator", "public_key": "{}" }}
  ],
  "params": {{ "epoch_length_blocks": 1000 }}
}}"#,
        key(1),
        key(2),
        key(3),
        key(4),
        key(10),
        key(11)
    )
}

fn field_of(json: &str) -> String {
    match Genesis::from_json(json) {
        Err(GenesisError::Field { field, .. }) => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn a_valid_file_parses_and_round_trips() {
    let g = Genesis::from_json(&sample()).expect("valid");
    let committee = g.committee().expect("committee");
    assert_eq!(committee.size(), 4);
    assert_eq!(
        committee.members()[0],
        Signer::from_seed([1; 32]).public_key()
    );
    let accounts = g.parse_accounts().expect("accounts");
    assert_eq!(accounts[0].1, "91310000MA1FL0001X");
    assert_eq!(
        (accounts[0].2, accounts[1].2),
        (Role::Member, Role::Regulator)
    );
    assert_eq!(
        g.params,
        ChainParams {
            epoch_length_blocks: Some(1000),
            ..ChainParams::default()
        }
    );
    assert_eq!(g.params.max_block_bytes, 4 * 1024 * 1024);
    assert_eq!(Genesis::from_json(&g.to_json_pretty()), Ok(g));
}

#[test]
fn mistakes_are_refused_with_their_field() {
    let s = sample();
    let cases = [
        (s.replace(&key(3), "abcd"), "validators[2].consensus_key"),
        (s.replace(&key(4), &key(2)), "validators[3].consensus_key"),
        (s.replace(&key(11), &key(10)), "accounts[1].public_key"),
        (
            s.replace("\"regulator\"", "\"auditor\""),
            "accounts[1].role",
        ),
        (s.replace("trellis-beacon", ""), "chain_id"),
        (s.replace("trellis-beacon", &"x".repeat(65)), "chain_id"),
        (
            s.replace("\"epoch_length_blocks\": 1000", "\"max_block_txs\": 0"),
            "params.max_block_txs",
        ),
        (
            s.replace("\"name\": \"v2\"", "\"name\": \" \""),
            "validators[1].name",
        ),
    ];
    for (json, field) in cases {
        assert_eq!(field_of(&json), field, "{json}");
    }
    let no_validators = r#"{"chain_id":"c","genesis_time_ms":0,"validators":[]}"#;
    assert_eq!(field_of(no_validators), "validators");
    let unknown = s.replace("\"genesis_time_ms\"", "\"genesis_time\"");
    assert!(matches!(
        Genesis::from_json(&unknown),
        Err(GenesisError::Json(_))
    ));
}

/// `sample()` with node orgs and one shard of the member org, whose validators are `shard_keys`.
fn with_shard(shard: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
    v["validators"][0]["org"] = "91310000MA1FL0001X".into();
    v["shards"] = serde_json::from_str(shard).expect("shard json");
    v.to_string()
}

fn one_shard() -> String {
    format!(
        r#"[{{ "shard_id": "scf", "members": ["91310000MA1FL0001X"],
             "validators": [{{ "name": "s1", "consensus_key": "{}", "org": "91310000MA1FL0001X" }}] }}]"#,
        key(20)
    )
}

#[test]
fn shards_and_node_orgs_parse_and_enter_the_digest() {
    let plain = Genesis::from_json(&sample()).expect("valid");
    let g = Genesis::from_json(&with_shard(&one_shard())).expect("valid");
    assert_eq!(g.shards[0].shard_id, "scf");
    let committees = g.shard_committees().expect("committees");
    assert_eq!(
        committees[0].members(),
        &[Signer::from_seed([20; 32]).public_key()]
    );
    // Each addition changes the digest; a file without them keeps its version-1 digest.
    let orgs_only = {
        let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
        v["validators"][0]["org"] = "91310000MA1FL0001X".into();
        Genesis::from_json(&v.to_string()).expect("valid")
    };
    let digests = [
        plain.digest().expect("digest"),
        orgs_only.digest().expect("digest"),
        g.digest().expect("digest"),
    ];
    assert_ne!(digests[0], digests[1]);
    assert_ne!(digests[1], digests[2]);
    // The file round-trips, and a file without shards writes no `shards` member.
    assert_eq!(Genesis::from_json(&g.to_json_pretty()).expect("valid"), g);
    assert!(!plain.to_json_pretty().contains("shards"));
}

#[test]
fn each_shard_mistake_is_named() {
    let k = key(20);
    let cases = [
        (
            r#"[{ "shard_id": "trellis-beacon", "members": ["91310000MA1FL0001X"], "validators": [] }]"#
                .to_string(),
            "shards[0].shard_id",
        ),
        (
            r#"[{ "shard_id": "s c f", "members": [], "validators": [] }]"#.to_string(),
            "shards[0].shard_id",
        ),
        (
            format!(
                r#"[{{ "shard_id": "scf", "members": [], "validators": [{{ "name": "s1", "consensus_key": "{k}", "org": "x" }}] }}]"#
            ),
            "shards[0].members",
        ),
        (
            format!(
                r#"[{{ "shard_id": "scf", "members": ["regulator-sh"], "validators": [{{ "name": "s1", "consensus_key": "{k}", "org": "regulator-sh" }}] }}]"#
            ),
            "shards[0].members[0]",
        ),
        (
            format!(
                r#"[{{ "shard_id": "scf", "members": ["91310000MA1FL0001X"], "validators": [{{ "name": "s1", "consensus_key": "{k}" }}] }}]"#
            ),
            "shards[0].validators[0].org",
        ),
        (
            r#"[{ "shard_id": "scf", "members": ["91310000MA1FL0001X"], "validators": [] }]"#
                .to_string(),
            "shards[0].validators",
        ),
        (
            one_shard().replace(
                "}] }]",
                &format!(r#"}}] }}, {{ "shard_id": "scf", "members": ["91310000MA1FL0001X"], "validators": [{{ "name": "s1", "consensus_key": "{k}", "org": "91310000MA1FL0001X" }}] }}]"#),
            ),
            "shards[1].shard_id",
        ),
    ];
    for (shard, want) in cases {
        assert_eq!(field_of(&with_shard(&shard)), want, "{shard}");
    }
    let mut bad_org: serde_json::Value = serde_json::from_str(&sample()).expect("json");
    bad_org["validators"][1]["org"] = "no spaces allowed".into();
    assert_eq!(field_of(&bad_org.to_string()), "validators[1].org");
}

#[test]
fn a_null_org_is_refused_like_every_null() {
    let mut v: serde_json::Value = serde_json::from_str(&sample()).expect("json");
    v["validators"][0]["org"] = serde_json::Value::Null;
    assert!(matches!(
        Genesis::from_json(&v.to_string()),
        Err(GenesisError::Json(_))
    ));
}
