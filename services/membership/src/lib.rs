//! Trellis membership service: governance proposals and votes, member admission, consortium CA, org certificates and CRL.
//!
//! - Governance: relays member-signed proposals and votes to the beacon and reads proposals
//!   and members back; the beacon application enforces the rules (who votes, thresholds,
//!   expiry), this service checks the caller and the transaction's shape and sender.
//! - The consortium's issuing CA ([`ca`], from [`trellis_pki`]): a certificate manager
//!   ([`MembershipService::reconcile_certificates`], run every poll interval) issues and renews
//!   every active member's org certificate, revokes removed members' certificates on the
//!   beacon, mirrors the beacon's revocation list, and rebuilds the CRL when that list
//!   changes: the copy `GET /v1/ca/crl` serves and the CRL file nodes watch (one CRL per
//!   issuer it signs for: the issuing CA, earlier issuing CAs still in service, and orgs that
//!   delegated their node CRL). Removing a member revokes its org certificate, which cuts
//!   every node certificate the org issued.
//!
//! Tables (migration `0003_membership.sql`): `ca_certificates`, `ca_revocations` (mirror of
//! the beacon's list), `ca_revocation_submissions` (revocations the CA operator key signed),
//! `ca_crl_state` (the CRL last built, and where it was written).
//!
//! # Routes
//!
//! | route | who |
//! |---|---|
//! | `GET /v1/governance/proposals[?status=&limit=]`, `GET /v1/governance/proposals/{id}` | any role |
//! | `POST /v1/governance/proposals` `{tx}` | `enterprise_admin`, `operator` |
//! | `POST /v1/governance/proposals/{id}/votes` `{tx}` | `enterprise_admin` |
//! | `GET /v1/members` | any role |
//! | `GET /v1/ca/certificates[?org=&limit=]`, `GET /v1/ca/certificates/{serial}` | operator: all; enterprise roles: own org; regulator, bank: metadata |
//! | `POST /v1/ca/revocations` `{serial, reason}` | `operator` |
//! | `GET /v1/ca/crl`, `GET /v1/ca/ca.pem` (the root), `GET /v1/ca/chain.pem` (issuing CA + root), `GET /v1/ca/metrics` | public |
//!
//! Errors are RFC 9457 problems naming the field at fault; internal errors are logged and
//! answered as a bare 500; an unreachable node is a 503 and a transaction not decided within
//! [`MembershipConfig::chain_wait`] a 504.

#![forbid(unsafe_code)]

pub mod ca;
mod certificates;
mod chain;
mod crl;
mod governance;
mod manager;
mod metrics;
mod store;

pub use certificates::{CertificateList, CertificateView, RevocationReceipt, RevocationRequest};
pub use chain::{
    MemberList, MemberView, ProposalList, ProposalView, RevocationListView, RevocationView,
};
pub use governance::{MemberCertificate, MemberEntry, MembersResponse, SignedTx};

use axum::Router;
use axum::extract::FromRef;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;
use trellis_servicekit::{Db, NodeClient, Problem, TokenService, now_ms};
use utoipa::OpenApi;

/// How the membership service runs.
#[derive(Debug)]
pub struct MembershipConfig {
    /// The beacon's chain id: relayed transactions must be for it.
    pub chain_id: String,
    /// The current issuing CA: issues org certificates, signs the first CRL.
    pub ca: ca::IssuingCa,
    /// Issuing CAs replaced by a rotation whose certificates are still in service: this
    /// service keeps signing their CRLs (the same list), so what they issued stays revocable.
    pub previous_cas: Vec<ca::IssuingCa>,
    /// Org certificates issued outside this service by one of its issuing CAs (by `trellis
    /// devnet init`, for the genesis members): recorded at start as if issued here, so the
    /// manager renews them and revokes them when their member is removed (which cuts the
    /// nodes chained through them).
    pub org_certificates: Vec<String>,
    /// Orgs that delegated their node CRL to this service: it signs the revocation list with
    /// their org key too, so a node certificate they issued is revoked by its serial.
    pub delegated_orgs: Vec<ca::OrgCa>,
    /// An operator account key: signs certificate revocations on the beacon.
    pub ca_operator: trellis_types::Signer,
    pub policy: ca::RenewalPolicy,
    /// Where to (re)write the CRL PEM whenever the beacon's revocation list changes (nodes watch this file).
    pub crl_path: Option<PathBuf>,
    /// How often the certificate manager runs (default 2 s). Zero starts no manager task:
    /// the caller runs [`MembershipService::reconcile_certificates`] itself (tests do).
    pub poll_interval: Duration,
    /// How long a request waits for the block that decides its transaction (default 20 s).
    pub chain_wait: Duration,
}

impl MembershipConfig {
    /// The defaults around the three things nobody can default: the default renewal policy
    /// (90 days, renewed 30 and alerted 14 days before expiry), no CRL file, no previous
    /// issuing CA, org certificate to adopt or delegated org, a 2 s poll interval and a 20 s
    /// chain wait.
    pub fn new(
        chain_id: impl Into<String>,
        ca: ca::IssuingCa,
        ca_operator: trellis_types::Signer,
    ) -> MembershipConfig {
        MembershipConfig {
            chain_id: chain_id.into(),
            ca,
            previous_cas: Vec::new(),
            org_certificates: Vec::new(),
            delegated_orgs: Vec::new(),
            ca_operator,
            policy: ca::RenewalPolicy::default(),
            crl_path: None,
            poll_interval: Duration::from_secs(2),
            chain_wait: Duration::from_secs(20),
        }
    }
}

/// An org and one of its certificates, in a [`ReconcileReport`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertificateEvent {
    pub org: String,
    /// Certificate serial (hex).
    pub serial: String,
}

/// What one pass of the certificate manager did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// The beacon height of the member list the pass worked from.
    pub height: u64,
    /// Certificates issued to active members that had no current one for their org key.
    pub issued: Vec<CertificateEvent>,
    /// Certificates issued because the current one was due for renewal.
    pub renewed: Vec<CertificateEvent>,
    /// Certificates replaced by the ones issued or renewed.
    pub superseded: Vec<CertificateEvent>,
    /// Certificates of removed members whose revocation this pass signed and submitted.
    pub revocations_submitted: Vec<CertificateEvent>,
    /// Serials whose revocation (submitted by this pass or an earlier one) is now on the
    /// beacon, including ones the beacon answered `already-revoked`.
    pub revocations_confirmed: Vec<String>,
    /// Problems with one org or serial; the next pass tries again.
    pub failures: Vec<String>,
    /// Whether the CRL was (re)built and signed: the revocation list changed, half its
    /// validity passed, or none was built before.
    pub crl_built: bool,
    /// Whether the CRL file was (re)written.
    pub crl_written: bool,
    /// Entries of the beacon's revocation list (and so of the CRL).
    pub crl_entries: usize,
    /// Current certificates in the alert window after the pass (renewal did not happen).
    pub expiring: u64,
    /// Current certificates of active members past `not_after` after the pass.
    pub expired: u64,
}

pub(crate) struct Inner {
    pub db: Db,
    pub tokens: TokenService,
    pub node: NodeClient,
    pub config: MembershipConfig,
    pub metrics: metrics::CaMetrics,
    /// Held while a nonce of the CA operator key is chosen and its transaction submitted.
    pub nonce_lock: tokio::sync::Mutex<()>,
    /// Held for a whole certificate-manager pass.
    pub pass_lock: tokio::sync::Mutex<()>,
    /// The CRL last built, as `GET /v1/ca/crl` serves it; held while the route re-reads or
    /// (the first time) builds it, so concurrent requests do that once.
    pub crl_cache: tokio::sync::Mutex<Option<crl::CachedCrl>>,
}

/// The membership service: its routes and its certificate manager. Cheap to clone.
#[derive(Clone)]
pub struct MembershipService {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for MembershipService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipService")
            .field("chain_id", &self.inner.config.chain_id)
            .field("node", &self.inner.node.base())
            .finish_non_exhaustive()
    }
}

impl FromRef<MembershipService> for TokenService {
    fn from_ref(svc: &MembershipService) -> TokenService {
        svc.inner.tokens.clone()
    }
}

impl MembershipService {
    /// Starts the certificate manager task and returns the service.
    ///
    /// The task runs a pass at once and then every [`MembershipConfig::poll_interval`]
    /// (none when it is zero); a failed pass is logged and retried. It ends once every clone
    /// of the service is dropped.
    pub async fn start(
        db: Db,
        tokens: TokenService,
        node: NodeClient,
        config: MembershipConfig,
    ) -> anyhow::Result<MembershipService> {
        anyhow::ensure!(!config.chain_id.is_empty(), "the chain id is empty");
        anyhow::ensure!(
            !config.chain_wait.is_zero(),
            "the chain wait must be positive"
        );
        let poll = config.poll_interval;
        let svc = MembershipService {
            inner: Arc::new(Inner {
                db,
                tokens,
                node,
                config,
                metrics: metrics::CaMetrics::default(),
                nonce_lock: tokio::sync::Mutex::new(()),
                pass_lock: tokio::sync::Mutex::new(()),
                crl_cache: tokio::sync::Mutex::new(None),
            }),
        };
        svc.adopt_org_certificates(now_ms()).await?;
        if !poll.is_zero() {
            tokio::spawn(run_manager(Arc::downgrade(&svc.inner), poll));
        }
        Ok(svc)
    }

    /// The service's routes, state applied; mount next to the other services' routers.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(governance::router())
            .merge(certificates::router())
            .with_state(self.clone())
    }

    /// The OpenAPI document of [`MembershipService::router`].
    pub fn openapi() -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }
}

/// The certificate manager task: a pass now and every `poll` while the service lives.
async fn run_manager(service: Weak<Inner>, poll: Duration) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut last_failures: Vec<String> = Vec::new();
    loop {
        ticker.tick().await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        let svc = MembershipService { inner };
        match svc.reconcile_certificates(now_ms()).await {
            Ok(report) => {
                if failing {
                    tracing::info!("certificate manager recovered");
                }
                failing = false;
                // Logged when they change, not every pass: a CA that cannot renew (it expires
                // first) would otherwise fill the log every poll interval.
                if report.failures != last_failures {
                    if report.failures.is_empty() {
                        tracing::info!("certificate manager: earlier failures resolved");
                    } else {
                        tracing::warn!(failures = ?report.failures, "certificate manager pass had failures");
                    }
                    last_failures = report.failures;
                }
            }
            Err(e) => {
                // Logged once per outage at warn, then at debug, so a down node does not
                // flood the log every poll interval.
                if failing {
                    tracing::debug!(error = %format!("{e:#}"), "certificate manager pass failed");
                } else {
                    tracing::warn!(error = %format!("{e:#}"), "certificate manager pass failed");
                }
                failing = true;
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Trellis membership service",
        description = "Governance proposals and votes, members, the consortium CA."
    ),
    paths(
        governance::list_proposals,
        governance::get_proposal,
        governance::submit_proposal,
        governance::submit_vote,
        governance::list_members,
        certificates::list_certificates,
        certificates::get_certificate,
        certificates::revoke,
        certificates::crl_pem,
        certificates::ca_pem,
        certificates::chain_pem,
        certificates::metrics,
    ),
    components(schemas(
        Problem,
        SignedTx,
        ProposalView,
        ProposalList,
        MemberView,
        MemberList,
        MemberEntry,
        MemberCertificate,
        MembersResponse,
        CertificateView,
        CertificateList,
        RevocationRequest,
        RevocationReceipt,
        RevocationView,
        RevocationListView,
    )),
    tags(
        (name = "governance", description = "Proposals, votes and members on the beacon"),
        (name = "ca", description = "The consortium CA: org certificates, revocations, CRL")
    )
)]
struct ApiDoc;
