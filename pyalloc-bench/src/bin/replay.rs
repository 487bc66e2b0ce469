//! W5: replays CPython allocation traces on every peer and prints the median ns per event.
//!
//! ```text
//! cargo run --release -p pyalloc-bench --bin replay -- [--runs N] [--warmup N] [--keep-peer] [--peers a,b,..] [--csv] [--svg PATH] [TRACE...]
//! ```
//!
//! Each trace is read wholly into memory before any timing. Runs interleave the peers (run 1:
//! every peer, run 2: every peer, ...), each round starting one peer further along the list so
//! that no peer always follows the same one, each replay on a fresh peer (a fresh pyalloc
//! `Heap`). Every timed replay comes right after `--warmup` untimed replays on the same
//! allocator (default 1): a process-wide allocator idle while the other peers ran may have
//! given its free memory back (mimalloc 3 purges pages unused for 1 s, jemalloc decays dirty
//! pages over seconds), and would otherwise pay page faults a running program does not. The
//! table gives the median, the spread (fastest..slowest run) and the median minor page faults
//! of a timed replay. `--clock cpu` times the replay loop by the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`, user and system, so page faults count) instead of the wall
//! clock: on a shared machine it leaves out the time the thread waited for a core.
//! `--keep-peer` runs the warm-up replays and the timed one on one peer instead of a fresh
//! peer each: pyalloc's heap then starts the timed replay with what the warm-up left it, as a
//! running program's heap would (what its release policy kept, `PYALLOC_RELEASE` or a
//! `pyalloc:POLICY` peer), where a fresh heap faults in every page it touches.
//!
//! Peers: the keys of `PeerKind::ALL`, and `cabi:NAME=PATH`, any malloc-compatible shared
//! library called through `malloc`/`calloc`/`realloc`/`free` function pointers
//! (`pyalloc_bench::cabi`). Without `--peers`, every in-process peer and `cabi::default_specs()`:
//! glibc, Debian's mimalloc and jemalloc when installed, and mimalloc v2 and v3 built from the
//! `mimalloc` crate's sources by build.rs; a library that cannot be loaded is skipped with a
//! printed line. `--add-peers` appends to that list (or to `--peers`), e.g.
//! `--add-peers cabi:pyalloc-c=target/release/libpyalloc_malloc.so`.
//! Every block is tagged and verified (see `pyalloc_bench::replay`): a mismatch prints where
//! it happened and exits with status 1. Without TRACE, every `*.trace.gz` of `shared/traces`.
//!
//! The table is also drawn as a bar chart, written to `--svg PATH` (by default
//! `target/charts/replay.svg`): ns per event per trace and allocator, and each allocator's
//! time over the fastest allocator's on the trace (the bounds, bumpalo and lifo-floor, left
//! out of "fastest").

use std::path::PathBuf;
use std::process::ExitCode;

use pyalloc_bench::cabi;
use pyalloc_bench::chart::{self, Chart, Panel};
use pyalloc_bench::replay::{median, replay_counted, Measured, ReplayError, Summary};
use pyalloc_bench::trace::default_traces;
use pyalloc_bench::{available_peers, parse_peers, with_peer, Peer, PeerKind, PeerVisitor, Trace};

struct Args {
    runs: usize,
    warmup: usize,
    keep_peer: bool,
    cpu: bool,
    peers: Vec<PeerKind>,
    csv: bool,
    svg: PathBuf,
    traces: Vec<PathBuf>,
}

const USAGE: &str = "usage: replay [--runs N] [--warmup N] [--keep-peer] [--clock wall|cpu] \
                     [--peers a,b,..] \
                     [--add-peers a,b,..] \
                     [--csv] [--svg PATH] [TRACE...]";

fn parse_args() -> Result<Args, String> {
    let mut runs = 5;
    let mut warmup = 1;
    let mut keep_peer = false;
    let mut cpu = false;
    let mut added = Vec::new();
    let mut peers = None;
    let mut csv = false;
    let mut svg = None;
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
            "--warmup" => {
                warmup = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--warmup takes a number")?;
            }
            "--keep-peer" => keep_peer = true,
            "--clock" => {
                cpu = match args.next().as_deref() {
                    Some("wall") => false,
                    Some("cpu") => true,
                    _ => return Err("--clock takes wall or cpu".into()),
                };
            }
            "--peers" => peers = Some(args.next().ok_or("--peers takes a list")?),
            "--add-peers" => added.push(args.next().ok_or("--add-peers takes a list")?),
            "--csv" => csv = true,
            "--svg" => svg = Some(PathBuf::from(args.next().ok_or("--svg takes a path")?)),
            "-h" | "--help" => return Err(USAGE.into()),
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
    let mut peers = match peers {
        Some(list) => parse_peers(Some(&list))?,
        None => {
            let mut all = parse_peers(None)?;
            all.extend(cabi::default_specs().iter().map(|spec| cabi::kind(spec)));
            all
        }
    };
    for list in added {
        peers.extend(parse_peers(Some(&list))?);
    }
    Ok(Args {
        runs,
        warmup,
        keep_peer,
        cpu,
        peers,
        csv,
        svg: svg.unwrap_or_else(|| chart::default_path("replay.svg")),
        traces,
    })
}

/// Replays one trace `1 + warm-ups` times on one fresh peer; the last replay's figures.
struct Replay<'t>(&'t Trace, usize);

impl PeerVisitor for Replay<'_> {
    type Output = Result<Measured, ReplayError>;
    fn visit<P: Peer>(self, peer: &P) -> Self::Output {
        for _ in 0..self.1 {
            replay_counted(peer, self.0)?;
        }
        replay_counted(peer, self.0)
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
        println!("trace,allocator,ns_per_event,min,max,minor_faults,ratio_to_pyalloc");
    }
    // Per trace, the median ns per event of each peer, for the chart.
    let mut table: Vec<Vec<f64>> = Vec::with_capacity(traces.len());
    for trace in &traces {
        let events = trace.events.len() as f64;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
        let mut faults: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
        for run in 0..args.runs {
            for k in 0..peers.len() {
                // Run `run` starts `run` peers along the list.
                let i = (run + k) % peers.len();
                // With `--keep-peer`, one peer for the warm-ups and the timed replay.
                let (passes, warmups) = if args.keep_peer {
                    (0..=0, args.warmup)
                } else {
                    (0..=args.warmup, 0)
                };
                for pass in passes.clone() {
                    let replay = Replay(trace, warmups);
                    match with_peer(peers[i], replay).expect("available peers only") {
                        Ok(_) if pass < *passes.end() => {}
                        Ok(run) => {
                            let time = if args.cpu { run.cpu } else { run.elapsed };
                            times[i].push(time.as_secs_f64() * 1e9 / events);
                            faults[i].push(run.minor_faults as f64);
                        }
                        Err(e) => {
                            eprintln!("verification failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
        }
        let summaries: Vec<Summary> = times.iter_mut().map(|t| Summary::of(t)).collect();
        let medians: Vec<f64> = summaries.iter().map(|s| s.median).collect();
        let faults: Vec<f64> = faults.iter_mut().map(|f| median(f)).collect();
        let base = peers
            .iter()
            .position(|&p| p == PeerKind::Pyalloc)
            .map(|i| medians[i]);
        let ratio = |m: f64| base.map_or(f64::NAN, |b| m / b);
        if args.csv {
            for ((kind, s), f) in peers.iter().zip(&summaries).zip(&faults) {
                println!(
                    "{},{},{:.2},{:.2},{:.2},{f},{:.3}",
                    trace.name,
                    kind.key(),
                    s.median,
                    s.min,
                    s.max,
                    ratio(s.median)
                );
            }
        } else {
            println!(
                "\n{}: {} events, {} runs after {} warm-up{} (median {} ns per event, \
                 fastest..slowest run, median minor page faults per run; ratio = peer / pyalloc)",
                trace.name,
                trace.events.len(),
                args.runs,
                args.warmup,
                if args.keep_peer {
                    " on the same peer"
                } else {
                    ""
                },
                if args.cpu { "thread CPU" } else { "wall" }
            );
            println!(
                "  {:<32} {:>10} {:>15} {:>8} {:>8}",
                "allocator", "ns/event", "spread", "faults", "ratio"
            );
            for ((kind, s), f) in peers.iter().zip(&summaries).zip(&faults) {
                println!(
                    "  {:<32} {:>10.2} {:>15} {f:>8} {:>8.2}",
                    kind.label(),
                    s.median,
                    format!("{:.2}..{:.2}", s.min, s.max),
                    ratio(s.median)
                );
            }
        }
        table.push(medians);
    }
    let chart = chart_of(&args, &peers, &traces, &table);
    match chart.write(&args.svg) {
        // On stdout with the table; on stderr when stdout is CSV.
        Ok(()) if args.csv => eprintln!("chart: {}", args.svg.display()),
        Ok(()) => println!("\nchart: {}", args.svg.display()),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The bounds, not allocators one would use: left out of "the fastest".
fn is_bound(kind: PeerKind) -> bool {
    matches!(kind, PeerKind::Bumpalo | PeerKind::LifoFloor)
}

/// The chart of `table[trace][peer]` (median ns per event).
fn chart_of(args: &Args, peers: &[PeerKind], traces: &[Trace], table: &[Vec<f64>]) -> Chart {
    let categories = traces
        .iter()
        .map(|t| format!("{} ({}k events)", t.name, t.events.len().div_ceil(1000)))
        .collect::<Vec<_>>();
    let ns: Vec<Vec<f64>> = (0..peers.len())
        .map(|p| table.iter().map(|row| row[p]).collect())
        .collect();
    // Each trace's fastest real allocator (of all peers when only bounds ran).
    let best: Vec<f64> = table
        .iter()
        .map(|row| {
            let fastest = |real: bool| {
                row.iter()
                    .zip(peers)
                    .filter(|&(_, &k)| !real || !is_bound(k))
                    .map(|(&m, _)| m)
                    .fold(f64::INFINITY, f64::min)
            };
            Some(fastest(true))
                .filter(|b| b.is_finite())
                .unwrap_or_else(|| fastest(false))
        })
        .collect();
    let ratios = ns
        .iter()
        .map(|row| row.iter().zip(&best).map(|(&m, &b)| m / b).collect())
        .collect();
    Chart {
        title: "Replay of CPython allocation traces".into(),
        notes: vec![format!(
            "median of {} run{} per trace and allocator, each right after {} untimed one{}, {} \
             ({} clock); every block tagged and verified; lower is better",
            args.runs,
            if args.runs == 1 { "" } else { "s" },
            args.warmup,
            if args.warmup == 1 { "" } else { "s" },
            if args.keep_peer {
                "on the same allocator (--keep-peer)"
            } else {
                "each on a fresh allocator"
            },
            if args.cpu { "thread CPU time" } else { "wall" }
        )],
        series: peers.iter().map(|p| p.label().to_owned()).collect(),
        panels: vec![
            Panel {
                title: "Time per event".into(),
                y_desc: "ns per event (median)".into(),
                categories: categories.clone(),
                values: ns,
                reference: None,
                label: |v| format!("{v:.1}"),
                weight: 4,
            },
            Panel {
                title: "Time over the fastest allocator on the trace (bumpalo and lifo-floor, \
                        bounds, not counted)"
                    .into(),
                y_desc: "× the fastest (1 = fastest)".into(),
                categories,
                values: ratios,
                reference: Some((1.0, "fastest".into())),
                label: |v| format!("{v:.2}"),
                weight: 4,
            },
        ],
    }
}
