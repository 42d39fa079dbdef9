//! `trellis-sim`: runs the deterministic consensus simulator over many seeds.
//!
//! `trellis-sim --seeds N [--scenario NAME|all] [--seed S] [--plant-bug skip-lock-check|skip-round-check] [--threads T]`
//!
//! The last line printed is `seeds=<N> runs=<R> commits=<C> violations=<V>`. On a violation
//! the scenario, seed and a replay command are printed and the exit code is 1.

use std::process::ExitCode;
use trellis_consensus::safety::PlantedBug;
use trellis_consensus::sim::{self, SCENARIOS, scenario};

/// Seeds per scenario when `--seeds` is not given.
const DEFAULT_SEEDS: u64 = 25;

struct Args {
    seeds: u64,
    seed: Option<u64>,
    scenario: Option<String>,
    plant: Option<PlantedBug>,
    threads: usize,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: DEFAULT_SEEDS,
        seed: None,
        scenario: None,
        plant: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seeds" => {
                args.seeds = value("--seeds")?
                    .parse()
                    .map_err(|_| "--seeds must be a number".to_string())?
            }
            "--seed" => {
                args.seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|_| "--seed must be a number".to_string())?,
                )
            }
            "--scenario" => args.scenario = Some(value("--scenario")?),
            "--threads" => {
                args.threads = value("--threads")?
                    .parse()
                    .map_err(|_| "--threads must be a number".to_string())?
            }
            "--plant-bug" => {
                args.plant = Some(match value("--plant-bug")?.as_str() {
                    "skip-lock-check" => PlantedBug::SkipLockCheck,
                    "skip-round-check" => PlantedBug::SkipRoundCheck,
                    other => return Err(format!("unknown planted bug '{other}' (skip-lock-check, skip-round-check)")),
                })
            }
            "--verbose" | "-v" => args.verbose = true,
            "--help" | "-h" => {
                return Err("usage: trellis-sim --seeds N [--scenario NAME|all] [--seed S] [--plant-bug skip-lock-check|skip-round-check] [--threads T] [--verbose]".into())
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("trellis-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let scenarios: Vec<&'static scenario::Scenario> = match args.scenario.as_deref() {
        None | Some("all") => SCENARIOS.iter().collect(),
        Some(name) => match scenario::by_name(name) {
            Some(s) => vec![s],
            None => {
                let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                eprintln!(
                    "trellis-sim: unknown scenario '{name}' (one of: all, {})",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        },
    };
    let (seeds, first): (u64, u64) = match args.seed {
        Some(s) => (1, s),
        None => (args.seeds, 0),
    };
    let reports = sim::run_many(&scenarios, first..first + seeds, args.plant, args.threads);
    let mut commits = 0;
    let mut violations = 0;
    let mut first_failure = None;
    for r in &reports {
        commits += r.commits;
        if args.verbose {
            println!(
                "scenario={} seed={} n={} byzantine={} commits={} epochs={} dropped={} fingerprint={}",
                r.scenario,
                r.seed,
                r.committee_size,
                r.byzantine,
                r.commits,
                r.epochs,
                r.dropped,
                r.fingerprint.short()
            );
            println!("  dropped: {:?}", r.drop_reasons);
            for n in &r.nodes {
                println!("  {n}");
            }
        }
        if !r.violations.is_empty() {
            violations += r.violations.len();
            for v in &r.violations {
                println!("VIOLATION scenario={} seed={}: {v}", r.scenario, r.seed);
            }
            first_failure.get_or_insert((r.scenario, r.seed));
        }
    }
    if let Some((scenario, seed)) = first_failure {
        let plant = match args.plant {
            Some(PlantedBug::SkipLockCheck) => " --plant-bug skip-lock-check",
            Some(PlantedBug::SkipRoundCheck) => " --plant-bug skip-round-check",
            None => "",
        };
        println!(
            "replay: cargo run --release -p trellis-consensus --features sim --bin trellis-sim -- --seed {seed} --scenario {scenario}{plant}"
        );
    }
    println!(
        "seeds={seeds} runs={} commits={commits} violations={violations}",
        reports.len()
    );
    if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
