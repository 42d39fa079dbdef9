//! The hierarchy as a peer sees it: chains built with this crate and verified with rustls'
//! webpki verifiers (through [`trellis_pki::verify`]), including path lengths, key usages,
//! rotation of the issuing CA, and revocation at every level.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;
use trellis_consensus::{PublicKey, Signer};
use trellis_pki::verify::{self, Refusal};
use trellis_pki::{
    DAY_MS, IssuingCa, NodeCertRequest, NodeCertificate, OrgCa, PkiError, RevocationReason,
    RevokedEntry, RootCa, Serial, chain_pem, now_ms, validator_identity,
};
use x509_parser::certificate::X509Certificate;

const YEAR_MS: i64 = 365 * DAY_MS;

fn validator(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

/// An org of the test consortium: its seed and its CA.
struct Org {
    seed: [u8; 32],
    ca: OrgCa,
}

fn admit(issuing: &IssuingCa, org: &str, seed_byte: u8) -> Org {
    let seed = [seed_byte; 32];
    let key = Signer::from_seed(seed).public_key().0;
    let issued = issuing
        .issue_org_certificate(org, key, now_ms() - 3_600_000, 90 * DAY_MS)
        .expect("org certificate");
    let ca =
        OrgCa::from_seed(&chain_pem(&[issued.pem, issuing.chain_pem()]), seed).expect("org loads");
    Org { seed, ca }
}

fn node(org: &Org, who: PublicKey, serial: u64) -> NodeCertificate {
    let now = now_ms();
    org.ca
        .issue_node_certificate(&NodeCertRequest {
            validator: who,
            serial: Serial::from_u64(serial).expect("serial"),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            not_before_ms: now - 3_600_000,
            not_after_ms: now + 30 * DAY_MS,
        })
        .expect("node certificate")
}

fn root() -> RootCa {
    named_root("test consortium root CA")
}

fn named_root(name: &str) -> RootCa {
    let now = now_ms();
    RootCa::generate(name, now - 3_600_000, now + 10 * YEAR_MS).expect("root")
}

fn issuing(root: &RootCa, name: &str) -> IssuingCa {
    let now = now_ms();
    root.issue_issuing_ca(name, now - 3_600_000, now + 5 * YEAR_MS)
        .expect("issuing CA")
}

fn revoked(serials: &[&str]) -> Vec<RevokedEntry> {
    serials
        .iter()
        .map(|s| RevokedEntry {
            serial_hex: s.to_string(),
            revoked_at_ms: now_ms() - 1000,
            reason: RevocationReason::KeyCompromise,
        })
        .collect()
}

/// A CRL of every given CA revoking `serials` (the beacon list, as every CA signs it).
fn crl_of_issuing(ca: &IssuingCa, serials: &[&str]) -> String {
    let now = now_ms();
    ca.crl_pem(&revoked(serials), 1, now, now + DAY_MS)
        .expect("CRL")
}

fn crl_of_root(ca: &RootCa, serials: &[&str]) -> String {
    let now = now_ms();
    ca.crl_pem(&revoked(serials), 1, now, now + DAY_MS)
        .expect("CRL")
}

fn crl_of_org(org: &Org, serials: &[&str]) -> String {
    let now = now_ms();
    org.ca
        .crl_pem(&revoked(serials), 1, now, now + DAY_MS)
        .expect("CRL")
}

fn check(root: &RootCa, chain: &str, crls: &[String]) -> Result<PublicKey, PkiError> {
    verify::verify_node_chain(root.cert_pem(), chain, crls, now_ms())
}

fn refusal(r: Result<PublicKey, PkiError>) -> Refusal {
    match r {
        Err(PkiError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn der(pem: &str) -> Vec<Vec<u8>> {
    verify::certificates_from_pem(pem)
        .expect("pem")
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

fn parsed(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).expect("parses").1
}

#[test]
fn the_hierarchy_has_its_path_lengths_and_key_usages() {
    let root = root();
    let ca = issuing(&root, "test issuing CA 1");
    let org = admit(&ca, "91350200MA2XN0001X", 1);
    let leaf = node(&org, validator(7), 7);

    // The chain a node presents: node, org, issuing CA (not the root, which peers hold).
    let chain = der(&leaf.chain_pem);
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[1], org.ca.cert_der());
    assert_eq!(chain[2], ca.cert_der());
    assert_eq!(der(&leaf.cert_pem), vec![chain[0].clone()]);

    let path_len = |d: &[u8]| {
        let c = parsed(d);
        let bc = c.basic_constraints().expect("ok").map(|b| b.value.clone());
        bc.map(|b| (b.ca, b.path_len_constraint))
    };
    assert_eq!(path_len(root.cert_der()), Some((true, Some(2))));
    assert_eq!(path_len(ca.cert_der()), Some((true, Some(1))));
    assert_eq!(path_len(org.ca.cert_der()), Some((true, Some(0))));
    assert_eq!(path_len(&chain[0]).map(|(ca, _)| ca), Some(false));

    for d in [root.cert_der(), ca.cert_der()] {
        let c = parsed(d);
        let ku = c.key_usage().expect("ok").expect("present").value;
        assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
        assert!(c.extended_key_usage().expect("ok").is_none());
    }
    let org_cert = parsed(org.ca.cert_der());
    let ku = org_cert.key_usage().expect("ok").expect("present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    let leaf_cert = parsed(&chain[0]);
    let ku = leaf_cert.key_usage().expect("ok").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = leaf_cert
        .extended_key_usage()
        .expect("ok")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    assert_eq!(org.ca.org(), "91350200MA2XN0001X");
    assert_eq!(hex::encode(leaf_cert.raw_serial()), "07");

    // It verifies against the root alone, with and without CRLs, and names its validator.
    assert_eq!(
        check(&root, &leaf.chain_pem, &[]).expect("valid"),
        validator(7)
    );
    let crls = vec![
        crl_of_root(&root, &[]),
        crl_of_issuing(&ca, &[]),
        crl_of_org(&org, &[]),
    ];
    assert_eq!(
        check(&root, &leaf.chain_pem, &crls).expect("valid"),
        validator(7)
    );
    assert_eq!(validator_identity(&chain[0]), Some(validator(7)));

    // As a server certificate too, for the names it carries.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root.cert_der().to_vec()))
        .expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = verify::server_verifier(
        Arc::new(roots),
        verify::crls_from_pem(&crls).expect("crls"),
        provider,
    )
    .expect("verifier");
    let certs: Vec<CertificateDer<'static>> = chain
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let now = UnixTime::since_unix_epoch(Duration::from_millis(now_ms() as u64));
    for name in ["localhost", "127.0.0.1"] {
        let name = ServerName::try_from(name).expect("name");
        server
            .verify_server_cert(&certs[0], &certs[1..], &name, &[], now)
            .expect("valid server certificate");
    }
    let wrong = ServerName::try_from("example.com").expect("name");
    assert!(
        server
            .verify_server_cert(&certs[0], &certs[1..], &wrong, &[], now)
            .is_err()
    );

    // Without the org certificate or the issuing CA the chain does not reach the root.
    let no_org = chain_pem(&[leaf.cert_pem.clone(), ca.cert_pem().to_string()]);
    assert_eq!(refusal(check(&root, &no_org, &[])), Refusal::UnknownIssuer);
    let no_issuing = chain_pem(&[leaf.cert_pem.clone(), org.ca.cert_pem().to_string()]);
    assert_eq!(
        refusal(check(&root, &no_issuing, &[])),
        Refusal::UnknownIssuer
    );
    // Nor against another consortium's root, whatever it is called.
    for (name, why) in [
        ("rogue root CA", Refusal::UnknownIssuer),
        ("test consortium root CA", Refusal::BadSignature),
    ] {
        assert_eq!(
            refusal(verify::verify_node_chain(
                named_root(name).cert_pem(),
                &leaf.chain_pem,
                &[] as &[String],
                now_ms()
            )),
            why
        );
    }
}

/// An rcgen issuer from an org's ed25519 seed, as an org that tried to go beyond its
/// certificate would make one.
fn raw_org_issuer(org: &Org) -> Issuer<'static, KeyPair> {
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&org.seed);
    let key =
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)
            .expect("org key");
    Issuer::from_ca_cert_der(&CertificateDer::from(org.ca.cert_der().to_vec()), key)
        .expect("issuer")
}

fn raw_leaf(name: &str, who: PublicKey) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names.push(rcgen::SanType::URI(
        trellis_pki::validator_uri(&who).try_into().expect("uri"),
    ));
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    (params, key)
}

#[test]
fn a_node_cannot_sign_and_an_org_cannot_issue_an_org() {
    let root = root();
    let ca = issuing(&root, "test issuing CA 1");
    let org = admit(&ca, "org-a", 1);
    let leaf = node(&org, validator(1), 1);

    // A node's certificate is no CA: a "certificate" its key signed does not verify, and
    // it cannot be loaded as one.
    let node_key = KeyPair::from_pem(&leaf.key_pem).expect("node key");
    let node_issuer = Issuer::from_ca_cert_der(
        &CertificateDer::from(der(&leaf.cert_pem)[0].clone()),
        node_key,
    )
    .expect("issuer");
    let (params, _) = raw_leaf("forged by a node", validator(9));
    let forged_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let forged = params.signed_by(&forged_key, &node_issuer).expect("signed");
    let forged_chain = chain_pem(&[forged.pem(), leaf.chain_pem.clone()]);
    let why = refusal(check(&root, &forged_chain, &[]));
    assert!(
        matches!(&why, Refusal::Other(s) if s.contains("EndEntityUsedAsCa")),
        "{why:?}"
    );
    assert!(matches!(
        IssuingCa::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(PkiError::BadCaCertificate(_))
    ));

    // An org's certificate has path length 0: a sub-org it signs (with its own key, since
    // `OrgCa` offers no way to) cannot issue a node that verifies.
    let org_issuer = raw_org_issuer(&org);
    let sub_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut sub = CertificateParams::default();
    sub.distinguished_name = rcgen::DistinguishedName::new();
    sub.distinguished_name.push(DnType::CommonName, "org-b");
    sub.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    sub.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let sub_cert = sub.signed_by(&sub_key, &org_issuer).expect("sub-org");
    let sub_issuer = Issuer::new(sub, sub_key);
    let (params, key) = raw_leaf("node of a sub-org", validator(2));
    let sub_leaf = params.signed_by(&key, &sub_issuer).expect("leaf");
    let sub_chain = chain_pem(&[sub_leaf.pem(), sub_cert.pem(), org.ca.chain_pem()]);
    let why = refusal(check(&root, &sub_chain, &[]));
    assert!(
        matches!(&why, Refusal::Other(s) if s.contains("PathLenConstraintViolated")),
        "{why:?}"
    );
    // ...while the very same leaf profile signed by the org itself is fine.
    let (params, key) = raw_leaf("node of org-a", validator(3));
    let direct = params.signed_by(&key, &org_issuer).expect("leaf");
    let direct_chain = chain_pem(&[direct.pem(), org.ca.chain_pem()]);
    assert_eq!(
        check(&root, &direct_chain, &[]).expect("valid"),
        validator(3)
    );

    // An org cannot be loaded with someone else's key, nor can an org act as issuing CA.
    assert!(matches!(
        OrgCa::from_seed(&org.ca.chain_pem(), [2; 32]),
        Err(PkiError::BadKey(_))
    ));
    assert!(matches!(
        OrgCa::from_seed(ca.cert_pem(), [1; 32]),
        Err(PkiError::BadKey(_) | PkiError::BadCaCertificate(_))
    ));

    // An issuing CA (path length 1) cannot put a second issuing CA between itself and orgs.
    let ca_key = KeyPair::from_pem(&ca.key_pem()).expect("ca key");
    let ca_issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert_der().to_vec()), ca_key)
        .expect("issuer");
    let mid_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut mid = CertificateParams::default();
    mid.distinguished_name = rcgen::DistinguishedName::new();
    mid.distinguished_name
        .push(DnType::CommonName, "a second-level issuing CA");
    mid.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    mid.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mid_cert = mid.signed_by(&mid_key, &ca_issuer).expect("mid");
    let mid_ca = IssuingCa::from_pem(
        &chain_pem(&[mid_cert.pem(), ca.chain_pem()]),
        &mid_key.serialize_pem(),
    )
    .expect("loads (it is a CA)");
    let deep = admit(&mid_ca, "org-deep", 4);
    let deep_leaf = node(&deep, validator(4), 4);
    let deep_chain = chain_pem(&[deep_leaf.chain_pem.clone(), ca.cert_pem().to_string()]);
    let why = refusal(check(&root, &deep_chain, &[]));
    assert!(
        matches!(&why, Refusal::Other(s) if s.contains("PathLenConstraintViolated")),
        "{why:?}"
    );
}

#[test]
fn a_node_is_revoked_through_its_org() {
    let root = root();
    let ca = issuing(&root, "test issuing CA 1");
    let org_a = admit(&ca, "org-a", 1);
    let org_b = admit(&ca, "org-b", 2);
    let a1 = node(&org_a, validator(1), 1);
    let a2 = node(&org_a, validator(2), 2);
    let b3 = node(&org_b, validator(3), 3);
    let ca_level = vec![crl_of_root(&root, &[]), crl_of_issuing(&ca, &["01"])];

    // Org a's CRL revokes node 1 (the beacon's list: every CA lists its serials; the
    // issuing CA's entry for "01" does not touch a node, which the org issued).
    let mut crls = ca_level.clone();
    crls.push(crl_of_org(&org_a, &["01"]));
    crls.push(crl_of_org(&org_b, &["01"]));
    assert_eq!(
        refusal(check(&root, &a1.chain_pem, &crls)),
        Refusal::Revoked
    );
    assert_eq!(
        check(&root, &a2.chain_pem, &crls).expect("a2"),
        validator(2)
    );
    assert_eq!(
        check(&root, &b3.chain_pem, &crls).expect("b3"),
        validator(3)
    );

    // A node of an org that published no CRL has unknown status and is accepted; one that
    // is listed only on another org's CRL is not revoked by it.
    let mut only_b = ca_level.clone();
    only_b.push(crl_of_org(&org_b, &["01"]));
    assert_eq!(
        check(&root, &a1.chain_pem, &only_b).expect("a1"),
        validator(1)
    );

    // A CRL signed by the wrong key (an org-b CRL claiming org-a's name is impossible; a
    // stale CRL of a different org key is not): the forged one is refused outright.
    let impostor = {
        let seed = [9u8; 32];
        let key = Signer::from_seed(seed).public_key().0;
        let issued = ca
            .issue_org_certificate("org-a", key, now_ms() - 3_600_000, 90 * DAY_MS)
            .expect("second org-a certificate with another key");
        Org {
            seed,
            ca: OrgCa::from_seed(&chain_pem(&[issued.pem, ca.chain_pem()]), seed).expect("loads"),
        }
    };
    let mut forged = ca_level.clone();
    forged.push(crl_of_org(&impostor, &[]));
    assert!(check(&root, &a1.chain_pem, &forged).is_err());

    // Revoking the org certificate on the issuing CA's CRL cuts every node of the org.
    let org_a_serial = hex::encode(parsed(org_a.ca.cert_der()).raw_serial());
    let removed = vec![
        crl_of_root(&root, &[]),
        crl_of_issuing(&ca, &[&org_a_serial]),
        crl_of_org(&org_a, &[]),
        crl_of_org(&org_b, &[]),
    ];
    for leaf in [&a1, &a2] {
        assert_eq!(
            refusal(check(&root, &leaf.chain_pem, &removed)),
            Refusal::Revoked
        );
    }
    assert_eq!(
        check(&root, &b3.chain_pem, &removed).expect("b3"),
        validator(3)
    );
    // Also when org a never published a CRL of its own.
    let removed_no_org_crl = vec![
        crl_of_root(&root, &[]),
        crl_of_issuing(&ca, &[&org_a_serial]),
    ];
    assert_eq!(
        refusal(check(&root, &a2.chain_pem, &removed_no_org_crl)),
        Refusal::Revoked
    );

    // Without the issuing CA's CRL nobody can tell whether the org was removed: refused,
    // although node certificates themselves may go unchecked.
    let no_issuing_crl = vec![crl_of_root(&root, &[]), crl_of_org(&org_a, &[])];
    assert_eq!(
        refusal(check(&root, &a2.chain_pem, &no_issuing_crl)),
        Refusal::UnknownRevocationStatus
    );
    let no_root_crl = vec![crl_of_issuing(&ca, &[])];
    assert_eq!(
        refusal(check(&root, &b3.chain_pem, &no_root_crl)),
        Refusal::UnknownRevocationStatus
    );
}

#[test]
fn rotation_of_the_issuing_ca_keeps_both_generations_valid_and_revocable() {
    let root = root();
    let old = issuing(&root, "test issuing CA 1");
    let old_org = admit(&old, "org-a", 1);
    let old_node = node(&old_org, validator(1), 1);

    // The root issues the next issuing CA (a new name); new orgs and renewals come from it.
    let new = issuing(&root, "test issuing CA 2");
    let new_org = admit(&new, "org-b", 2);
    let new_node = node(&new_org, validator(2), 2);
    // org-a renewed under the new CA keeps its key: a node certificate issued under its old
    // org certificate chains through the new one too.
    let renewed = {
        let key = Signer::from_seed(old_org.seed).public_key().0;
        let issued = new
            .issue_org_certificate("org-a", key, now_ms() - 3_600_000, 90 * DAY_MS)
            .expect("renewal");
        OrgCa::from_seed(&chain_pem(&[issued.pem, new.chain_pem()]), old_org.seed)
            .expect("renewed org")
    };
    let old_node_new_chain = chain_pem(&[old_node.cert_pem.clone(), renewed.chain_pem()]);

    let crls = |old_list: &[&str], new_list: &[&str], root_list: &[&str]| {
        vec![
            crl_of_root(&root, root_list),
            crl_of_issuing(&old, old_list),
            crl_of_issuing(&new, new_list),
        ]
    };
    let clean = crls(&[], &[], &[]);
    for (chain, who) in [
        (&old_node.chain_pem, 1),
        (&new_node.chain_pem, 2),
        (&old_node_new_chain, 1),
    ] {
        assert_eq!(check(&root, chain, &[]).expect("no CRLs"), validator(who));
        assert_eq!(check(&root, chain, &clean).expect("CRLs"), validator(who));
    }

    // A revoked org certificate of either generation is refused; the other stays valid.
    let old_serial = hex::encode(parsed(old_org.ca.cert_der()).raw_serial());
    let new_serial = hex::encode(parsed(new_org.ca.cert_der()).raw_serial());
    let old_revoked = crls(&[&old_serial], &[&old_serial], &[]);
    assert_eq!(
        refusal(check(&root, &old_node.chain_pem, &old_revoked)),
        Refusal::Revoked
    );
    assert!(check(&root, &new_node.chain_pem, &old_revoked).is_ok());
    assert!(check(&root, &old_node_new_chain, &old_revoked).is_ok());
    let new_revoked = crls(&[&new_serial], &[&new_serial], &[]);
    assert_eq!(
        refusal(check(&root, &new_node.chain_pem, &new_revoked)),
        Refusal::Revoked
    );
    assert!(check(&root, &old_node.chain_pem, &new_revoked).is_ok());

    // A revoked node of either generation, on its org's CRL.
    for (org, leaf, serial) in [(&old_org, &old_node, "01"), (&new_org, &new_node, "02")] {
        let mut list = clean.clone();
        list.push(crl_of_org(org, &[serial]));
        assert_eq!(
            refusal(check(&root, &leaf.chain_pem, &list)),
            Refusal::Revoked
        );
    }

    // The old CRL must stay loaded while the old generation is in service.
    let only_new = vec![crl_of_root(&root, &[]), crl_of_issuing(&new, &[])];
    assert_eq!(
        refusal(check(&root, &old_node.chain_pem, &only_new)),
        Refusal::UnknownRevocationStatus
    );
    assert!(check(&root, &new_node.chain_pem, &only_new).is_ok());

    // Retiring the old issuing CA on the root's CRL cuts everything still chained to it.
    let old_ca_serial = hex::encode(parsed(old.cert_der()).raw_serial());
    let retired = crls(&[], &[], &[&old_ca_serial]);
    assert_eq!(
        refusal(check(&root, &old_node.chain_pem, &retired)),
        Refusal::Revoked
    );
    assert!(check(&root, &new_node.chain_pem, &retired).is_ok());
    assert!(check(&root, &old_node_new_chain, &retired).is_ok());
}

#[test]
fn validity_is_bounded_by_the_issuer() {
    let now = now_ms();
    let root = RootCa::generate("short root", now - 1000, now + 10 * DAY_MS).expect("root");
    assert!(matches!(
        root.issue_issuing_ca("too long", now, now + 20 * DAY_MS),
        Err(PkiError::InvalidTime(_))
    ));
    let ca = root
        .issue_issuing_ca("issuing", now - 1000, now + 5 * DAY_MS)
        .expect("issuing");
    let seed = [1u8; 32];
    let key = Signer::from_seed(seed).public_key().0;
    assert!(matches!(
        ca.issue_org_certificate("org-a", key, now, 90 * DAY_MS),
        Err(PkiError::InvalidTime(_))
    ));
    let issued = ca
        .issue_org_certificate("org-a", key, now - 1000, 4 * DAY_MS)
        .expect("org certificate");
    let org = Org {
        seed,
        ca: OrgCa::from_seed(&chain_pem(&[issued.pem, ca.chain_pem()]), seed).expect("org"),
    };
    assert!(org.ca.not_after_ms() <= now + 5 * DAY_MS);
    let too_long = org.ca.issue_node_certificate(&NodeCertRequest {
        validator: validator(1),
        serial: Serial::from_u64(1).expect("serial"),
        hosts: vec!["localhost".into()],
        not_before_ms: now,
        not_after_ms: now + 5 * DAY_MS,
    });
    assert!(matches!(too_long, Err(PkiError::InvalidTime(_))));
    let within = org.ca.issue_node_certificate(&NodeCertRequest {
        validator: validator(1),
        serial: Serial::from_u64(1).expect("serial"),
        hosts: vec!["localhost".into()],
        not_before_ms: now,
        not_after_ms: now + 3 * DAY_MS,
    });
    assert!(within.is_ok(), "within the org certificate");
    let bad_host = org.ca.issue_node_certificate(&NodeCertRequest {
        validator: validator(1),
        serial: Serial::from_u64(1).expect("serial"),
        hosts: vec!["h\u{e9}te.example".into()],
        not_before_ms: now,
        not_after_ms: now + DAY_MS,
    });
    assert!(matches!(bad_host, Err(PkiError::InvalidHost(_))));

    // An expired node certificate is refused.
    let expired = org
        .ca
        .issue_node_certificate(&NodeCertRequest {
            validator: validator(2),
            serial: Serial::from_u64(2).expect("serial"),
            hosts: vec!["localhost".into()],
            not_before_ms: now - 2 * DAY_MS,
            not_after_ms: now - DAY_MS,
        })
        .expect("issued");
    assert_eq!(
        refusal(check(&root, &expired.chain_pem, &[])),
        Refusal::Expired
    );
    assert!(!format!("{expired:?}").contains("PRIVATE KEY"));
    assert!(!format!("{root:?} {ca:?} {:?}", org.ca).contains("PRIVATE KEY"));
}
