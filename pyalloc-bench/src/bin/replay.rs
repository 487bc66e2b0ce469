//! W5: replays CPython allocation traces on every peer and prints the median ns per event.
//!
//! ```text
//! cargo run --release -p pyalloc-bench --bin replay -- [--runs N] [--peers a,b,..] [--csv] [TRACE...]
//! ```
//!
//! Each trace is read wholly into memory before any timing. Runs interleave the peers (run 1:
//! every peer, run 2: every peer, ...), each run on a fresh peer (a fresh pyalloc `Heap`).
//! Every block is tagged and verified (see `pyalloc_bench::replay`): a mismatch prints where
//! it happened and exits with status 1. Without TRACE, every `*.trace.gz` of `shared/traces`.

use std::path::PathBuf;
use std::process::ExitCode;

use pyalloc_bench::replay::{median, replay, ReplayError};
use pyalloc_bench::trace::default_traces;
use pyalloc_bench::{available_peers, parse_peers, with_peer, Peer, PeerKind, PeerVisitor, Trace};

struct Args {
    runs: usize,
    peers: Vec<PeerKind>,
    csv: bool,
    traces: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut runs = 5;
    let mut peers = None;
    let mut csv = false;
    let mut traces = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--runs takes a positive number")?;
            }
            "--peers" => peers = Some(args.next().ok_or("--peers takes a list")?),
            "--csv" => csv = true,
            "-h" | "--help" => {
                return Err("usage: replay [--runs N] [--peers a,b,..] [--csv] [TRACE...]".into())
            }
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => traces.push(PathBuf::from(arg)),
        }
    }
    if traces.is_empty() {
        traces = default_traces();
        if traces.is_empty() {
            return Err("no traces given and none found in shared/traces".into());
        }
    }
    Ok(Args {
        runs,
        peers: parse_peers(peers.as_deref())?,
        csv,
        traces,
    })
}

/// Replays one trace on a fresh peer.
struct Replay<'t>(&'t Trace);

impl PeerVisitor for Replay<'_> {
    type Output = Result<f64, ReplayError>;
    fn visit<P: Peer>(self, peer: &P) -> Self::Output {
        Ok(replay(peer, self.0)?.as_secs_f64() * 1e9)
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
    let peers = available_peers(&args.peers);
    let mut traces = Vec::new();
    for path in &args.traces {
        match Trace::load(path) {
            Ok(t) => traces.push(t),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    }
    if args.csv {
        println!("trace,allocator,ns_per_event,ratio_to_pyalloc");
    }
    for trace in &traces {
        let events = trace.events.len() as f64;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
        for _ in 0..args.runs {
            for (i, &kind) in peers.iter().enumerate() {
                match with_peer(kind, Replay(trace)).expect("available peers only") {
                    Ok(ns) => times[i].push(ns / events),
                    Err(e) => {
                        eprintln!("verification failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
        let base = peers
            .iter()
            .position(|&p| p == PeerKind::Pyalloc)
            .map(|i| medians[i]);
        let ratio = |m: f64| base.map_or(f64::NAN, |b| m / b);
        if args.csv {
            for (kind, &m) in peers.iter().zip(&medians) {
                println!("{},{},{m:.2},{:.3}", trace.name, kind.key(), ratio(m));
            }
        } else {
            println!(
                "\n{}: {} events, {} runs (median ns per event; ratio = peer / pyalloc)",
                trace.name,
                trace.events.len(),
                args.runs
            );
            println!("  {:<28} {:>10} {:>8}", "allocator", "ns/event", "ratio");
            for (kind, &m) in peers.iter().zip(&medians) {
                println!("  {:<28} {m:>10.2} {:>8.2}", kind.label(), ratio(m));
            }
        }
    }
    ExitCode::SUCCESS
}
