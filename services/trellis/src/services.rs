//! `trellis serve`: the identity and membership services on one HTTP address, over PostgreSQL
//! or SQLite, reaching the chain through one node's client API. `--target` picks the modules
//! (`identity`, `membership`, or `all`); readiness is green only when the database answers and
//! the node does.

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinHandle;
use trellis_identity::{IdentityConfig, IdentityService};
use trellis_membership::ca::{IssuingCa, OrgCa, RenewalPolicy};
use trellis_membership::{MembershipConfig, MembershipService};
use trellis_node::node::KeyFile;
use trellis_servicekit::{Db, Keyring, NodeClient, Problem, TokenConfig, TokenService};

/// A service module `--target` can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Identity,
    Membership,
}

/// Parses `identity,membership` or `all`.
pub fn parse_targets(s: &str) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        match part {
            "all" => out.extend([Target::Identity, Target::Membership]),
            "identity" => out.push(Target::Identity),
            "membership" => out.push(Target::Membership),
            other => bail!("--target: unknown service `{other}` (identity, membership, all)"),
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        bail!("--target: name at least one service");
    }
    Ok(out)
}

/// `services.json`. Relative paths are relative to the file. Every field can be overridden
/// with `TRELLIS__SERVICES__<FIELD>` (e.g. `TRELLIS__SERVICES__DATABASE_URL`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesConfig {
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite://PATH`.
    pub database_url: String,
    /// A node's client API.
    pub node_url: String,
    pub chain_id: String,
    /// Operator account key (KeyFile JSON) of the identity service: signs identity
    /// attestations and admission proposals.
    pub operator_key: PathBuf,
    /// Operator account key of the consortium CA: signs certificate revocations.
    pub ca_operator_key: PathBuf,
    /// Keyring (JSON) sealing personal data at rest.
    pub pii_keys: PathBuf,
    /// Keyring (JSON) sealing the JWT signing keys at rest.
    pub token_keys: PathBuf,
    /// The issuing CA's certificate, optionally followed by the root's (`ca/issuing-ca.pem`).
    pub ca_cert: PathBuf,
    /// The issuing CA's private key (never the root's: that one stays offline).
    pub ca_key: PathBuf,
    /// Issuing CAs replaced by a rotation whose certificates are still in service: their
    /// CRLs keep being signed.
    #[serde(default)]
    pub previous_cas: Vec<CaFiles>,
    /// Org certificates issued outside the service by its issuing CA (the genesis members'),
    /// managed as if issued by it: renewed, and revoked when their member is removed.
    #[serde(default)]
    pub org_certificates: Vec<PathBuf>,
    /// Orgs whose node CRL the service signs on their behalf: their org certificate and their
    /// org key file.
    #[serde(default)]
    pub delegated_orgs: Vec<DelegatedOrg>,
    /// Where the CRL is rewritten when the beacon's revocations change (nodes watch it).
    #[serde(default)]
    pub crl_path: Option<PathBuf>,
    #[serde(default = "default_ttl")]
    pub token_ttl_s: u64,
    #[serde(default = "default_validity")]
    pub cert_validity_days: u64,
    #[serde(default = "default_renew")]
    pub cert_renew_before_days: u64,
    #[serde(default = "default_alert")]
    pub cert_alert_before_days: u64,
}

/// A CA's certificate and key files.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An org that delegated its node CRL: its certificate (optionally with the chain above it)
/// and its org key (KeyFile JSON).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegatedOrg {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_ttl() -> u64 {
    900
}
fn default_validity() -> u64 {
    90
}
fn default_renew() -> u64 {
    30
}
fn default_alert() -> u64 {
    14
}

impl ServicesConfig {
    /// Loads the file, resolves relative paths, then applies `TRELLIS__SERVICES__*` overrides.
    pub fn load(path: &Path, env: impl Iterator<Item = (String, String)>) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        for (k, v) in env {
            let Some(field) = k.strip_prefix("TRELLIS__SERVICES__") else {
                continue;
            };
            let field = field.to_lowercase();
            let parsed = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            if let Some(obj) = value.as_object_mut() {
                obj.insert(field, parsed);
            }
        }
        let mut config: ServicesConfig =
            serde_json::from_value(value).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.operator_key,
            &mut config.ca_operator_key,
            &mut config.pii_keys,
            &mut config.token_keys,
            &mut config.ca_cert,
            &mut config.ca_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let extra = config
            .previous_cas
            .iter_mut()
            .flat_map(|c| [&mut c.cert, &mut c.key])
            .chain(config.org_certificates.iter_mut())
            .chain(
                config
                    .delegated_orgs
                    .iter_mut()
                    .flat_map(|d| [&mut d.cert, &mut d.key]),
            )
            .chain(config.crl_path.as_mut());
        for p in extra {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(rest) = config.database_url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
        {
            config.database_url = format!("sqlite://{}", base.join(rest).display());
        }
        Ok(config)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Services running in this process.
pub struct RunningServices {
    pub addr: SocketAddr,
    pub targets: Vec<Target>,
    db: Db,
    server: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Clone)]
struct Shared {
    db: Db,
    node: NodeClient,
    targets: Vec<Target>,
}

impl RunningServices {
    pub async fn start(config: ServicesConfig, targets: Vec<Target>) -> Result<RunningServices> {
        let db = Db::connect(&config.database_url)
            .await
            .context("cannot open the services database")?;
        let node = NodeClient::new(config.node_url.clone()).map_err(|e| anyhow!("{e}"))?;
        let token_keys = Keyring::from_json(&read(&config.token_keys)?)
            .map_err(|e| anyhow!("{}: {e}", config.token_keys.display()))?;
        let tokens = TokenService::new(
            db.clone(),
            token_keys,
            TokenConfig {
                ttl: Duration::from_secs(config.token_ttl_s.max(1)),
                ..TokenConfig::default()
            },
        )
        .await
        .map_err(|e| anyhow!("token keys: {e}"))?;
        let operator = KeyFile::load(&config.operator_key)?.signer()?;
        let ca_operator = KeyFile::load(&config.ca_operator_key)?.signer()?;
        // Each service allocates its own key's nonces; sharing one account would make them
        // collide.
        if operator.public_key() == ca_operator.public_key() {
            bail!("operator_key and ca_operator_key must be different accounts");
        }
        let day_ms = 24 * 3600 * 1000i64;
        let mut app = Router::new();
        let mut doc = utoipa::openapi::OpenApiBuilder::new()
            .info(
                utoipa::openapi::InfoBuilder::new()
                    .title("Trellis services API")
                    .version("1")
                    .build(),
            )
            .build();
        if targets.contains(&Target::Identity) {
            let pii = Keyring::from_json(&read(&config.pii_keys)?)
                .map_err(|e| anyhow!("{}: {e}", config.pii_keys.display()))?;
            let identity = IdentityService::start(
                db.clone(),
                tokens.clone(),
                node.clone(),
                IdentityConfig {
                    chain_id: config.chain_id.clone(),
                    verifier: operator.clone(),
                    pii,
                    max_document_bytes: 5 * 1024 * 1024,
                    attestation_level: 2,
                    chain_wait: Duration::from_secs(20),
                },
            )
            .await?;
            app = app.merge(identity.router());
            doc.merge(IdentityService::openapi());
        }
        if targets.contains(&Target::Membership) {
            let ca = IssuingCa::from_pem(&read(&config.ca_cert)?, &read(&config.ca_key)?)
                .map_err(|e| anyhow!("issuing CA {}: {e}", config.ca_cert.display()))?;
            let mut previous_cas = Vec::new();
            for files in &config.previous_cas {
                previous_cas.push(
                    IssuingCa::from_pem(&read(&files.cert)?, &read(&files.key)?)
                        .map_err(|e| anyhow!("issuing CA {}: {e}", files.cert.display()))?,
                );
            }
            let mut org_certificates = Vec::new();
            for p in &config.org_certificates {
                org_certificates.push(read(p)?);
            }
            let mut delegated_orgs = Vec::new();
            for d in &config.delegated_orgs {
                let seed = KeyFile::load(&d.key)?.seed()?;
                delegated_orgs.push(
                    OrgCa::from_seed(&read(&d.cert)?, seed)
                        .map_err(|e| anyhow!("delegated org {}: {e}", d.cert.display()))?,
                );
            }
            let policy = RenewalPolicy::new(
                config.cert_validity_days as i64 * day_ms,
                config.cert_renew_before_days as i64 * day_ms,
                config.cert_alert_before_days as i64 * day_ms,
            )
            .map_err(|e| anyhow!("certificate policy: {e}"))?;
            let membership = MembershipService::start(
                db.clone(),
                tokens.clone(),
                node.clone(),
                MembershipConfig {
                    chain_id: config.chain_id.clone(),
                    ca,
                    previous_cas,
                    org_certificates,
                    delegated_orgs,
                    ca_operator,
                    policy,
                    crl_path: config.crl_path.clone(),
                    poll_interval: Duration::from_secs(2),
                    chain_wait: Duration::from_secs(20),
                },
            )
            .await?;
            app = app.merge(membership.router());
            doc.merge(MembershipService::openapi());
        }
        let shared = Shared {
            db: db.clone(),
            node,
            targets: targets.clone(),
        };
        let app = app
            .merge(
                Router::new()
                    .route("/v1/chain", get(chain_info))
                    .route("/v1/chain/accounts/{key}", get(chain_account))
                    .route("/healthz", get(|| async { "ok" }))
                    .route("/readyz", get(ready))
                    .with_state(shared),
            )
            .route("/openapi.json", get(move || async move { Json(doc) }))
            .fallback(|| async { Problem::not_found("not-found", "no such route") });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "services API stopped");
            }
        });
        tracing::info!(%addr, ?targets, "services started");
        Ok(RunningServices {
            addr,
            targets,
            db,
            server,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.db.close().await;
    }
}

/// The chain this deployment serves and the node it talks to: what a CLI needs to sign.
async fn chain_info(State(s): State<Shared>) -> Result<Json<serde_json::Value>, Problem> {
    let status = s
        .node
        .get_json("/v1/status")
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_GATEWAY, "node-unreachable", e.to_string()))?
        .ok_or_else(|| Problem::new(StatusCode::BAD_GATEWAY, "node-unreachable", "no status"))?;
    Ok(Json(serde_json::json!({
        "chain_id": status["chain_id"],
        "committed_height": status["committed_height"],
        "node": s.node.base(),
    })))
}

/// A chain account (public key, org, role, next nonce), read from the node.
async fn chain_account(
    State(s): State<Shared>,
    UrlPath(key): UrlPath<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    if key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Problem::bad_request("key", "expected 32 bytes of hex"));
    }
    s.node
        .get_json(&format!("/v1/accounts/{key}"))
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_GATEWAY, "node-unreachable", e.to_string()))?
        .map(Json)
        .ok_or_else(|| Problem::not_found("unknown-account", "no such account").with_field("key"))
}

async fn ready(State(s): State<Shared>) -> impl IntoResponse {
    let db_ok = sqlx::query("SELECT 1").execute(s.db.pool()).await.is_ok();
    let node_ok = s.node.get_json("/v1/status").await.is_ok();
    let body = serde_json::json!({
        "database": db_ok,
        "node": node_ok,
        "targets": s.targets.iter().map(|t| format!("{t:?}").to_lowercase()).collect::<Vec<_>>(),
    });
    let code = if db_ok && node_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Writes the services' files for a devnet under `dir/services/` (once; existing files are
/// kept): config (the issuing CA, the genesis orgs' certificates and delegated node CRLs),
/// keyrings for personal data and token keys, the SQLite database location.
pub fn init_devnet_files(dir: &Path, chain_id: &str, node_url: &str) -> Result<PathBuf> {
    let sdir = dir.join("services");
    std::fs::create_dir_all(sdir.join("keys"))
        .with_context(|| format!("cannot create {}", sdir.display()))?;
    let config_path = sdir.join("config.json");
    if config_path.exists() {
        return Ok(config_path);
    }
    if !dir.join("ca/issuing-ca.pem").exists() {
        bail!(
            "{} was made by an older trellis without the root/issuing CA hierarchy; \
             initialise a new devnet directory",
            dir.display()
        );
    }
    // The genesis member orgs (the devnet made their org certificates) delegate their node
    // CRL to the membership service, which holds their keys only in a devnet.
    let genesis_orgs: Vec<(&str, &str)> = crate::devnet::ACCOUNTS
        .iter()
        .filter(|(_, role, org)| {
            *role == "member" && dir.join(format!("ca/orgs/{org}.pem")).exists()
        })
        .map(|(name, _, org)| (*org, *name))
        .collect();
    if !dir.join("accounts/ca-operator.json").exists() {
        bail!(
            "{} was made by an older trellis without a CA operator account; \
             initialise a new devnet directory",
            dir.display()
        );
    }
    for (file, kid) in [("keys/pii.json", "pii-1"), ("keys/tokens.json", "tokens-1")] {
        let ring = Keyring::generate(kid).map_err(|e| anyhow!("{e}"))?;
        crate::local::write_secret(&sdir.join(file), &ring.to_json())?;
    }
    let config = ServicesConfig {
        listen: format!("127.0.0.1:{}", crate::local::free_port()?).parse()?,
        database_url: "sqlite://trellis.db".into(),
        node_url: node_url.into(),
        chain_id: chain_id.into(),
        operator_key: "../accounts/operator.json".into(),
        ca_operator_key: "../accounts/ca-operator.json".into(),
        pii_keys: "keys/pii.json".into(),
        token_keys: "keys/tokens.json".into(),
        ca_cert: "../ca/issuing-ca.pem".into(),
        ca_key: "../ca/issuing-ca-key.pem".into(),
        previous_cas: Vec::new(),
        org_certificates: genesis_orgs
            .iter()
            .map(|(org, _)| format!("../ca/orgs/{org}.pem").into())
            .collect(),
        delegated_orgs: genesis_orgs
            .iter()
            .map(|(org, account)| DelegatedOrg {
                cert: format!("../ca/orgs/{org}.pem").into(),
                key: format!("../accounts/{account}.json").into(),
            })
            .collect(),
        crl_path: Some("../ca/crl.pem".into()),
        token_ttl_s: default_ttl(),
        cert_validity_days: default_validity(),
        cert_renew_before_days: default_renew(),
        cert_alert_before_days: default_alert(),
    };
    crate::local::write(&config_path, &serde_json::to_string_pretty(&config)?)?;
    Ok(config_path)
}
