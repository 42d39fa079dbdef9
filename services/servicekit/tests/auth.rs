//! API tokens on real databases: issue and verify, every refusal, rotation and retirement,
//! the published key set, and two processes sharing one database.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::str::FromStr;
use std::time::Duration;
use trellis_servicekit::auth::key_id;
use trellis_servicekit::testing::test_databases;
use trellis_servicekit::{AuthError, Claims, Db, Keyring, Role, TokenConfig, TokenService};

fn now_s() -> u64 {
    (trellis_servicekit::now_ms() / 1000) as u64
}

async fn service(db: &Db, ttl: Duration) -> TokenService {
    let config = TokenConfig {
        ttl,
        ..TokenConfig::default()
    };
    // One fixed test keyring, so several services on one database open each other's keys.
    let keyring = Keyring::from_hex_keys("test", &[("test", &"42".repeat(32))]).unwrap();
    TokenService::new(db.clone(), keyring, config)
        .await
        .unwrap()
}

fn claims(svc: &TokenService) -> Claims {
    Claims {
        iss: svc.config().issuer.clone(),
        aud: svc.config().audience.clone(),
        sub: "user-1".into(),
        role: Role::EnterpriseAdmin,
        org: Some("91350100M000100Y43".into()),
        iat: now_s(),
        exp: now_s() + 600,
        jti: "j".into(),
    }
}

/// A token signed by a key the service never stored.
fn foreign_token(claims: &Claims, kid: Option<&str>) -> String {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(
        kid.map(str::to_string)
            .unwrap_or_else(|| key_id(pair.public_key().as_ref())),
    );
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8.as_ref())).unwrap()
}

fn b64(json: serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

#[test]
fn roles_by_name() {
    for role in Role::ALL {
        assert_eq!(Role::from_str(role.as_str()).unwrap(), role);
        assert_eq!(
            serde_json::to_value(role).unwrap(),
            serde_json::json!(role.as_str())
        );
    }
    assert_eq!(Role::EnterpriseAdmin.as_str(), "enterprise_admin");
    assert!(Role::from_str("root").is_err());
    assert!(Role::from_str("Operator").is_err());
}

#[tokio::test]
async fn issue_then_verify() {
    for (backend, db) in test_databases().await {
        let svc = service(&db, Duration::from_secs(900)).await;
        let (token, exp) = svc
            .issue("user-1", Role::Regulator, Some("org-9"))
            .await
            .unwrap();
        assert!(exp >= now_s() + 899 && exp <= now_s() + 901, "{backend}");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid, svc.signing_kid().await);
        let c = svc.verify(&token).await.unwrap();
        assert_eq!(c.sub, "user-1");
        assert_eq!(c.role, Role::Regulator);
        assert_eq!(c.org.as_deref(), Some("org-9"));
        assert_eq!(c.iss, "trellis");
        assert_eq!(c.aud, "trellis-api");
        assert_eq!(c.exp, exp);
        assert_eq!(c.jti.len(), 32);
        // No org: the claim is absent and comes back as None.
        let (token, _) = svc.issue("op", Role::Operator, None).await.unwrap();
        assert_eq!(svc.verify(&token).await.unwrap().org, None);
        // Each token has its own id.
        let (t2, _) = svc.issue("op", Role::Operator, None).await.unwrap();
        assert_ne!(
            svc.verify(&token).await.unwrap().jti,
            svc.verify(&t2).await.unwrap().jti
        );
    }
}

#[tokio::test]
async fn wrong_audience_issuer_and_expired_are_refused() {
    for (backend, db) in test_databases().await {
        let svc = service(&db, Duration::from_secs(900)).await;
        let mut c = claims(&svc);
        c.aud = "another-api".into();
        let t = svc.issue_with(&c).await.unwrap();
        assert!(
            matches!(svc.verify(&t).await, Err(AuthError::WrongAudience)),
            "{backend}"
        );

        let mut c = claims(&svc);
        c.iss = "someone-else".into();
        let t = svc.issue_with(&c).await.unwrap();
        assert!(matches!(svc.verify(&t).await, Err(AuthError::WrongIssuer)));

        let mut c = claims(&svc);
        c.iat = now_s() - 3600;
        c.exp = now_s() - 120;
        let t = svc.issue_with(&c).await.unwrap();
        assert!(matches!(svc.verify(&t).await, Err(AuthError::Expired)));

        // Within the leeway is still fine.
        let mut c = claims(&svc);
        c.exp = now_s() - 2;
        let t = svc.issue_with(&c).await.unwrap();
        assert!(svc.verify(&t).await.is_ok());

        // A token with a tiny lifetime really expires.
        let short = service(&db, Duration::from_secs(1)).await;
        let (t, exp) = short.issue("u", Role::Bank, None).await.unwrap();
        assert!(exp <= now_s() + 1);
        assert!(short.verify(&t).await.is_ok());
    }
}

#[tokio::test]
async fn an_edited_payload_is_refused() {
    let (_, db) = test_databases().await.remove(1);
    let svc = service(&db, Duration::from_secs(900)).await;
    let (good, _) = svc
        .issue("user-1", Role::EnterpriseMember, Some("a"))
        .await
        .unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = serde_json::json!("operator");
    let forged = format!("{}.{}.{}", parts[0], b64(payload), parts[2]);
    assert!(matches!(
        svc.verify(&forged).await,
        Err(AuthError::BadSignature)
    ));
}

#[tokio::test]
async fn foreign_keys_and_algorithms_are_refused() {
    for (backend, db) in test_databases().await {
        let svc = service(&db, Duration::from_secs(900)).await;
        let c = claims(&svc);

        // Signed by a key pair the service never had.
        let t = foreign_token(&c, None);
        assert!(
            matches!(svc.verify(&t).await, Err(AuthError::UnknownKey)),
            "{backend}"
        );
        // A foreign key claiming the service's kid: the signature does not verify.
        let kid = svc.signing_kid().await.unwrap();
        let t = foreign_token(&c, Some(&kid));
        assert!(matches!(svc.verify(&t).await, Err(AuthError::BadSignature)));

        // alg none, with and without a signature.
        let unsigned = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
            b64(serde_json::to_value(&c).unwrap())
        );
        assert!(svc.verify(&unsigned).await.is_err());
        let none_sig = format!("{unsigned}c2ln");
        assert!(svc.verify(&none_sig).await.is_err());

        // HS256 keyed with the public key (the classic algorithm confusion) and with a secret.
        let jwks = svc.jwks().await;
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let public = URL_SAFE_NO_PAD.decode(x).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        for secret in [public.as_slice(), b"secret".as_slice()] {
            let t = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
            assert!(matches!(
                svc.verify(&t).await,
                Err(AuthError::UnsupportedAlgorithm)
            ));
        }

        // No kid.
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &c,
            &EncodingKey::from_ed_der(pkcs8.as_ref()),
        )
        .unwrap();
        assert!(matches!(svc.verify(&t).await, Err(AuthError::MissingKeyId)));

        // Garbage.
        for junk in ["", "abc", "a.b.c", "....", "Bearer x"] {
            assert!(matches!(svc.verify(junk).await, Err(AuthError::Malformed)));
        }
    }
}

#[tokio::test]
async fn rotation_and_retirement() {
    for (backend, db) in test_databases().await {
        let ttl = Duration::from_millis(1500);
        let svc = service(&db, ttl).await;
        let old_kid = svc.signing_kid().await.unwrap();
        // Long-lived token (issue_with) so only the key's retirement can end it.
        let old_token = svc.issue_with(&claims(&svc)).await.unwrap();

        let new_kid = svc.rotate().await.unwrap();
        assert_ne!(new_kid, old_kid);
        assert_eq!(svc.signing_kid().await, Some(new_kid.clone()), "{backend}");
        let (new_token, _) = svc.issue("u", Role::Operator, None).await.unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token).unwrap().kid,
            Some(new_kid.clone())
        );
        // Both keys verify and are published.
        assert!(svc.verify(&old_token).await.is_ok());
        assert!(svc.verify(&new_token).await.is_ok());
        assert_eq!(kids(&svc.jwks().await), sorted(&[&old_kid, &new_kid]));

        // Retired: still verifies for one token lifetime ...
        svc.retire(&old_kid).await.unwrap();
        assert!(svc.verify(&old_token).await.is_ok(), "{backend}");
        assert_eq!(kids(&svc.jwks().await), sorted(&[&old_kid, &new_kid]));
        // ... then is neither accepted nor published.
        // Why a sleep: the lifetime runs on the wall clock; once past, the answers below are fixed.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        assert!(matches!(
            svc.verify(&old_token).await,
            Err(AuthError::UnknownKey)
        ));
        assert_eq!(kids(&svc.jwks().await), sorted(&[&new_kid]));
        assert!(svc.verify(&new_token).await.is_ok());

        // Retiring the signing key hands signing to a new key; unknown kids are an error.
        svc.retire(&new_kid).await.unwrap();
        let next = svc.signing_kid().await.unwrap();
        assert_ne!(next, new_kid);
        assert_ne!(next, old_kid);
        let (t, _) = svc.issue("u", Role::Operator, None).await.unwrap();
        assert!(svc.verify(&t).await.is_ok());
        assert!(matches!(
            svc.retire("0000000000000000").await,
            Err(AuthError::UnknownKey)
        ));
        // Retiring twice is harmless and keeps the first retirement time.
        svc.retire(&new_kid).await.unwrap();
    }
}

#[tokio::test]
async fn jwks_is_rfc_8037() {
    for (_, db) in test_databases().await {
        let svc = service(&db, Duration::from_secs(900)).await;
        let jwks = svc.jwks().await;
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        let x = k["x"].as_str().unwrap();
        assert!(!x.contains('=') && !x.contains('+') && !x.contains('/'));
        let public = URL_SAFE_NO_PAD.decode(x).unwrap();
        assert_eq!(public.len(), 32);
        assert_eq!(k["kid"], key_id(&public));
        assert_eq!(k["kid"].as_str(), svc.signing_kid().await.as_deref());
        // The published key really verifies issued tokens (as an outside verifier would).
        let (t, _) = svc.issue("u", Role::Bank, None).await.unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        v.set_audience(&["trellis-api"]);
        let data = jsonwebtoken::decode::<Claims>(
            &t,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims.role, Role::Bank);
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_database_shares_keys() {
    for (backend, db) in test_databases().await {
        let keyring = Keyring::generate("shared").unwrap();
        let a = TokenService::new(db.clone(), keyring.clone(), TokenConfig::default())
            .await
            .unwrap();
        let b = TokenService::new(db.clone(), keyring.clone(), TokenConfig::default())
            .await
            .unwrap();
        // The second found the first one's key instead of making its own.
        assert_eq!(a.signing_kid().await, b.signing_kid().await, "{backend}");
        let (t, _) = a.issue("u", Role::Operator, None).await.unwrap();
        assert!(b.verify(&t).await.is_ok());

        // A rotates; B has never seen the new key and finds it on first use.
        a.rotate().await.unwrap();
        let (t, _) = a.issue("u", Role::Operator, None).await.unwrap();
        assert!(b.verify(&t).await.is_ok(), "{backend}");
        // And B signs with it from then on, so A verifies B's tokens too.
        let (tb, _) = b.issue("v", Role::Bank, None).await.unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&tb).unwrap().kid,
            a.signing_kid().await
        );
        assert!(a.verify(&tb).await.is_ok());

        // A service whose keyring cannot open the stored keys fails loudly at start.
        let stranger = TokenService::new(
            db.clone(),
            Keyring::generate("other").unwrap(),
            TokenConfig::default(),
        )
        .await;
        assert!(matches!(stranger, Err(AuthError::Seal(_))), "{backend}");
    }
}

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn sorted(kids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = kids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
