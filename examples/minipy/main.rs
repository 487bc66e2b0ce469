//! minipy: a miniature Python object model on pyalloc, and four pyperformance-style workloads
//! that compare pyalloc with the system allocator under it.
//!
//! The object model ([`model`]) is CPython's in miniature: `int` (with the shared small ints
//! -5..=256), `float`, `str`, `tuple`, `list` and `dict` (compact and ordered), each object
//! starting with a reference count that `incref`/`decref` maintain and that deallocates the
//! object at zero. Objects come from a [`Memory`] backend: pyalloc with CPython's free lists
//! (float 100, list 80, dict 80, tuple 2000 per length 1..=20), pyalloc with every free list
//! off, or the system allocator; the runtime code is the same in the three modes.
//!
//! ```text
//! cargo run --release --example minipy                     # every workload, every mode, a table
//! cargo run --release --example minipy -- nqueens          # one workload, every mode
//! cargo run --release --example minipy -- float --mode system --size 2
//! ```
//!
//! Every workload checks its result against a known answer (CPython 3.11's), the modes must
//! agree, and after each run in a pyalloc mode every block must be back (the heap's live
//! blocks return to where they started and `Heap::check` passes). Any failure exits non-zero.

mod model;
#[cfg(test)]
mod tests;
mod workloads;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pyalloc::{FreeListStats, Heap, HeapConfig, Stats};

use model::{FreeListSnapshot, Memory, Runtime};
use workloads::{Workload, WORKLOADS};

/// Where a run's objects live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// pyalloc with CPython's free lists.
    Pyalloc,
    /// pyalloc with every free list off (`HeapConfig::new().free_lists(false)`).
    NoFreeList,
    /// The system allocator (glibc `malloc` through `allocator_api2::alloc::Global`).
    System,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Pyalloc, Mode::NoFreeList, Mode::System];

    fn name(self) -> &'static str {
        match self {
            Mode::Pyalloc => "pyalloc",
            Mode::NoFreeList => "nofreelist",
            Mode::System => "system",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// The two heaps of the pyalloc modes, each shared by every workload of a run of the command
/// (like one interpreter running them one after another).
struct Heaps {
    free_lists: Heap,
    no_free_lists: Heap,
}

impl Heaps {
    fn new() -> Heaps {
        Heaps {
            free_lists: Heap::new(),
            no_free_lists: Heap::with_config(HeapConfig::new().free_lists(false))
                .expect("a valid configuration"),
        }
    }

    fn of(&self, mode: Mode) -> Option<&Heap> {
        match mode {
            Mode::Pyalloc => Some(&self.free_lists),
            Mode::NoFreeList => Some(&self.no_free_lists),
            Mode::System => None,
        }
    }
}

/// Blocks handed out and not resting on a free list, plus large allocations: the memory
/// that live objects hold.
fn live_blocks(stats: &Stats) -> usize {
    let resting: usize = stats.classes().iter().map(|c| c.free_list_slots).sum();
    stats.blocks_in_use() - resting + stats.large_allocations()
}

/// The CPU time this (single-threaded) process has had so far, user and system, from
/// `/proc/self/schedstat` (nanoseconds, brought up to date at every scheduler tick); `None`
/// where that file does not exist.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One workload in one mode.
struct Outcome {
    mode: Mode,
    /// Wall-clock time of the run.
    wall: Duration,
    /// CPU time of the run (user and system, page faults included), when the OS tells it:
    /// steadier than wall-clock time on a shared machine.
    cpu: Option<Duration>,
    /// The workload's summary, or how it missed its known answer.
    result: Result<String, String>,
    /// What the free lists did during the run (pyalloc modes).
    lists: Option<FreeListSnapshot>,
    /// A problem with the heap after the run: leaked blocks or a broken invariant.
    heap_problem: Option<String>,
}

/// Runs `w` with `size` in `mode`, timing the runtime's whole life (its creation, the
/// workload, and the freeing of everything).
fn run_mode(w: &Workload, mode: Mode, heaps: &Heaps, size: usize) -> Outcome {
    let heap = heaps.of(mode);
    let before = heap.map(FreeListSnapshot::of);
    let live_before = heap.map(|h| live_blocks(&h.stats()));
    let mem = heap.map_or(Memory::System, Memory::Pyalloc);
    let (start, start_cpu) = (Instant::now(), cpu_time());
    let result = {
        let rt = Runtime::new(mem);
        (w.run)(&rt, size)
    };
    let wall = start.elapsed();
    let cpu = start_cpu.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    let lists = heap
        .zip(before)
        .map(|(h, b)| FreeListSnapshot::of(h).since(&b));
    let heap_problem = heap.and_then(|h| {
        let live = live_blocks(&h.stats());
        if Some(live) != live_before {
            return Some(format!(
                "{} in mode {}: {live} blocks live after the run, {} before: objects leaked",
                w.name,
                mode.name(),
                live_before.unwrap_or(0)
            ));
        }
        h.check()
            .err()
            .map(|e| format!("{} in mode {}: heap check failed: {e}", w.name, mode.name()))
    });
    Outcome {
        mode,
        wall,
        cpu,
        result,
        lists,
        heap_problem,
    }
}

/// A free list's hit rate: allocations served from the list.
fn hit_rate(s: &FreeListStats) -> String {
    let total = s.hits + s.misses;
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * s.hits as f64 / total as f64)
    }
}

/// The results of one workload in every mode run.
struct Row {
    name: &'static str,
    size: usize,
    outcomes: Vec<Outcome>,
}

impl Row {
    fn outcome(&self, mode: Mode) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.mode == mode)
    }

    /// Every failure of this row: a missed known answer, modes that disagree, heap problems.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.outcomes {
            if let Err(e) = &o.result {
                out.push(format!("{} in mode {}: {e}", self.name, o.mode.name()));
            }
            out.extend(o.heap_problem.clone());
        }
        let oks: Vec<(&Outcome, &String)> = self
            .outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().ok().map(|r| (o, r)))
            .collect();
        if let Some((first, answer)) = oks.first() {
            for (o, r) in &oks[1..] {
                if r != answer {
                    out.push(format!(
                        "{}: modes disagree: {} gave {answer:?}, {} gave {r:?}",
                        self.name,
                        first.mode.name(),
                        o.mode.name()
                    ));
                }
            }
        }
        out
    }
}

/// Prints the table: one line per workload, time per mode, ratios to the system allocator,
/// free-list hit rates (pyalloc mode).
fn print_table(rows: &[Row]) {
    println!(
        "{:<11} {:>5} {:>10} {:>11} {:>10} {:>9} {:>9}   {:>6} {:>6} {:>6} {:>6}",
        "workload",
        "size",
        "pyalloc",
        "nofreelist",
        "system",
        "pya/sys",
        "nofl/sys",
        "float",
        "list",
        "dict",
        "tuple"
    );
    println!("{}", "-".repeat(103));
    for row in rows {
        let secs = |m: Mode| {
            row.outcome(m)
                .map(|o| o.cpu.unwrap_or(o.wall).as_secs_f64())
        };
        let time = |m: Mode| secs(m).map_or("-".into(), |s| format!("{s:.3} s"));
        let ratio = |m: Mode| match (secs(m), secs(Mode::System)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let lists = row.outcome(Mode::Pyalloc).and_then(|o| o.lists);
        let rates: Vec<String> = match lists {
            Some(l) => l.named().iter().map(|(_, s)| hit_rate(s)).collect(),
            None => vec!["-".into(); 4],
        };
        println!(
            "{:<11} {:>5} {:>10} {:>11} {:>10} {:>9} {:>9}   {:>6} {:>6} {:>6} {:>6}",
            row.name,
            row.size,
            time(Mode::Pyalloc),
            time(Mode::NoFreeList),
            time(Mode::System),
            ratio(Mode::Pyalloc),
            ratio(Mode::NoFreeList),
            rates[0],
            rates[1],
            rates[2],
            rates[3]
        );
    }
    println!();
    let cpu = rows
        .iter()
        .all(|r| r.outcomes.iter().all(|o| o.cpu.is_some()));
    if cpu {
        println!("times: CPU time of each run (user + system, page faults included), which a");
        println!("shared machine disturbs less than wall-clock time (listed further down).");
    } else {
        println!("times: wall-clock time of each run.");
    }
    println!("pya/sys, nofl/sys: time relative to the system allocator (below 1: faster).");
    println!("float..tuple: free-list hit rate in mode pyalloc (allocations served from the");
    println!("list; the twenty tuple lists together); nofreelist's lists have capacity 0.");
    println!();
    for row in rows {
        if let Some(Ok(answer)) = row.outcomes.first().map(|o| &o.result) {
            println!("{:<11} {answer}", row.name);
        }
    }
}

/// Prints the wall-clock times, and each pyalloc-mode free list's full figures, per row.
fn print_details(rows: &[Row]) {
    println!();
    println!("wall-clock time per mode:");
    for row in rows {
        let walls: Vec<String> = row
            .outcomes
            .iter()
            .map(|o| format!("{} {:.3} s", o.mode.name(), o.wall.as_secs_f64()))
            .collect();
        println!("  {:<11} {}", row.name, walls.join("  "));
    }
    println!();
    println!("free lists in mode pyalloc, per workload: hits / misses / pushes / overflows");
    for row in rows {
        if let Some(lists) = row.outcome(Mode::Pyalloc).and_then(|o| o.lists) {
            let parts: Vec<String> = lists
                .named()
                .iter()
                .map(|(name, s)| {
                    format!(
                        "{name} {}/{}/{}/{}",
                        s.hits, s.misses, s.pushes, s.overflows
                    )
                })
                .collect();
            println!("  {:<11} {}", row.name, parts.join("  "));
        }
    }
}

const USAGE: &str = "\
usage: minipy                                   every workload, every mode, a table
       minipy WORKLOAD [--mode MODE] [--size N] one workload (every mode unless --mode)
WORKLOAD: nqueens, json_dumps, float, richards
MODE:     pyalloc (free lists on), nofreelist (free lists off), system (glibc malloc)";

/// What the command line asks for.
struct Request {
    workloads: Vec<&'static Workload>,
    modes: Vec<Mode>,
    size: Option<usize>,
}

fn parse_args(args: &[String]) -> Result<Request, String> {
    let mut request = Request {
        workloads: WORKLOADS.iter().collect(),
        modes: Mode::ALL.to_vec(),
        size: None,
    };
    let mut it = args.iter();
    if let Some(first) = it.next() {
        if first == "-h" || first == "--help" {
            return Err(String::new());
        }
        let w = workloads::find(first).ok_or_else(|| format!("unknown workload {first:?}"))?;
        request.workloads = vec![w];
    }
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--mode" => {
                let m = Mode::parse(value).ok_or_else(|| format!("unknown mode {value:?}"))?;
                request.modes = vec![m];
            }
            "--size" => {
                let n = value
                    .parse()
                    .map_err(|_| format!("--size wants a positive integer, not {value:?}"))?;
                if n == 0 {
                    return Err("--size wants a positive integer".into());
                }
                request.size = Some(n);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(request)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = match parse_args(&args) {
        Ok(r) => r,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("minipy: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };

    println!("minipy: a CPython-style object model on pyalloc, pyperformance-style workloads");
    println!("modes: pyalloc = pymalloc + free lists (float 100, list 80, dict 80, tuple 2000 per");
    println!(
        "length 1..=20); nofreelist = the same heap with free_lists(false); system = the same"
    );
    println!("runtime on glibc malloc (allocator_api2::alloc::Global)");
    for w in &request.workloads {
        println!(
            "  {:<11} size {} = {}",
            w.name,
            request.size.unwrap_or(w.default_size),
            w.unit
        );
    }
    println!();

    let heaps = Heaps::new();
    let mut rows = Vec::new();
    for w in &request.workloads {
        let size = request.size.unwrap_or(w.default_size);
        let outcomes = request
            .modes
            .iter()
            .map(|&m| run_mode(w, m, &heaps, size))
            .collect();
        rows.push(Row {
            name: w.name,
            size,
            outcomes,
        });
    }

    print_table(&rows);
    print_details(&rows);

    if request.modes.contains(&Mode::Pyalloc) {
        println!();
        println!("heap of mode pyalloc after the runs (every object freed; what remains are the");
        println!("slots resting on free lists), in sys._debugmallocstats()'s layout:");
        println!();
        print!("{}", heaps.free_lists.stats());
    }

    let mut failures: Vec<String> = rows.iter().flat_map(Row::failures).collect();
    for mode in [Mode::Pyalloc, Mode::NoFreeList] {
        let heap = heaps.of(mode).expect("a pyalloc mode");
        heap.clear_free_lists();
        let stats = heap.stats();
        if stats.blocks_in_use() != 0 || stats.large_allocations() != 0 {
            failures.push(format!(
                "mode {}: {} blocks and {} large allocations still in use after clearing the free lists",
                mode.name(),
                stats.blocks_in_use(),
                stats.large_allocations()
            ));
        }
        if let Err(e) = heap.check() {
            failures.push(format!("mode {}: heap check failed: {e}", mode.name()));
        }
    }
    println!();
    if failures.is_empty() {
        println!("all results match their known answers and agree across modes; no leaks");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("minipy: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
