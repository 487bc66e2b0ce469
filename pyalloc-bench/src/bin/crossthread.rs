//! W8: boxes allocated on producer threads and freed on consumer threads, every peer side by
//! side in one process; prints pairs per second and ns per pair, the median of the runs and
//! their spread.
//!
//! ```text
//! cargo run --release -p pyalloc-bench --bin crossthread -- \
//!     [--producers N] [--consumers N] [--pairs N] [--runs N] [--peers a,b,..]
//! ```
//!
//! Defaults: 1 producer, 1 consumer (this is a 2-core machine: one thread per core), 4e6
//! pairs, 7 runs. Run `r` visits the peers rotated by `r` (glibc, mimalloc, jemalloc, then
//! mimalloc, jemalloc, glibc, ...), so no peer always runs first or after the same one.
//! Each run spawns fresh threads, so a per-thread heap starts empty every run; the process's
//! allocators stay warm. Every box is verified (see `pyalloc_bench::crossthread`): a broken
//! run prints why and exits with status 1.

use std::process::ExitCode;

use pyalloc_bench::crossthread::{
    run, with_threaded_peer, Config, Outcome, ThreadedKind, ThreadedPeer, ThreadedVisitor, BATCH,
    BOX,
};
use pyalloc_bench::replay::median;

const USAGE: &str = "usage: crossthread [--producers N] [--consumers N] [--pairs N] [--runs N] \
                     [--peers a,b,..]";

struct Args {
    config: Config,
    runs: usize,
    peers: Vec<ThreadedKind>,
}

fn parse_args() -> Result<Args, String> {
    let mut config = Config {
        producers: 1,
        consumers: 1,
        pairs: 4_000_000,
    };
    let mut runs = 7;
    let mut peers = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|&n| n >= 1.0 && n.fract() == 0.0 && n < 1e15)
                .map(|n| n as u64)
                .ok_or(format!(
                    "{what} takes a positive whole number (1e6 is fine)"
                ))
        };
        match arg.as_str() {
            "--producers" => config.producers = number("--producers")? as usize,
            "--consumers" => config.consumers = number("--consumers")? as usize,
            "--pairs" => config.pairs = number("--pairs")?,
            "--runs" => runs = number("--runs")? as usize,
            "--peers" => peers = Some(args.next().ok_or("--peers takes a list")?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    if config.producers >= 1 << 16 {
        return Err("at most 65535 producers".into());
    }
    Ok(Args {
        config,
        runs,
        peers: ThreadedKind::parse_list(peers.as_deref())?,
    })
}

struct Run<'c>(&'c Config);

impl ThreadedVisitor for Run<'_> {
    type Output = Outcome;
    fn visit<P: ThreadedPeer>(self, peer: &P) -> Outcome {
        run(peer, self.0)
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let Args {
        config,
        runs,
        ref peers,
    } = args;
    if peers.is_empty() {
        eprintln!("no peers");
        return ExitCode::from(2);
    }
    // Per peer, ns per pair of each run.
    let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); peers.len()];
    for r in 0..runs {
        for k in 0..peers.len() {
            let i = (k + r) % peers.len();
            let outcome = with_threaded_peer(peers[i], Run(&config));
            if let Err(why) = outcome.check(&config) {
                eprintln!(
                    "{}, run {}: verification failed: {why}",
                    peers[i].key(),
                    r + 1
                );
                return ExitCode::FAILURE;
            }
            ns[i].push(outcome.elapsed.as_secs_f64() * 1e9 / config.pairs as f64);
        }
    }
    println!(
        "W8 cross-thread: {} boxes of {} B, {} producer{} -> {} consumer{}, batches of {BATCH}; \
         {runs} run{} per peer, interleaved",
        config.pairs,
        BOX.size(),
        config.producers,
        if config.producers == 1 { "" } else { "s" },
        config.consumers,
        if config.consumers == 1 { "" } else { "s" },
        if runs == 1 { "" } else { "s" },
    );
    let medians: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
    let base = peers
        .iter()
        .position(|k| k.key() == "pyalloc")
        .map(|i| medians[i]);
    println!(
        "  {:<10} {:>9} {:>9} {:>17} {:>8} {:>9}",
        "allocator", "Mpairs/s", "ns/pair", "min..max ns/pair", "spread", "÷ pyalloc"
    );
    for ((kind, times), &m) in peers.iter().zip(&ns).zip(&medians) {
        // `median` sorted the runs.
        let (lo, hi) = (times[0], times[times.len() - 1]);
        let ratio = base.map_or("-".to_owned(), |b| format!("{:.2}", m / b));
        println!(
            "  {:<10} {:>9.2} {:>9.1} {:>17} {:>7.1}% {:>9}",
            kind.key(),
            1e3 / m,
            m,
            format!("{lo:.1}..{hi:.1}"),
            (hi - lo) / 2.0 / m * 100.0,
            ratio,
        );
    }
    println!(
        "  (median of the runs; spread = half the min..max range over the median; ÷ pyalloc = \
         ns/pair over pyalloc's)"
    );
    ExitCode::SUCCESS
}
