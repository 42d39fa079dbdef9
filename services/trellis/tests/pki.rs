//! The devnet's certificate hierarchy end to end: `trellis devnet init` writes an offline root,
//! an issuing CA for the membership service, genesis org certificates and node chains under
//! them; then, on a live four-validator devnet, removing a member org by governance revokes
//! its org certificate and the nodes chained through it are cut off, though no CRL names
//! their own certificates.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use trellis::devnet;
use trellis::governance_cli::{self, Proposal};
use trellis::services::{RunningServices, ServicesConfig, Target};
use trellis_node::node::{KeyFile, NodeConfig};
use trellis_pki::{IssuingCa, verify};

const CHAIN: &str = "pki-test";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn get(http: &reqwest::Client, url: String, token: Option<&str>) -> Value {
    let mut req = http.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    resp.json().await.expect("json")
}

async fn wait_for<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_member_cuts_its_nodes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let network = devnet::init(dir, 4, 0, CHAIN).expect("init");
    let genesis: Value = serde_json::from_str(&read(&dir.join("genesis.json"))).expect("genesis");
    let validator_key = |i: usize| {
        genesis["validators"][i]["consensus_key"]
            .as_str()
            .expect("key")
            .to_string()
    };

    // The root's key is written once, private, and no running process is configured with it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in ["ca/root-key.pem", "ca/issuing-ca-key.pem"] {
            let mode = std::fs::metadata(dir.join(secret))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{secret}");
        }
    }
    let services_config = network.services_config.clone().expect("services config");
    let mut configs = vec![read(&services_config)];
    configs.extend(network.nodes.iter().map(|n| read(&n.config)));
    for c in &configs {
        assert!(
            !c.contains("root-key"),
            "a running process is given the root key: {c}"
        );
    }

    // Every node presents node + org + issuing CA, verifies against the root with the CRLs it
    // loads, and belongs to member org ((i - 1) mod 3) + 1.
    let root = read(&dir.join("ca/root.pem"));
    let crls = [
        read(&dir.join("ca/root-crl.pem")),
        read(&dir.join("ca/crl.pem")),
    ];
    for (i, n) in network.nodes.iter().enumerate() {
        let chain = read(&dir.join("nodes").join(&n.name).join("tls/cert.pem"));
        let certs = verify::certificates_from_pem(&chain).expect("chain");
        assert_eq!(certs.len(), 3, "{}", n.name);
        let who = verify::verify_node_chain(&root, &chain, &crls, trellis_pki::now_ms())
            .expect("the chain verifies");
        assert_eq!(hex::encode(who.0), validator_key(i));
        assert_eq!(
            trellis_pki::org_identity(&certs[1]).as_deref(),
            Some(format!("org-{}", i % 3 + 1).as_str())
        );
    }

    // A live devnet with its services.
    let mut nodes = Vec::new();
    for n in &network.nodes {
        let env = [
            ("TRELLIS__TUNING__BASE_TIMEOUT_MS", "500"),
            ("TRELLIS__TUNING__CRL_POLL_MS", "200"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let config = NodeConfig::load(&n.config, env).expect("node config");
        nodes.push(
            trellis::apps::start_node(config)
                .await
                .expect("node starts"),
        );
    }
    let mut config =
        ServicesConfig::load(&services_config, std::iter::empty()).expect("services config");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let services = RunningServices::start(config, vec![Target::Identity, Target::Membership])
        .await
        .expect("services start");
    let api = services.url();
    let http = reqwest::Client::new();
    let node0 = format!("http://{}", nodes[0].api_addr);
    let status = || {
        let http = http.clone();
        let node0 = node0.clone();
        async move { get(&http, format!("{node0}/v1/status"), None).await }
    };
    wait_for("a full mesh", || {
        let status = status();
        async move {
            let s = status.await;
            (s["peers"].as_array()?.len() == 3).then_some(s)
        }
    })
    .await;

    // The membership service manages the genesis orgs' certificates written at init rather
    // than issuing others.
    let key = |name: &str| dir.join(format!("accounts/{name}.json"));
    let operator = KeyFile::load(&key("operator"))
        .expect("operator")
        .signer()
        .expect("signer");
    let token = governance_cli::login(&http, &api, &operator)
        .await
        .expect("login");
    let issuing = IssuingCa::from_pem(
        &read(&dir.join("ca/issuing-ca.pem")),
        &read(&dir.join("ca/issuing-ca-key.pem")),
    )
    .expect("issuing CA");
    let org3 = issuing
        .read_org_certificate(&read(&dir.join("ca/orgs/org-3.pem")))
        .expect("org-3's certificate");
    let listed = wait_for("org-3's certificate in the CA's records", || {
        let (http, api, token) = (http.clone(), api.clone(), token.clone());
        async move {
            let v = get(
                &http,
                format!("{api}/v1/ca/certificates?org=org-3"),
                Some(&token),
            )
            .await;
            (!v["certificates"].as_array()?.is_empty()).then_some(v)
        }
    })
    .await;
    assert_eq!(
        listed["certificates"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(
        listed["certificates"][0]["serial"],
        org3.issued.serial_hex.as_str()
    );
    assert_eq!(listed["certificates"][0]["status"], "active");

    // The members remove org-3 (validator-3's org).
    let proposal = governance_cli::governance_propose(
        &api,
        &key("member-1"),
        Proposal::Remove {
            org: "org-3".into(),
        },
    )
    .await
    .expect("removal proposed");
    let id = proposal["id"].as_u64().expect("id");
    let mut passed = false;
    for m in ["member-1", "member-2", "member-3"] {
        let vote = governance_cli::governance_vote(&api, &key(m), id, true)
            .await
            .expect("vote");
        if vote["status"] == "passed" {
            passed = true;
            break;
        }
    }
    assert!(passed, "the removal did not pass");

    // The manager revokes org-3's certificate on the beacon; the CRL file follows, the nodes
    // reload it, and validator-3 — whose own certificate is on no list — is cut off.
    let v3 = validator_key(2);
    wait_for("validator-3 to be cut off", || {
        let status = status();
        let v3 = v3.clone();
        async move {
            let s = status.await;
            let peers = s["peers"].as_array()?;
            (!peers.iter().any(|p| p == v3.as_str()) && peers.len() == 2).then_some(s)
        }
    })
    .await;
    let revoked = get(&http, format!("{node0}/v1/revocations"), None).await;
    let serials: Vec<&str> = revoked["revocations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["serial"].as_str())
        .collect();
    assert_eq!(serials, [org3.issued.serial_hex.as_str()], "{revoked}");
    let crls = [
        read(&dir.join("ca/root-crl.pem")),
        read(&dir.join("ca/crl.pem")),
    ];
    let v3_chain = read(&dir.join("nodes/validator-3/tls/cert.pem"));
    assert!(
        matches!(
            verify::verify_node_chain(&root, &v3_chain, &crls, trellis_pki::now_ms()),
            Err(trellis_pki::PkiError::Refused(verify::Refusal::Revoked))
        ),
        "validator-3's chain still verifies"
    );

    services.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
