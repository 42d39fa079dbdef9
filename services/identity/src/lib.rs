//! Trellis identity service: onboarding applications, real-name review, identity attestations,
//! API tokens.
//!
//! An enterprise applies ([`applications`]), an operator reviews the real-name data and decides
//! ([`review`]); on approval the service commits to the verified identity with a salted hash and
//! puts only that commitment on the beacon, signed by the verifier account, followed by the
//! proposal to admit the org ([`outbox`]). Personal data stays in the service's database,
//! sealed with the [`Keyring`]. [`auth_routes`] issues the API tokens every Trellis service
//! accepts: by chain key (challenge and signature) or by API key.
//!
//! Regulators and banks never receive personal data from this service: every application route
//! refuses them.

#![forbid(unsafe_code)]

pub mod applications;
pub mod auth_routes;
mod chain;
pub mod domain;
pub mod outbox;
pub mod review;
mod store;
mod util;

use axum::Router;
use axum::extract::FromRef;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use trellis_servicekit::{Db, Keyring, NodeClient, TokenService};
use utoipa::OpenApi;

pub use review::{COMMITMENT_DOMAIN, IdentityFacts, commitment};
pub use store::{DocumentMeta, Status};

/// Default bound on one uploaded document: 5 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;
/// Default identity assurance level of attestations.
pub const DEFAULT_ATTESTATION_LEVEL: u32 = 2;
/// Default time a decision request waits for the chain.
pub const DEFAULT_CHAIN_WAIT: Duration = Duration::from_secs(20);

/// What the identity service needs besides its database, tokens and node.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The beacon chain id transactions are signed for.
    pub chain_id: String,
    /// The verifier: an operator account key that signs attestations and admission proposals.
    pub verifier: trellis_types::Signer,
    /// Seals personal data, documents, salts and replayed answers at rest.
    pub pii: Keyring,
    /// Largest accepted document upload, in bytes (default 5 MiB).
    pub max_document_bytes: usize,
    /// Identity assurance level put in attestations, 1 to 3 (default 2).
    pub attestation_level: u32,
    /// How long a decision request waits for the chain to take the proposal (default 20 s).
    pub chain_wait: Duration,
}

impl IdentityConfig {
    /// A configuration with the default document bound, attestation level and chain wait.
    pub fn new(
        chain_id: impl Into<String>,
        verifier: trellis_types::Signer,
        pii: Keyring,
    ) -> IdentityConfig {
        IdentityConfig {
            chain_id: chain_id.into(),
            verifier,
            pii,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            attestation_level: DEFAULT_ATTESTATION_LEVEL,
            chain_wait: DEFAULT_CHAIN_WAIT,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.chain_id.is_empty(), "identity: chain_id is empty");
        anyhow::ensure!(
            (1..=trellis_types::actions::MAX_ATTESTATION_LEVEL).contains(&self.attestation_level),
            "identity: attestation_level must be 1 to {}, got {}",
            trellis_types::actions::MAX_ATTESTATION_LEVEL,
            self.attestation_level
        );
        anyhow::ensure!(
            self.max_document_bytes > 0,
            "identity: max_document_bytes must be positive"
        );
        Ok(())
    }
}

/// The state every route shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) tokens: TokenService,
    pub(crate) node: NodeClient,
    pub(crate) config: IdentityConfig,
    /// Wakes the outbox worker (after a decision enqueued chain work).
    pub(crate) nudge: Arc<Notify>,
}

impl FromRef<AppState> for TokenService {
    fn from_ref(s: &AppState) -> TokenService {
        s.inner.tokens.clone()
    }
}

/// The identity service: its routes and its outbox worker. Cheap to clone.
#[derive(Clone)]
pub struct IdentityService {
    state: AppState,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService")
            .field("chain_id", &self.state.inner.config.chain_id)
            .field("node", &self.state.inner.node.base())
            .finish_non_exhaustive()
    }
}

impl IdentityService {
    /// Starts the outbox worker (resubmits chain work left by a previous run) and the purge of
    /// stored idempotent answers past their retry window (now, then every ten minutes), and
    /// returns the service.
    pub async fn start(
        db: Db,
        tokens: TokenService,
        node: NodeClient,
        config: IdentityConfig,
    ) -> anyhow::Result<IdentityService> {
        config.check()?;
        let nudge = Arc::new(Notify::new());
        let state = AppState {
            inner: Arc::new(Inner {
                db: db.clone(),
                tokens,
                node: node.clone(),
                config: config.clone(),
                nudge: nudge.clone(),
            }),
        };
        applications::spawn_answer_purge(db.clone());
        outbox::Worker::new(db, node, config.chain_id, config.verifier, nudge).spawn();
        Ok(IdentityService { state })
    }

    /// Every route of the service, state applied: onboarding applications, documents,
    /// decisions, login and API keys, and the JWKS.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(applications::router())
            .merge(review::router())
            .merge(auth_routes::router())
            .with_state(self.state.clone())
    }

    /// The OpenAPI document of every route.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        let mut doc = ApiDoc::openapi();
        doc.merge(applications::ApplicationsDoc::openapi());
        doc.merge(review::ReviewDoc::openapi());
        doc.merge(auth_routes::AuthDoc::openapi());
        doc
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trellis identity service",
        description = "Onboarding applications, real-name review, identity attestations and API tokens."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(trellis_servicekit::Problem, trellis_servicekit::Role))
)]
struct ApiDoc;

/// Declares the two credentials the routes take: an operator's (or anyone's) bearer JWT and
/// the applicant's `X-Application-Token`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "application_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                util::APPLICATION_TOKEN_HEADER,
            ))),
        );
    }
}
