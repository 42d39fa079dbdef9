//! Named scenarios: which faults the network suffers and which Byzantine behaviour (if any) the
//! faulty validators run. A seed then fixes every remaining choice (committee size, epoch length,
//! latencies, partition and crash times).

use super::rng::SimRng;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ByzantineKind {
    Equivocator,
    DoubleVoter,
    ConflictingVoter,
    Forger,
    StaleEpochReplay,
    Silent,
    Twins,
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub byzantine: Option<ByzantineKind>,
    /// Message loss, in per mille.
    pub loss: u64,
    /// Message duplication, in per mille.
    pub duplication: u64,
    pub partitions: bool,
    pub crashes: bool,
    /// Largest clock offset of a node, either way.
    pub clock_skew_ms: u64,
}

const fn scenario(name: &'static str, byzantine: Option<ByzantineKind>) -> Scenario {
    Scenario {
        name,
        byzantine,
        loss: 10,
        duplication: 10,
        partitions: false,
        crashes: false,
        clock_skew_ms: 50,
    }
}

pub const SCENARIOS: &[Scenario] = &[
    scenario("baseline", None),
    Scenario {
        loss: 100,
        duplication: 50,
        ..scenario("lossy", None)
    },
    Scenario {
        partitions: true,
        ..scenario("partition", None)
    },
    Scenario {
        crashes: true,
        ..scenario("crash-restart", None)
    },
    Scenario {
        clock_skew_ms: 3_000,
        ..scenario("clock-skew", None)
    },
    Scenario {
        partitions: true,
        ..scenario("equivocator", Some(ByzantineKind::Equivocator))
    },
    Scenario {
        crashes: true,
        ..scenario("double-voter", Some(ByzantineKind::DoubleVoter))
    },
    Scenario {
        partitions: true,
        ..scenario("conflicting-voter", Some(ByzantineKind::ConflictingVoter))
    },
    Scenario {
        loss: 50,
        ..scenario("forger", Some(ByzantineKind::Forger))
    },
    Scenario {
        crashes: true,
        ..scenario("stale-epoch-replay", Some(ByzantineKind::StaleEpochReplay))
    },
    Scenario {
        crashes: true,
        partitions: true,
        ..scenario("silent", Some(ByzantineKind::Silent))
    },
    Scenario {
        partitions: true,
        ..scenario("twins", Some(ByzantineKind::Twins))
    },
];

pub fn by_name(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// Everything a seed decides about a run of a scenario.
#[derive(Clone, Debug)]
pub struct Setup {
    pub committee_size: usize,
    pub byzantine: usize,
    /// Honest validators beyond the committee: they rotate in at epoch changes.
    pub spare_honest: usize,
    /// Blocks per epoch before the application ends it.
    pub epoch_length: u64,
    pub latency_ms: (u64, u64),
    /// When every fault stops; liveness is measured after it.
    pub heal_at_ms: u64,
    pub end_ms: u64,
    pub base_timeout_ms: u64,
}

impl Setup {
    pub fn new(scenario: &Scenario, rng: &mut SimRng) -> Setup {
        let committee_size = [4usize, 7, 10][rng.range(0, 2) as usize];
        let f = (committee_size - 1) / 3;
        let byzantine = if scenario.byzantine.is_some() {
            rng.range(1, f as u64) as usize
        } else {
            0
        };
        let min = rng.range(2, 10);
        Setup {
            committee_size,
            byzantine,
            spare_honest: 2,
            epoch_length: rng.range(20, 40),
            latency_ms: (min, min + rng.range(5, 40)),
            heal_at_ms: 10_000,
            // Enough for three consecutive silent leaders at the backoff cap, then 10 commits.
            end_ms: 28_000,
            base_timeout_ms: 400,
        }
    }
}
