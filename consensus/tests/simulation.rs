//! Seeded simulator runs across every scenario: safety and liveness invariants hold, the same
//! seed gives the same execution, and planted safety bugs are caught.

use trellis_consensus::safety::PlantedBug;
use trellis_consensus::sim::{self, RunReport, SCENARIOS, scenario};

/// Seeds per scenario: 12 scenarios x 25 seeds = 300 runs.
const SEEDS: u64 = 25;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn describe(failures: &[&RunReport]) -> String {
    failures
        .iter()
        .map(|r| {
            format!(
                "{} seed {}: {:?}\n  replay: cargo run --release -p trellis-consensus --features sim --bin trellis-sim -- --seed {} --scenario {}",
                r.scenario, r.seed, r.violations, r.seed, r.scenario
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_scenario_keeps_safety_and_liveness() {
    let all: Vec<_> = SCENARIOS.iter().collect();
    let reports = sim::run_many(&all, 0..SEEDS, None, threads());
    assert!(reports.len() >= 300, "only {} runs", reports.len());
    let failures: Vec<&RunReport> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    assert!(failures.is_empty(), "{}", describe(&failures));
    // The runs did real work: every run committed and most changed epochs.
    assert!(reports.iter().all(|r| r.commits >= sim::LIVENESS_COMMITS));
    let reconfigured = reports.iter().filter(|r| r.epochs >= 1).count();
    assert!(
        reconfigured * 10 >= reports.len() * 9,
        "only {reconfigured} runs changed epoch"
    );
    for n in [4, 7, 10] {
        assert!(
            reports.iter().any(|r| r.committee_size == n),
            "no committee of {n}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_execution() {
    let picked: Vec<_> = ["crash-restart", "twins", "partition"]
        .iter()
        .filter_map(|n| scenario::by_name(n))
        .collect();
    let first = sim::run_many(&picked, 7..9, None, threads());
    let second = sim::run_many(&picked, 7..9, None, threads());
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            a.fingerprint, b.fingerprint,
            "{} seed {}",
            a.scenario, a.seed
        );
        assert_eq!(a.commits, b.commits);
    }
    assert_ne!(
        first[0].fingerprint, first[1].fingerprint,
        "seeds should differ"
    );
}

fn caught(bug: PlantedBug, scenario: &str, expect: &str) {
    let s = scenario::by_name(scenario).expect("scenario exists");
    let reports = sim::run_many(&[s], 0..SEEDS, Some(bug), threads());
    let hits = reports
        .iter()
        .flat_map(|r| &r.violations)
        .filter(|v| v.contains(expect))
        .count();
    assert!(hits > 0, "{bug:?} went unnoticed in {scenario}");
}

#[test]
fn a_planted_lock_bug_is_caught() {
    caught(PlantedBug::SkipLockCheck, "equivocator", "agreement");
}

#[test]
fn a_planted_round_bug_is_caught() {
    caught(PlantedBug::SkipRoundCheck, "twins", "double vote");
}
