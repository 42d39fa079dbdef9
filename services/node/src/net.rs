//! Peer-to-peer transport between consortium validators: TCP + mutual TLS 1.3 (rustls,
//! aws-lc-rs), carrying length-prefixed opaque frames.
//!
//! - **Identity.** Both sides present a node certificate chain (node, org, issuing CA) that
//!   leads to the consortium root (see [`trellis_pki`]); after the handshake the peer's
//!   validator key is read from its certificate and must be a configured peer (and, when
//!   dialing, the one we meant to dial).
//! - **Topology.** For each pair the node with the smaller key dials the larger one, so a
//!   pair shares exactly one TLS stream; the dialer reconnects with jittered exponential
//!   backoff. If a second connection for a peer appears anyway, the newest wins.
//! - **Frames.** 4-byte big-endian length, then the payload. A frame over `max_frame_bytes`
//!   is never allocated: it is counted and the connection is closed.
//! - **Queues.** Each configured peer has one bounded outbound queue that outlives
//!   connections, so frames sent during a short reconnect are delivered afterwards;
//!   `send` never waits and drops (and counts) when the queue is full.
//! - **Revocation.** Checked along the whole chain with the hierarchy's policy
//!   ([`trellis_pki::verify`]): a revoked node or a revoked org certificate (a removed member)
//!   is refused; a node whose org published no CRL is accepted, a CA certificate whose
//!   issuer's CRL is missing is not. CRLs are fixed per rustls config, so
//!   [`Network::reload_crls`] builds new configs for new handshakes and re-verifies live
//!   connections against them.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::client::Resumption;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::NoServerSessionStorage;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};
use trellis_consensus::PublicKey;
use trellis_pki::{validator_identity, verify};

/// Default upper bound of one frame's payload.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Bound on TCP connect and on the TLS handshake, so a silent peer cannot pin a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A dialed connection that lived this long resets the backoff; shorter ones (e.g. a
/// TLS 1.3 client whose certificate the server refused after `connect()`) keep growing it.
const STABLE_CONNECTION: Duration = Duration::from_secs(1);
/// Capacity of the inbound channel; when the node lags, readers wait (TCP backpressure).
const INBOUND_QUEUE: usize = 1024;

/// Where to reach a peer and which name its certificate must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub key: PublicKey,
    /// `host:port`; only used when this node dials the peer (our key is smaller).
    pub addr: String,
    /// DNS name or IP the peer's certificate must be valid for.
    pub server_name: String,
}

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Port 0 is allowed; [`Network::local_addr`] reports the bound address.
    pub listen: SocketAddr,
    /// This node's consensus key; must match the identity in its own certificate.
    pub me: PublicKey,
    pub peers: Vec<PeerAddr>,
    pub max_frame_bytes: usize,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Per-peer outbound queue bound, in frames.
    pub send_queue: usize,
}

impl NetConfig {
    /// A config with default limits: 16 MiB frames, 100 ms–5 s backoff, 1024-frame queues.
    pub fn new(listen: SocketAddr, me: PublicKey, peers: Vec<PeerAddr>) -> Self {
        NetConfig {
            listen,
            me,
            peers,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            reconnect_min_ms: 100,
            reconnect_max_ms: 5_000,
            send_queue: 1024,
        }
    }
}

/// PEM inputs: the consortium root (the trust anchor), this node's chain (node certificate
/// first, then its org's and the issuing CA's) and key, and CRLs.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub crl_pems: Vec<String>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("key_pem", &"<redacted>")
            .field("crls", &self.crl_pems.len())
            .finish_non_exhaustive()
    }
}

/// A frame received from an authenticated peer.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub from: PublicKey,
    pub frame: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid TLS material: {0}")]
    Material(String),
    #[error("own certificate does not name this node's key {0:?}")]
    IdentityMismatch(PublicKey),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate verifier: {0}")]
    Verifier(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Handle to a running network; cheap to clone. Call [`Network::shutdown`] to stop it.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

// Declares the public `NetStats` snapshot and its atomic twin `Counters` from one list,
// so the two cannot drift.
macro_rules! counters {
    ($(#[$doc:meta])* pub struct NetStats { $($(#[$fdoc:meta])* $name:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct NetStats { $($(#[$fdoc])* pub $name: u64,)* }

        #[derive(Default)]
        struct Counters { $($name: AtomicU64,)* }

        impl Counters {
            fn snapshot(&self) -> NetStats {
                NetStats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Counters since start. Byte counts are payload bytes (without the 4-byte prefix).
    pub struct NetStats {
        frames_in,
        frames_out,
        bytes_in,
        bytes_out,
        /// Inbound frames over the limit (connection closed) and outbound ones (dropped).
        oversized_frames,
        /// Failed or timed-out TLS handshakes, including certificates webpki refused.
        handshake_failures,
        /// Completed handshakes whose certificate named no, an unknown, or the wrong validator.
        refused_peers,
        /// Frames `send` did not queue: unknown peer, full queue, or oversized.
        dropped_outbound,
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Our certificate chain, key and trust anchors: kept so configs can be rebuilt.
struct Identity {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// One generation of TLS configuration; swapped whole on CRL reload.
struct TlsState {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<dyn ServerCertVerifier>,
}

struct Peer {
    addr: PeerAddr,
    tx: mpsc::Sender<Bytes>,
    /// Held by the writer of the peer's current connection; released when it ends.
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
}

/// A registered live connection.
struct Live {
    id: u64,
    close: Arc<Notify>,
    chain: Vec<CertificateDer<'static>>,
    /// `Some(name)` if we dialed (the peer's cert was checked as a server cert).
    dialed: Option<ServerName<'static>>,
}

struct Shared {
    me: PublicKey,
    max_frame: usize,
    backoff_ms: (u64, u64),
    peers: HashMap<PublicKey, Peer>,
    identity: Identity,
    tls: RwLock<Arc<TlsState>>,
    live: Mutex<HashMap<PublicKey, Live>>,
    next_conn: AtomicU64,
    counters: Counters,
    inbound: mpsc::Sender<Inbound>,
    /// `None` once shut down, so no task is spawned after shutdown took the set.
    tasks: Mutex<Option<JoinSet<()>>>,
    local_addr: SocketAddr,
}

/// Locks ignoring poison: every critical section here leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Network {
    /// Binds the listener, starts accepting and dialing, and returns the handle plus the
    /// stream of inbound frames.
    pub async fn start(
        config: NetConfig,
        tls: TlsMaterial,
    ) -> Result<(Network, mpsc::Receiver<Inbound>), NetError> {
        let identity = parse_identity(&tls)?;
        let own = identity.chain.first().and_then(|c| validator_identity(c));
        if own != Some(config.me) {
            return Err(NetError::IdentityMismatch(config.me));
        }
        let tls_state = build_tls(&identity, parse_crls(&tls.crl_pems)?)?;

        let socket = if config.listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Why: a restarted node must rebind its port while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(config.listen)?;
        let listener = socket.listen(1024)?;
        let local_addr = listener.local_addr()?;

        let mut peers = HashMap::new();
        for addr in config.peers.iter().filter(|p| p.key != config.me).cloned() {
            let (tx, rx) = mpsc::channel(config.send_queue.max(1));
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            peers.insert(addr.key, Peer { addr, tx, rx });
        }
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let min = config.reconnect_min_ms.max(1);
        let shared = Arc::new(Shared {
            me: config.me,
            // The prefix is a u32, so nothing larger could be framed anyway.
            max_frame: config.max_frame_bytes.min(u32::MAX as usize),
            backoff_ms: (min, config.reconnect_max_ms.max(min)),
            peers,
            identity,
            tls: RwLock::new(Arc::new(tls_state)),
            live: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            counters: Counters::default(),
            inbound,
            tasks: Mutex::new(Some(JoinSet::new())),
            local_addr,
        });
        info!(me = ?config.me, %local_addr, peers = shared.peers.len(), "network listening");

        shared.spawn(Arc::clone(&shared).accept_loop(listener));
        for key in shared.peers.keys().filter(|k| config.me < **k) {
            shared.spawn(Arc::clone(&shared).dial_loop(*key));
        }
        Ok((Network { shared }, inbound_rx))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's consensus key.
    pub fn me(&self) -> PublicKey {
        self.shared.me
    }

    /// Queues `frame` for `to` without waiting; unknown peer, full queue or oversized
    /// frame means the frame is dropped and counted.
    pub fn send(&self, to: &PublicKey, frame: Bytes) {
        let s = &self.shared;
        if frame.len() > s.max_frame {
            bump(&s.counters.oversized_frames, 1);
            bump(&s.counters.dropped_outbound, 1);
            return;
        }
        let queued = s
            .peers
            .get(to)
            .is_some_and(|p| p.tx.try_send(frame).is_ok());
        if !queued {
            bump(&s.counters.dropped_outbound, 1);
        }
    }

    /// Queues `frame` for every configured peer.
    pub fn broadcast(&self, frame: Bytes) {
        for key in self.shared.peers.keys() {
            self.send(key, frame.clone());
        }
    }

    /// Peers with an authenticated live connection, sorted.
    pub fn connected_peers(&self) -> Vec<PublicKey> {
        let mut keys: Vec<_> = lock(&self.shared.live).keys().copied().collect();
        keys.sort();
        keys
    }

    pub fn stats(&self) -> NetStats {
        self.shared.counters.snapshot()
    }

    /// Replaces the CRL set: new handshakes use it at once, and live connections whose
    /// peer certificate no longer verifies (revoked, or expired meanwhile) are closed.
    /// On error the previous CRLs stay in force.
    pub fn reload_crls(&self, crl_pems: Vec<String>) -> Result<(), NetError> {
        let s = &self.shared;
        let state = build_tls(&s.identity, parse_crls(&crl_pems)?)?;
        *s.tls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        info!(crls = crl_pems.len(), "CRLs reloaded");
        // Swap first, scan second: a connection registering concurrently re-verifies
        // itself after registering (see `run_connection`), so none slips through.
        for (key, live) in lock(&s.live).iter() {
            if !s.still_trusted(&live.chain, live.dialed.as_ref()) {
                warn!(peer = ?key, "closing connection: certificate no longer verifies");
                live.close.notify_one();
            }
        }
        Ok(())
    }

    /// Stops listening, dialing and all connections, and waits until their sockets are
    /// closed (so the address can be bound again).
    pub async fn shutdown(&self) {
        let tasks = lock(&self.shared.tasks).take();
        if let Some(mut tasks) = tasks {
            tasks.shutdown().await;
        }
        lock(&self.shared.live).clear();
        info!(me = ?self.shared.me, "network stopped");
    }
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(tasks) = lock(&self.tasks).as_mut() {
            // Reap finished tasks so a long-lived node does not accumulate them.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }

    fn tls(&self) -> Arc<TlsState> {
        Arc::clone(&self.tls.read().unwrap_or_else(|e| e.into_inner()))
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((tcp, addr)) => {
                    // Own task per handshake: a slow peer must not stall the accept loop.
                    self.spawn(Arc::clone(&self).accept_one(tcp, addr));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn accept_one(self: Arc<Self>, tcp: TcpStream, addr: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let acceptor = self.tls().acceptor.clone();
        let Some(stream) = self.handshake(addr, acceptor.accept(tcp)).await else {
            return;
        };
        let chain = owned_chain(stream.get_ref().1.peer_certificates());
        if let Some(key) = self.admit(&chain, None, addr) {
            self.run_connection(key, stream, chain, None).await;
        }
    }

    async fn dial_loop(self: Arc<Self>, key: PublicKey) {
        let Some(peer) = self.peers.get(&key).map(|p| p.addr.clone()) else {
            return;
        };
        let name = match ServerName::try_from(peer.server_name.clone()) {
            Ok(name) => name,
            Err(_) => {
                warn!(peer = ?key, name = %peer.server_name, "invalid server name; not dialing");
                return;
            }
        };
        let (min, max) = self.backoff_ms;
        let mut backoff = min;
        loop {
            let started = Instant::now();
            if let Err(reason) = self.dial_once(&peer, name.clone()).await {
                debug!(peer = ?key, addr = %peer.addr, %reason, "dial failed");
            }
            if started.elapsed() >= STABLE_CONNECTION {
                backoff = min;
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = backoff.saturating_mul(2).min(max);
        }
    }

    /// One dial attempt; returns when the connection (if any) ends.
    async fn dial_once(
        self: &Arc<Self>,
        peer: &PeerAddr,
        name: ServerName<'static>,
    ) -> Result<(), String> {
        let tcp = match timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(peer.addr.as_str())).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connect timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        let addr = tcp.peer_addr().map_err(|e| e.to_string())?;
        let connector = self.tls().connector.clone();
        let stream = self
            .handshake(addr, connector.connect(name.clone(), tcp))
            .await
            .ok_or("handshake failed")?;
        let chain = owned_chain(stream.get_ref().1.peer_certificates());
        let key = self
            .admit(&chain, Some(peer.key), addr)
            .ok_or("peer refused")?;
        self.run_connection(key, stream, chain, Some(name)).await;
        Ok(())
    }

    /// Runs a TLS handshake under [`HANDSHAKE_TIMEOUT`], counting failures.
    async fn handshake<T>(
        &self,
        addr: SocketAddr,
        hs: impl Future<Output = std::io::Result<T>>,
    ) -> Option<T> {
        let reason = match timeout(HANDSHAKE_TIMEOUT, hs).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        bump(&self.counters.handshake_failures, 1);
        warn!(%addr, %reason, "TLS handshake failed");
        None
    }

    /// The validator behind a verified chain, if it may talk to us.
    fn admit(
        &self,
        chain: &[CertificateDer<'static>],
        expected: Option<PublicKey>,
        addr: SocketAddr,
    ) -> Option<PublicKey> {
        let key = chain.first().and_then(|c| validator_identity(c));
        let refusal = match key {
            None => "certificate names no validator",
            Some(k) if k == self.me => "certificate names this node",
            Some(k) if !self.peers.contains_key(&k) => "validator is not a configured peer",
            Some(k) if expected.is_some_and(|e| e != k) => "validator is not the one dialed",
            Some(k) => return Some(k),
        };
        bump(&self.counters.refused_peers, 1);
        warn!(%addr, peer = ?key, expected = ?expected, refusal, "peer refused");
        None
    }

    /// Whether `chain` still verifies under the current TLS generation.
    fn still_trusted(
        &self,
        chain: &[CertificateDer<'static>],
        dialed: Option<&ServerName<'static>>,
    ) -> bool {
        let Some((ee, rest)) = chain.split_first() else {
            return false;
        };
        let tls = self.tls();
        let now = UnixTime::now();
        match dialed {
            Some(name) => tls
                .server_verifier
                .verify_server_cert(ee, rest, name, &[], now)
                .is_ok(),
            None => tls
                .client_verifier
                .verify_client_cert(ee, rest, now)
                .is_ok(),
        }
    }

    /// Registers the connection (closing an older one for the same peer), then pumps
    /// frames both ways until either direction fails or it is told to close.
    async fn run_connection<S>(
        self: &Arc<Self>,
        key: PublicKey,
        stream: S,
        chain: Vec<CertificateDer<'static>>,
        dialed: Option<ServerName<'static>>,
    ) where
        S: AsyncRead + AsyncWrite + Send,
    {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let live = Live {
            id,
            close: Arc::clone(&close),
            chain: chain.clone(),
            dialed: dialed.clone(),
        };
        if let Some(old) = lock(&self.live).insert(key, live) {
            old.close.notify_one(); // keep the newest
        }
        let reason = if self.still_trusted(&chain, dialed.as_ref()) {
            info!(peer = ?key, dialed = dialed.is_some(), "peer connected");
            let (rd, wr) = tokio::io::split(stream);
            // Reader and writer run as two futures of this task, so whichever ends first
            // (or a close request) tears down both and the peer's queue lock is released.
            tokio::select! {
                r = self.read_frames(key, rd) => r,
                r = self.write_frames(key, wr) => r,
                () = close.notified() => "closed locally (superseded or revoked)",
            }
        } else {
            "certificate revoked during handshake"
        };
        let mut live = lock(&self.live);
        if live.get(&key).is_some_and(|l| l.id == id) {
            live.remove(&key);
        }
        info!(peer = ?key, reason, "peer disconnected");
    }

    async fn read_frames<R: AsyncRead + Unpin>(&self, from: PublicKey, mut rd: R) -> &'static str {
        loop {
            let Ok(len) = rd.read_u32().await else {
                return "closed by peer";
            };
            let len = len as usize;
            if len > self.max_frame {
                bump(&self.counters.oversized_frames, 1);
                warn!(peer = ?from, len, max = self.max_frame, "oversized frame; closing");
                return "oversized frame";
            }
            // Grow with the data actually received instead of trusting the prefix.
            let mut buf = Vec::with_capacity(len.min(64 * 1024));
            match (&mut rd).take(len as u64).read_to_end(&mut buf).await {
                Ok(n) if n == len => {}
                _ => return "truncated frame",
            }
            bump(&self.counters.frames_in, 1);
            bump(&self.counters.bytes_in, len as u64);
            let frame = Bytes::from(buf);
            if self.inbound.send(Inbound { from, frame }).await.is_err() {
                return "inbound receiver dropped";
            }
        }
    }

    async fn write_frames<W: AsyncWrite + Unpin>(&self, to: PublicKey, wr: W) -> &'static str {
        let Some(peer) = self.peers.get(&to) else {
            return "unknown peer";
        };
        let mut rx = peer.rx.lock().await;
        let mut wr = BufWriter::new(wr);
        while let Some(first) = rx.recv().await {
            // Batch whatever is already queued into one flush.
            let mut next = Some(first);
            while let Some(frame) = next {
                let len = frame.len() as u32; // bounded by max_frame <= u32::MAX in `send`
                if wr.write_u32(len).await.is_err() || wr.write_all(&frame).await.is_err() {
                    return "write failed";
                }
                bump(&self.counters.frames_out, 1);
                bump(&self.counters.bytes_out, u64::from(len));
                next = rx.try_recv().ok();
            }
            if wr.flush().await.is_err() {
                return "write failed";
            }
        }
        "queue closed"
    }
}

fn owned_chain(certs: Option<&[CertificateDer<'_>]>) -> Vec<CertificateDer<'static>> {
    certs
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect()
}

/// `ms` scaled by a random factor in [0.5, 1.0], so peers that lost a common neighbour
/// do not redial in lockstep. Randomness from std's per-instance SipHash keys.
fn jittered(ms: u64) -> Duration {
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let half = ms / 2;
    Duration::from_millis(half + r % (ms - half + 1))
}

fn parse_identity(tls: &TlsMaterial) -> Result<Identity, NetError> {
    let bad =
        |what: &str, e: rustls_pki_types::pem::Error| NetError::Material(format!("{what}: {e}"));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(tls.ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| bad("CA certificate", e))?)?;
    }
    if roots.is_empty() {
        return Err(NetError::Material("no CA certificate".into()));
    }
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("node certificate", e))?;
    if chain.is_empty() {
        return Err(NetError::Material("no node certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| bad("node key", e))?;
    Ok(Identity {
        roots: Arc::new(roots),
        chain,
        key,
    })
}

fn parse_crls(pems: &[String]) -> Result<Vec<CertificateRevocationListDer<'static>>, NetError> {
    // Why refuse a file without a CRL: an operator's empty or mangled file must not silently
    // lift revocations.
    verify::crls_from_pem(pems).map_err(|e| NetError::Material(e.to_string()))
}

fn build_tls(
    id: &Identity,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<TlsState, NetError> {
    // Explicit provider: never depend on (or race for) the process-wide default.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = &[&rustls::version::TLS13];
    let verifier_error = |e: trellis_pki::PkiError| NetError::Verifier(e.to_string());
    let client_verifier =
        verify::client_verifier(Arc::clone(&id.roots), crls.clone(), Arc::clone(&provider))
            .map_err(verifier_error)?;
    let server_verifier =
        verify::server_verifier(Arc::clone(&id.roots), crls, Arc::clone(&provider))
            .map_err(verifier_error)?;

    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(Arc::clone(&client_verifier))
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    // Why no resumption: a resumed session skips certificate verification, which would
    // let a peer revoked by a CRL reload back in. Connections are long-lived anyway.
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;

    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&server_verifier))
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())?;
    client.resumption = Resumption::disabled();

    Ok(TlsState {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        client_verifier,
        server_verifier,
    })
}
