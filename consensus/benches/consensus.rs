//! Criterion benchmarks: vote handling and certificate verification for committees of 4, 10
//! and 31, and the core alone with 4 in-process replicas on an instant network.
//!
//! `cargo bench -p trellis-consensus`

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use trellis_consensus::sim::testkit::{Keys, LocalNet};
use trellis_consensus::{Input, Message, Recovery, Replica, ReplicaConfig};

const SIZES: [usize; 3] = [4, 10, 31];

/// The leader of round 2 receives a quorum of votes for the block of round 1: each vote's
/// signature is checked, and the last one forms the certificate.
fn vote_handling(c: &mut Criterion) {
    let mut group = c.benchmark_group("vote_handling");
    for n in SIZES {
        let keys = Keys::new(n);
        let leader = 2 % n; // round-robin: (epoch 0 + round 2) mod n
        let block = keys.block(&keys.genesis.root_qc(), 1, 1, b"payload");
        let quorum = keys.committee.quorum();
        let votes: Vec<_> = (0..n)
            .filter(|i| *i != leader)
            .take(quorum)
            .map(|i| (keys.key(i), keys.vote(&block, i)))
            .collect();
        group.throughput(Throughput::Elements(votes.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    Replica::new(
                        ReplicaConfig::default(),
                        keys.signers[leader].clone(),
                        Recovery::genesis(keys.genesis.clone()),
                    )
                    .expect("genesis recovery")
                },
                |mut replica| {
                    for (from, v) in &votes {
                        replica.handle(
                            1,
                            Input::Message {
                                from: *from,
                                message: Message::Vote(v.clone()),
                            },
                        );
                    }
                    assert_eq!(replica.stats().qcs_formed, 1);
                    replica
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Batch verification of a quorum certificate.
fn certificate_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("qc_verify");
    for n in SIZES {
        let keys = Keys::new(n);
        let block = keys.block(&keys.genesis.root_qc(), 1, 1, b"payload");
        let signers: Vec<usize> = (0..keys.committee.quorum()).collect();
        let qc = keys.qc(&block, &signers);
        group.throughput(Throughput::Elements(signers.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| qc.verify(trellis_consensus::sim::testkit::CHAIN, &keys.committee))
        });
    }
    group.finish();
}

/// Four replicas, instant network, 256-byte payloads: committed blocks per second of the core
/// alone (all four replicas run on one thread, so this is per core for the whole committee).
fn core_throughput(c: &mut Criterion) {
    const BLOCKS: u64 = 200;
    let mut group = c.benchmark_group("core_4_replicas");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BLOCKS));
    group.bench_function("commit_blocks", |b| {
        b.iter_batched(
            || LocalNet::new(4, 256),
            |mut net| {
                assert_eq!(net.run(BLOCKS), BLOCKS);
                net
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    vote_handling,
    certificate_verification,
    core_throughput
);
criterion_main!(benches);
