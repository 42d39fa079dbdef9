//! The mTLS transport over real sockets on 127.0.0.1 (port 0), with certificates made by
//! `trellis_pki` in memory (root, issuing CA, orgs, nodes). Delivery is polled with a
//! generous deadline, never timed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::{Instant, sleep, timeout};
use trellis_consensus::PublicKey;
use trellis_node::net::{Inbound, NetConfig, Network, PeerAddr, TlsMaterial};
use trellis_pki::{
    DAY_MS, IssuingCa, NodeCertRequest, NodeCertificate, OrgCa, RevocationReason, RevokedEntry,
    RootCa, Serial, chain_pem, now_ms,
};

const DEADLINE: Duration = Duration::from_secs(30);

fn key(n: u8) -> PublicKey {
    PublicKey([n; 32])
}

fn hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// A consortium's CAs in memory: the root, an issuing CA, and two member orgs (0 and 1).
struct Pki {
    root: RootCa,
    issuing: IssuingCa,
    orgs: Vec<OrgCa>,
}

impl Pki {
    fn generate(name: &str) -> Pki {
        let now = now_ms();
        let root = RootCa::generate(
            &format!("{name} root CA"),
            now - 3_600_000,
            now + 60 * DAY_MS,
        )
        .expect("root");
        let issuing = root
            .issue_issuing_ca(
                &format!("{name} issuing CA"),
                now - 3_600_000,
                now + 60 * DAY_MS,
            )
            .expect("issuing CA");
        let orgs = (0u8..2)
            .map(|i| {
                let seed = [100 + i; 32];
                let key = trellis_consensus::Signer::from_seed(seed).public_key().0;
                let cert = issuing
                    .issue_org_certificate(&format!("org-{i}"), key, now - 3_600_000, 45 * DAY_MS)
                    .expect("org certificate");
                OrgCa::from_seed(&chain_pem(&[cert.pem, issuing.chain_pem()]), seed).expect("org")
            })
            .collect();
        Pki {
            root,
            issuing,
            orgs,
        }
    }

    /// The beacon's revocation list `serials` as every CA of the consortium signs it: the
    /// root, the issuing CA and each org (one CRL per issuer; webpki takes a certificate's
    /// status from its issuer's).
    fn crls(&self, number: u64, serials: &[&str]) -> Vec<String> {
        let now = now_ms();
        let entries: Vec<RevokedEntry> = serials
            .iter()
            .map(|s| RevokedEntry {
                serial_hex: s.to_string(),
                revoked_at_ms: now - 1000,
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        let mut crls = vec![
            self.root
                .crl_pem(&entries, number, now, now + DAY_MS)
                .expect("root CRL"),
            self.issuing
                .crl_pem(&entries, number, now, now + DAY_MS)
                .expect("issuing CRL"),
        ];
        for org in &self.orgs {
            crls.push(
                org.crl_pem(&entries, number, now, now + DAY_MS)
                    .expect("org CRL"),
            );
        }
        crls
    }

    /// The serial of org `i`'s certificate, hex.
    fn org_serial(&self, i: usize) -> String {
        let der = self.orgs[i].cert_der().to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("org cert");
        hex::encode(cert.raw_serial())
    }
}

fn node_cert(
    org: &OrgCa,
    who: PublicKey,
    serial: u64,
    from_ms: i64,
    to_ms: i64,
) -> NodeCertificate {
    org.issue_node_certificate(&NodeCertRequest {
        validator: who,
        serial: Serial::from_u64(serial).expect("serial"),
        hosts: hosts(),
        not_before_ms: from_ms,
        not_after_ms: to_ms,
    })
    .expect("issue")
}

/// TLS material of a node of org 0.
fn material(pki: &Pki, who: PublicKey, serial: u64) -> TlsMaterial {
    material_of(pki, 0, who, serial)
}

fn material_of(pki: &Pki, org: usize, who: PublicKey, serial: u64) -> TlsMaterial {
    let now = now_ms();
    let cert = node_cert(
        &pki.orgs[org],
        who,
        serial,
        now - 3_600_000,
        now + 30 * DAY_MS,
    );
    TlsMaterial {
        ca_pem: pki.root.cert_pem().to_string(),
        cert_pem: cert.chain_pem,
        key_pem: cert.key_pem,
        crl_pems: vec![],
    }
}

fn peer(key: PublicKey, addr: SocketAddr) -> PeerAddr {
    PeerAddr {
        key,
        addr: addr.to_string(),
        server_name: "localhost".into(),
    }
}

/// Peers with a smaller key dial us, so their address is never used.
fn unused_addr() -> SocketAddr {
    "127.0.0.1:9".parse().expect("addr")
}

struct Node {
    key: PublicKey,
    net: Network,
    rx: Receiver<Inbound>,
}

async fn start_at(
    me: PublicKey,
    listen: SocketAddr,
    peers: Vec<PeerAddr>,
    tls: TlsMaterial,
    max_frame: usize,
) -> Node {
    let mut config = NetConfig::new(listen, me, peers);
    config.reconnect_min_ms = 20;
    config.reconnect_max_ms = 300;
    config.max_frame_bytes = max_frame;
    let (net, rx) = Network::start(config, tls).await.expect("start");
    Node { key: me, net, rx }
}

async fn start(me: PublicKey, peers: Vec<PeerAddr>, tls: TlsMaterial) -> Node {
    start_at(
        me,
        "127.0.0.1:0".parse().expect("addr"),
        peers,
        tls,
        1 << 20,
    )
    .await
}

/// Waits until every `(from, payload)` in `want` has arrived, in any order; others are skipped.
async fn expect_frames(rx: &mut Receiver<Inbound>, mut want: Vec<(PublicKey, Vec<u8>)>) {
    let end = Instant::now() + DEADLINE;
    while !want.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        match timeout(left, rx.recv()).await {
            Ok(Some(inb)) => {
                want.retain(|(from, p)| !(inb.from == *from && inb.frame.as_ref() == p.as_slice()))
            }
            Ok(None) => panic!("inbound channel closed"),
            Err(_) => panic!("frames {want:?} did not arrive within {DEADLINE:?}"),
        }
    }
}

async fn expect_frame(rx: &mut Receiver<Inbound>, from: PublicKey, payload: &[u8]) {
    expect_frames(rx, vec![(from, payload.to_vec())]).await;
}

/// Sends repeatedly until the frame arrives (the first copies may hit a dying connection).
async fn deliver_eventually(src: &Network, dst: &mut Node, from: PublicKey, payload: &[u8]) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        src.send(&dst.key, Bytes::copy_from_slice(payload));
        let wait = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(inb)) = timeout(
            wait.saturating_duration_since(Instant::now()),
            dst.rx.recv(),
        )
        .await
        {
            if inb.from == from && inb.frame.as_ref() == payload {
                return;
            }
        }
    }
    panic!("frame {payload:?} from {from:?} never arrived");
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Connections `n` refused: failed handshakes and completed ones naming a stranger.
fn refusals(n: &Node) -> u64 {
    let s = n.net.stats();
    s.handshake_failures + s.refused_peers
}

/// Waits until `n` has refused `more` further connections (a refused peer's next attempts:
/// whichever side dials redials only after a connection ended, and keeps to one connection
/// while it is admitted).
async fn wait_for_refusals(n: &Node, more: u64, what: &str) {
    let want = refusals(n) + more;
    wait_until(what, || refusals(n) >= want).await;
}

/// The next frame `rx` delivers must be `payload` from `from`: nothing else comes first.
async fn expect_next_frame(rx: &mut Receiver<Inbound>, from: PublicKey, payload: &[u8]) {
    match timeout(DEADLINE, rx.recv()).await {
        Ok(Some(inb)) => assert!(
            inb.from == from && inb.frame.as_ref() == payload,
            "expected {:?} from {from:?} first, got {inb:?}",
            Bytes::copy_from_slice(payload)
        ),
        Ok(None) => panic!("inbound channel closed"),
        Err(_) => panic!("frame {payload:?} from {from:?} did not arrive within {DEADLINE:?}"),
    }
}

fn drain(rx: &mut Receiver<Inbound>) {
    while rx.try_recv().is_ok() {}
}

/// Two honest nodes keys 1 and 2 plus a node `m` started with `m_tls`; nodes start in
/// descending key order so each dialer knows the address of the larger peer.
async fn trio(ca: &Pki, m: PublicKey, m_tls: TlsMaterial, crls: Vec<String>) -> (Node, Node, Node) {
    let (a, b) = (key(1), key(2));
    let mut nodes: Vec<(PublicKey, TlsMaterial)> =
        vec![(a, material(ca, a, 1)), (b, material(ca, b, 2)), (m, m_tls)];
    nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
    let mut started: Vec<Node> = Vec::new();
    for (me, mut tls) in nodes {
        if me != m {
            tls.crl_pems = crls.clone();
        }
        let peers = [a, b, m]
            .into_iter()
            .filter(|k| *k != me)
            .map(|k| match started.iter().find(|n| n.key == k) {
                Some(n) => peer(k, n.net.local_addr()),
                None => peer(k, unused_addr()),
            })
            .collect();
        started.push(start(me, peers, tls).await);
    }
    let take = |started: &mut Vec<Node>, k: PublicKey| {
        let i = started.iter().position(|n| n.key == k).expect("node");
        started.remove(i)
    };
    let na = take(&mut started, a);
    let nb = take(&mut started, b);
    let nm = take(&mut started, m);
    (na, nb, nm)
}

async fn stop(nodes: &[&Node]) {
    for n in nodes {
        n.net.shutdown().await;
    }
}

#[test]
fn validator_identity_round_trips_through_the_certificate() {
    let ca = Pki::generate("test consortium");
    let who = PublicKey([0xab; 32]);
    let now = now_ms();
    let cert = node_cert(&ca.orgs[0], who, 7, now, now + DAY_MS);
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.cert_pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .expect("pem");
    assert_eq!(trellis_pki::validator_identity(&der), Some(who));
    assert!(Serial::from_u64(0).is_err(), "serial 0 is refused");
    let crl = ca.crls(1, &["07"]);
    assert!(
        crl.iter()
            .all(|c| c.starts_with("-----BEGIN X509 CRL-----"))
    );
    assert!(
        !format!("{:?} {:?} {:?} {cert:?}", ca.root, ca.issuing, ca.orgs).contains("PRIVATE KEY"),
        "Debug must not print the key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_frames_and_broadcast() {
    let ca = Pki::generate("test consortium");
    let (mut a, mut b, mut c) = trio(&ca, key(3), material(&ca, key(3), 3), vec![]).await;
    let nodes = [(&a.net, a.key), (&b.net, b.key), (&c.net, c.key)];
    for (src, from) in nodes {
        for (_, to) in nodes.iter().filter(|(_, k)| *k != from) {
            src.send(to, Bytes::from(format!("{}->{}", from.0[0], to.0[0])));
        }
    }
    for (dst, me) in [(&mut a.rx, 1u8), (&mut b.rx, 2), (&mut c.rx, 3)] {
        let want = [1u8, 2, 3]
            .into_iter()
            .filter(|k| *k != me)
            .map(|from| (key(from), format!("{from}->{me}").into_bytes()))
            .collect();
        expect_frames(dst, want).await;
    }
    b.net.broadcast(Bytes::from_static(b"hello from b"));
    expect_frame(&mut a.rx, b.key, b"hello from b").await;
    expect_frame(&mut c.rx, b.key, b"hello from b").await;
    wait_until("full mesh", || {
        a.net.connected_peers() == vec![key(2), key(3)]
    })
    .await;
    let stats = b.net.stats();
    assert!(stats.frames_out >= 4 && stats.frames_in >= 2, "{stats:?}");
    assert_eq!(
        stats.handshake_failures + stats.refused_peers + stats.dropped_outbound,
        0,
        "{stats:?}"
    );
    stop(&[&a, &b, &c]).await;
}

async fn expect_frame_both_ways(a: &mut Node, b: &mut Node) {
    a.net.send(&b.key, Bytes::from_static(b"a to b"));
    b.net.send(&a.key, Bytes::from_static(b"b to a"));
    expect_frame(&mut b.rx, a.key, b"a to b").await;
    expect_frame(&mut a.rx, b.key, b"b to a").await;
}

/// `m` must never reach the honest pair; the pair itself still works. Expects nothing
/// else queued in `a.rx` and `b.rx`.
async fn assert_isolated(a: &mut Node, b: &mut Node, m: &Node) {
    wait_until("honest side counts a handshake failure", || {
        a.net.stats().handshake_failures > 0 && b.net.stats().handshake_failures > 0
    })
    .await;
    m.net.broadcast(Bytes::from_static(b"from m"));
    // m's frames could only arrive over a connection a or b admitted, and while one is
    // admitted m is not refused again. So: two more refusals each after the broadcast, then
    // the pair's own frames must be the first each delivers (one inbound queue, in order).
    wait_for_refusals(a, 2, "a refuses m twice more after its broadcast").await;
    wait_for_refusals(b, 2, "b refuses m twice more after its broadcast").await;
    a.net.send(&b.key, Bytes::from_static(b"a to b"));
    b.net.send(&a.key, Bytes::from_static(b"b to a"));
    expect_next_frame(&mut b.rx, a.key, b"a to b").await;
    expect_next_frame(&mut a.rx, b.key, b"b to a").await;
    assert!(!a.net.connected_peers().contains(&m.key));
    assert!(!b.net.connected_peers().contains(&m.key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let ca = Pki::generate("test consortium");
    let rogue = Pki::generate("rogue consortium");
    // m = key 3: the honest nodes dial it and refuse its server certificate.
    let mut m_tls = material(&rogue, key(3), 3);
    m_tls.ca_pem = rogue.root.cert_pem().to_string();
    let (mut a, mut b, m) = trio(&ca, key(3), m_tls, vec![]).await;
    assert_isolated(&mut a, &mut b, &m).await;
    stop(&[&a, &b, &m]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let ca = Pki::generate("test consortium");
    let now = now_ms();
    let expired = node_cert(&ca.orgs[0], key(0), 9, now - 2 * DAY_MS, now - DAY_MS);
    let m_tls = TlsMaterial {
        ca_pem: ca.root.cert_pem().to_string(),
        cert_pem: expired.chain_pem,
        key_pem: expired.key_pem,
        crl_pems: vec![],
    };
    // m = key 0: it dials the honest nodes, which refuse its client certificate.
    let (mut a, mut b, m) = trio(&ca, key(0), m_tls, vec![]).await;
    assert_isolated(&mut a, &mut b, &m).await;
    stop(&[&a, &b, &m]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_refused_at_startup() {
    let ca = Pki::generate("test consortium");
    let crl = ca.crls(1, &["21"]);
    // Once as the dialed side (key 3), once as the dialer (key 0).
    for m in [key(3), key(0)] {
        let (mut a, mut b, nm) = trio(&ca, m, material(&ca, m, 33), crl.clone()).await;
        assert_isolated(&mut a, &mut b, &nm).await;
        stop(&[&a, &b, &nm]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_cut_off_after_crl_reload() {
    let ca = Pki::generate("test consortium");
    for m in [key(3), key(0)] {
        let (mut a, mut b, mut nm) = trio(&ca, m, material(&ca, m, 44), vec![]).await;
        nm.net.send(&a.key, Bytes::from_static(b"before"));
        expect_frame(&mut a.rx, m, b"before").await;
        a.net.send(&m, Bytes::from_static(b"to m"));
        expect_frame(&mut nm.rx, a.key, b"to m").await;

        assert!(
            a.net.reload_crls(vec!["not a crl".into()]).is_err(),
            "garbage is rejected"
        );
        let crl = ca.crls(2, &["2c"]);
        a.net.reload_crls(crl.clone()).expect("reload a");
        b.net.reload_crls(crl).expect("reload b");
        wait_until("revoked peer disconnected", || {
            !a.net.connected_peers().contains(&m) && !b.net.connected_peers().contains(&m)
        })
        .await;
        drain(&mut a.rx);
        drain(&mut b.rx);
        assert_isolated(&mut a, &mut b, &nm).await;
        stop(&[&a, &b, &nm]).await;
    }
}

/// Removing a member revokes its org certificate on the issuing CA's CRL: every node chained
/// through it is cut, though no CRL names the node itself. Before that, the member's node is
/// admitted even though its org published no CRL of its own (unknown status of a node
/// certificate is accepted; that of a CA certificate is not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_removed_member_are_cut_off_with_its_org_certificate() {
    let ca = Pki::generate("test consortium");
    for m in [key(3), key(0)] {
        // a and b belong to org 0, m to org 1; a and b load the CRLs of the root, the issuing
        // CA and org 0 only.
        let mut crls = ca.crls(1, &[]);
        crls.pop();
        let (mut a, mut b, mut nm) = trio(&ca, m, material_of(&ca, 1, m, 50), crls).await;
        nm.net.send(&a.key, Bytes::from_static(b"member m"));
        expect_frame(&mut a.rx, m, b"member m").await;
        b.net.send(&m, Bytes::from_static(b"to m"));
        expect_frame(&mut nm.rx, b.key, b"to m").await;

        // The member is removed: the issuing CA's CRL lists its org certificate.
        let removed = ca.crls(2, &[&ca.org_serial(1)]);
        a.net.reload_crls(removed.clone()).expect("reload a");
        b.net.reload_crls(removed).expect("reload b");
        wait_until("the removed member's node disconnected", || {
            !a.net.connected_peers().contains(&m) && !b.net.connected_peers().contains(&m)
        })
        .await;
        drain(&mut a.rx);
        drain(&mut b.rx);
        assert_isolated(&mut a, &mut b, &nm).await;
        stop(&[&a, &b, &nm]).await;
    }
}

/// Without the issuing CA's CRL a node cannot know whether a peer's org was removed: once it
/// checks revocation at all, it refuses every chain through an org certificate of unknown
/// status (fail closed: a misconfigured CRL set must not re-admit removed members).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_issuing_ca_crl_refuses_rather_than_admits() {
    let ca = Pki::generate("test consortium");
    let mut crls = ca.crls(1, &[]);
    crls.remove(1); // the issuing CA's
    let (mut a, mut b, m) = trio(&ca, key(3), material_of(&ca, 1, key(3), 51), vec![]).await;
    expect_frame_both_ways(&mut a, &mut b).await;
    a.net.reload_crls(crls.clone()).expect("reload a");
    b.net.reload_crls(crls).expect("reload b");
    wait_until("peers with unknown org status disconnected", || {
        a.net.connected_peers().is_empty() && b.net.connected_peers().is_empty()
    })
    .await;
    stop(&[&a, &b, &m]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unexpected_identity_is_refused() {
    let ca = Pki::generate("test consortium");
    // (a) x = key 3 (valid cert) dials a = key 5, whose peer list does not include it.
    let (x, a) = (key(3), key(5));
    let mut na = start(a, vec![peer(key(7), unused_addr())], material(&ca, a, 5)).await;
    let nx = start(x, vec![peer(a, na.net.local_addr())], material(&ca, x, 3)).await;
    wait_until("a refuses x", || na.net.stats().refused_peers > 0).await;
    nx.net.send(&a, Bytes::from_static(b"from x"));
    // x redials only after a connection ends: two more refusals after the send mean its
    // frame had its chances and found no admitted connection, so a has delivered nothing.
    wait_for_refusals(&na, 2, "a refuses x twice more after its send").await;
    match na.rx.try_recv() {
        Err(TryRecvError::Empty) => {}
        other => panic!("a delivered {other:?} though it refused every peer"),
    }
    assert!(na.net.connected_peers().is_empty());
    stop(&[&na, &nx]).await;

    // (b) a dials "key 7" at an address where x answers: the identity is not the one dialed.
    let nx = start(x, vec![], material(&ca, x, 3)).await;
    let na = start(
        a,
        vec![peer(key(7), nx.net.local_addr())],
        material(&ca, a, 5),
    )
    .await;
    wait_until("a refuses the impostor", || {
        na.net.stats().refused_peers > 0
    })
    .await;
    assert!(na.net.connected_peers().is_empty());
    stop(&[&na, &nx]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_dropped_and_the_link_recovers() {
    let ca = Pki::generate("test consortium");
    let (a, b) = (key(1), key(2));
    let mut nb = start_at(
        b,
        "127.0.0.1:0".parse().expect("addr"),
        vec![peer(a, unused_addr())],
        material(&ca, b, 2),
        1024,
    )
    .await;
    let mut na = start(a, vec![peer(b, nb.net.local_addr())], material(&ca, a, 1)).await;
    deliver_eventually(&na.net, &mut nb, a, b"small before").await;

    na.net.send(&b, Bytes::from(vec![7u8; 4096]));
    wait_until("b counts the oversized frame", || {
        nb.net.stats().oversized_frames == 1
    })
    .await;
    deliver_eventually(&na.net, &mut nb, a, b"small after").await;
    deliver_eventually(&nb.net, &mut na, b, b"and back").await;
    let s = nb.net.stats();
    assert_eq!(s.oversized_frames, 1, "{s:?}");
    // The oversized frame was never delivered: every frame b got is at most 12 bytes.
    assert!(s.frames_in >= 2 && s.bytes_in <= s.frames_in * 12, "{s:?}");
    stop(&[&na, &nb]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_on_the_same_address_reconnects() {
    let ca = Pki::generate("test consortium");
    let (a, b) = (key(1), key(2));
    let (tls_a, tls_b) = (material(&ca, a, 1), material(&ca, b, 2));
    let mut nb = start(b, vec![peer(a, unused_addr())], tls_b.clone()).await;
    let addr_b = nb.net.local_addr();
    let mut na = start(a, vec![peer(b, addr_b)], tls_a).await;
    deliver_eventually(&na.net, &mut nb, a, b"first life").await;

    nb.net.shutdown().await;
    wait_until("a notices b is gone", || {
        na.net.connected_peers().is_empty()
    })
    .await;
    let mut nb = start_at(b, addr_b, vec![peer(a, unused_addr())], tls_b, 1 << 20).await;
    deliver_eventually(&na.net, &mut nb, a, b"second life").await;
    deliver_eventually(&nb.net, &mut na, b, b"back again").await;
    stop(&[&na, &nb]).await;
}
