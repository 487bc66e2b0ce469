//! minipy: a miniature Python object model on pyalloc, and four pyperformance-style workloads
//! that compare pyalloc with the system allocator (and, with the `mimalloc` feature, mimalloc)
//! under it.
//!
//! The object model ([`model`]) is CPython's in miniature: `int` (with the shared small ints
//! -5..=256), `float`, `str`, `tuple`, `list` and `dict` (compact and ordered), each object
//! starting with a reference count that `incref`/`decref` maintain and that deallocates the
//! object at zero. Objects come from a [`Memory`] backend: pyalloc with CPython's free lists
//! (float 100, list 80, dict 80, tuple 2000 per length 1..=20), pyalloc with every free list
//! off, the system allocator, or mimalloc (feature `mimalloc`, which compiles it from C); the
//! runtime code is the same in every mode.
//!
//! ```text
//! cargo run --release -p minipy                         # every workload, every mode, a table
//! cargo run --release -p minipy -- nqueens --runs 9     # one workload, every mode, 9 runs
//! cargo run --release -p minipy -- float --mode system --size 2
//! cargo run --release -p minipy -- --help
//! cargo run --release -p minipy --features mimalloc    # and mode mimalloc
//! ```
//!
//! Each mode runs each workload `--runs` times (5 by default), the modes taking turns run by
//! run, each run on a fresh heap; the table gives the median time and the min-max spread.
//! Every run checks its result against a known answer (CPython 3.11's), all runs of all modes
//! must agree, and after each run in a pyalloc mode every block must be back (no live block
//! left, `Heap::check` passes, and nothing in use once the free lists are cleared). Any
//! failure exits non-zero.

mod model;
#[cfg(test)]
mod tests;
mod workloads;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::alloc::Layout;

use pyalloc::{Allocator, FreeListStats, Heap, HeapConfig, Release, Stats};

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
    /// mimalloc (`mi_malloc_small`/`mi_malloc`/`mi_free`), when built with the `mimalloc` feature.
    Mimalloc,
}

/// How to build and run mode mimalloc, for the messages that refuse or skip it.
const MIMALLOC_COMMAND: &str =
    "cargo run --release -p minipy --features mimalloc -- --mode mimalloc";

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Pyalloc,
        Mode::NoFreeList,
        Mode::System,
        Mode::Mimalloc,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Pyalloc => "pyalloc",
            Mode::NoFreeList => "nofreelist",
            Mode::System => "system",
            Mode::Mimalloc => "mimalloc",
        }
    }

    /// Whether this build can run the mode (mimalloc needs its feature).
    fn available(self) -> bool {
        self != Mode::Mimalloc || cfg!(feature = "mimalloc")
    }

    /// Why this build cannot run the mode, when it cannot.
    fn unavailable_reason(self) -> Option<String> {
        (!self.available()).then(|| {
            format!(
                "mode {} needs minipy built with the `mimalloc` feature: {MIMALLOC_COMMAND}",
                self.name()
            )
        })
    }

    fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// A fresh heap for one run in this mode: `None` for the system allocator.
    fn fresh_heap(self) -> Option<Heap> {
        match self {
            Mode::Pyalloc => Some(Heap::new()),
            Mode::NoFreeList => Some(
                Heap::with_config(HeapConfig::new().free_lists(false))
                    .expect("a valid configuration"),
            ),
            Mode::System | Mode::Mimalloc => None,
        }
    }

    /// The memory backend of a run in this mode, on `heap` (from [`fresh_heap`](Self::fresh_heap)).
    fn memory(self, heap: Option<&Heap>) -> Memory<'_> {
        match (self, heap) {
            (Mode::Pyalloc | Mode::NoFreeList, Some(heap)) => Memory::Pyalloc(heap),
            #[cfg(feature = "mimalloc")]
            (Mode::Mimalloc, None) => Memory::Mimalloc,
            (Mode::System, None) => Memory::System,
            (mode, _) => unreachable!("mode {} with heap {heap:?}", mode.name()),
        }
    }
}

/// Runs per mode when `--runs` is not given.
const DEFAULT_RUNS: usize = 5;

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

/// One run of one workload in one mode.
struct Run {
    /// Wall-clock time of the run.
    wall: Duration,
    /// CPU time of the run (user and system, page faults included), when the OS tells it:
    /// steadier than wall-clock time on a shared machine.
    cpu: Option<Duration>,
    /// The workload's summary, or how it missed its known answer.
    result: Result<String, String>,
    /// What the free lists did during the run (pyalloc modes).
    lists: Option<FreeListSnapshot>,
}

impl Run {
    /// The time the table compares: CPU time where the OS gives it, else wall-clock time.
    fn secs(&self) -> f64 {
        self.cpu.unwrap_or(self.wall).as_secs_f64()
    }
}

/// Runs `w` with `size` in `mode` on `heap` (a fresh one, `None` in modes system and mimalloc),
/// timing the runtime's whole life (its creation, the workload, and the freeing of everything).
/// A problem with the heap afterwards (a block still live, a broken invariant) goes to
/// `failures`.
fn run_once(
    w: &Workload,
    mode: Mode,
    heap: Option<&Heap>,
    size: usize,
    failures: &mut Vec<String>,
) -> Run {
    let before = heap.map(FreeListSnapshot::of);
    let live_before = heap.map(|h| live_blocks(&h.stats()));
    let mem = mode.memory(heap);
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
    if let Some(h) = heap {
        let live = live_blocks(&h.stats());
        if Some(live) != live_before {
            failures.push(format!(
                "{} in mode {}: {live} blocks live after the run, {} before: objects leaked",
                w.name,
                mode.name(),
                live_before.unwrap_or(0)
            ));
        }
        if let Err(e) = h.check() {
            failures.push(format!(
                "{} in mode {}: heap check failed: {e}",
                w.name,
                mode.name()
            ));
        }
    }
    Run {
        wall,
        cpu,
        result,
        lists,
    }
}

/// The end of a run's heap: with its free lists cleared, nothing may be left in use, and its
/// invariants must hold.
fn retire_heap(heap: &Heap, what: &str, failures: &mut Vec<String>) {
    heap.clear_free_lists();
    let stats = heap.stats();
    if stats.blocks_in_use() != 0 || stats.large_allocations() != 0 {
        failures.push(format!(
            "{what}: {} blocks and {} large allocations still in use after clearing the free lists",
            stats.blocks_in_use(),
            stats.large_allocations()
        ));
    }
    if let Err(e) = heap.check() {
        failures.push(format!("{what}: heap check failed: {e}"));
    }
}

/// The median, minimum and maximum of `xs` (not empty).
fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
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

/// Every run of one workload, in every mode asked for.
struct Row {
    workload: &'static Workload,
    size: usize,
    /// Per mode, its runs in order.
    modes: Vec<(Mode, Vec<Run>)>,
    /// The heap of mode pyalloc's last run, kept for the report (retired after it).
    last_heap: Option<Heap>,
}

impl Row {
    fn runs(&self, mode: Mode) -> Option<&[Run]> {
        self.modes
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, r)| r.as_slice())
    }

    /// Per run, `mode`'s time divided by mode `base`'s (the two ran one after the other).
    fn ratios_to(&self, mode: Mode, base: Mode) -> Option<Vec<f64>> {
        let runs = self.runs(mode)?;
        let system = self.runs(base)?;
        let ratios: Vec<f64> = runs
            .iter()
            .zip(system)
            .filter(|(_, s)| s.secs() > 0.0)
            .map(|(r, s)| r.secs() / s.secs())
            .collect();
        (!ratios.is_empty()).then_some(ratios)
    }

    /// The answer of every run, or the first run's error.
    fn answer(&self) -> Option<&String> {
        self.modes
            .iter()
            .flat_map(|(_, runs)| runs)
            .find_map(|r| r.result.as_ref().ok())
    }

    /// Every failure of the answers: a missed known answer, runs or modes that disagree.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let answer = self.answer();
        for (mode, runs) in &self.modes {
            for (i, run) in runs.iter().enumerate() {
                match &run.result {
                    Err(e) => out.push(format!(
                        "{} in mode {}, run {}: {e}",
                        self.workload.name,
                        mode.name(),
                        i + 1
                    )),
                    Ok(r) if Some(r) != answer => out.push(format!(
                        "{}: runs disagree: mode {} run {} gave {r:?}, another gave {:?}",
                        self.workload.name,
                        mode.name(),
                        i + 1,
                        answer.map_or("", |a| a.as_str())
                    )),
                    Ok(_) => {}
                }
            }
        }
        out
    }
}

/// `mode`'s time relative to `base`'s in `row`: the median ratio and its spread, blank for
/// `base` itself or when either did not run.
fn ratio_cells(row: &Row, mode: Mode, base: Mode) -> (String, String) {
    match row.ratios_to(mode, base) {
        Some(r) if mode != base => {
            let (m, lo, hi) = spread(&r);
            (format!("{m:.2}"), format!("{lo:.2}-{hi:.2}"))
        }
        _ => ("-".into(), "".into()),
    }
}

/// Prints the table: per workload and mode, the median time of its runs with their spread,
/// and the ratio to the system allocator (and to mimalloc, when it ran).
fn print_table(rows: &[Row]) {
    let with_mimalloc = rows.iter().any(|r| r.runs(Mode::Mimalloc).is_some());
    let mut head = format!(
        "{:<11} {:>5} {:<11} {:>9} {:>15} {:>10} {:>11}",
        "workload", "size", "mode", "median s", "min-max s", "vs system", "min-max"
    );
    if with_mimalloc {
        head += &format!(" {:>11} {:>11}", "vs mimalloc", "min-max");
    }
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    for row in rows {
        for (i, (mode, runs)) in row.modes.iter().enumerate() {
            let secs: Vec<f64> = runs.iter().map(Run::secs).collect();
            let (median, min, max) = spread(&secs);
            let (ratio, ratio_spread) = ratio_cells(row, *mode, Mode::System);
            let (name, size) = if i == 0 {
                (row.workload.name, row.size.to_string())
            } else {
                ("", String::new())
            };
            let mut line = format!(
                "{name:<11} {size:>5} {:<11} {median:>9.3} {:>15} {ratio:>10} {ratio_spread:>11}",
                mode.name(),
                format!("{min:.3}-{max:.3}"),
            );
            if with_mimalloc {
                let (ratio, ratio_spread) = ratio_cells(row, *mode, Mode::Mimalloc);
                line += &format!(" {ratio:>11} {ratio_spread:>11}");
            }
            println!("{}", line.trim_end());
        }
    }
    println!();
    let cpu = rows
        .iter()
        .flat_map(|r| &r.modes)
        .all(|(_, runs)| runs.iter().all(|r| r.cpu.is_some()));
    if cpu {
        println!("times: CPU time of a run (user + system, page faults included), which a shared");
        println!("machine disturbs less than wall-clock time (listed further down).");
    } else {
        println!("times: wall-clock time of a run.");
    }
    println!("median s, min-max s: over the runs of the mode, each on a fresh heap.");
    println!("vs system: time relative to the system allocator in the same run (below 1:");
    println!("faster), the median over the runs and their spread; vs mimalloc likewise.");
    println!();
    for row in rows {
        if let Some(answer) = row.answer() {
            println!("{:<11} {answer}", row.workload.name);
        }
    }
}

/// Prints the median wall-clock times, and the free lists' figures in mode pyalloc (its last
/// run; every run starts from a fresh heap, so they all count the same).
fn print_details(rows: &[Row]) {
    println!();
    println!("wall-clock time per mode, median over the runs:");
    for row in rows {
        let walls: Vec<String> = row
            .modes
            .iter()
            .map(|(mode, runs)| {
                let w: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
                format!("{} {:.3} s", mode.name(), spread(&w).0)
            })
            .collect();
        println!("  {:<11} {}", row.workload.name, walls.join("  "));
    }
    let lists: Vec<(&str, FreeListSnapshot)> = rows
        .iter()
        .filter_map(|row| {
            let last = row.runs(Mode::Pyalloc)?.last()?;
            Some((row.workload.name, last.lists?))
        })
        .collect();
    if lists.is_empty() {
        return;
    }
    println!();
    println!("free lists in mode pyalloc, one run: hit rate (allocations served from the list;");
    println!("the twenty tuple lists together) and hits / misses / pushes / overflows");
    for (name, l) in lists {
        let parts: Vec<String> = l
            .named()
            .iter()
            .map(|(list, s)| {
                format!(
                    "{list} {} {}/{}/{}/{}",
                    hit_rate(s),
                    s.hits,
                    s.misses,
                    s.pushes,
                    s.overflows
                )
            })
            .collect();
        println!("  {:<11} {}", name, parts.join("  "));
    }
    println!("(nofreelist's lists have capacity 0.)");
}

/// The per-workload heap report: the heap of mode pyalloc after the workload's last run, every
/// object freed, first as it is (its free lists still hold their slots: layer 3 pins layer 1)
/// in sys._debugmallocstats()'s layout and as an occupancy map, then the map again after
/// `trim()`.
fn report_heap(name: &str, heap: &Heap) {
    println!();
    println!("heap of mode pyalloc after {name}'s last run (every object freed; what remains");
    println!("are the slots resting on free lists), in sys._debugmallocstats()'s layout:");
    println!();
    let stats = heap.stats();
    print!("{stats}");
    println!();
    println!("its arenas, one row each, one character per pool:");
    print!("{}", stats.occupancy());
    if let Release::Decay(delay) = heap.config().get_release() {
        // The release policy's decay: what the heap gives back by itself once the delay has
        // passed and the program reaches a slow path (here a request over 512 bytes).
        std::thread::sleep(delay + Duration::from_millis(50));
        let large = Layout::from_size_align(1024, 8).expect("a valid layout");
        if let Ok(block) = heap.allocate(large) {
            // SAFETY: allocated just above with `large`.
            unsafe { heap.deallocate(block.cast(), large) };
        }
        println!();
        println!(
            "after the release policy's delay ({} ms) and one allocation, with no call:",
            delay.as_millis()
        );
        print!("{}", heap.stats().occupancy());
    }
    let trimmed = heap.trim();
    println!();
    println!(
        "after trim(): {} free-list slots freed, {} arenas released, {} KiB purged:",
        trimmed.free_list_slots,
        trimmed.arenas_released,
        trimmed.bytes_purged >> 10
    );
    print!("{}", heap.stats().occupancy());
}

/// The help text, with each workload's unit and default size.
fn usage() -> String {
    let mut u = String::from(
        "\
minipy: a miniature CPython object model on pyalloc, timed on pyperformance-style
workloads in four memory modes. Every result is checked against CPython's, and every
block must come back to its heap.

usage: minipy [WORKLOAD...] [--mode MODE]... [--size N] [--runs N]

  WORKLOAD         nqueens, json_dumps, float or richards; several may be given
                   (default: all four)
  -m, --mode MODE  pyalloc (pymalloc with CPython's free lists), nofreelist (the same
                   heap with free lists off), system (glibc malloc) or mimalloc (built
                   with `--features mimalloc`); repeat it for several (default: all
                   that this build has)
  -s, --size N     work per run, in the workload's unit (default: the workload's own)
  -r, --runs N     runs per mode, each on a fresh heap; a time is the median of the
                   runs, printed with their min-max spread (default: ",
    );
    u += &format!("{DEFAULT_RUNS})\n  -h, --help       this text\n\nworkloads (default size):\n");
    for w in WORKLOADS {
        u += &format!("  {:<11} {:>3} {}\n", w.name, w.default_size, w.unit);
    }
    u += "\nProgress goes to stderr, one line per run; the report to stdout. Exit status: 0 when\n\
          every check passes, 1 when one fails, 2 for a bad command line.";
    u
}

/// What the command line asks for.
#[derive(Debug)]
struct Request {
    workloads: Vec<&'static Workload>,
    modes: Vec<Mode>,
    /// The modes a run of every mode leaves out, because this build does not have them.
    skipped: Vec<Mode>,
    size: Option<usize>,
    runs: usize,
}

/// What the command line says: run, or print the help.
#[derive(Debug)]
enum Command {
    Run(Request),
    Help,
}

/// The value of `option` as a positive integer.
fn positive(parser: &mut lexopt::Parser, option: &str) -> Result<usize, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    let text = value.to_string_lossy();
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{option} wants a positive integer, not {text:?}")),
    }
}

/// Parses the arguments after the program's name.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;

    let names = || {
        let n: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        n.join(", ")
    };
    let mut workloads: Vec<&'static Workload> = Vec::new();
    let mut modes = Vec::new();
    let mut size = None;
    let mut runs = DEFAULT_RUNS;
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('m') | Long("mode") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.to_string_lossy();
                let mode = Mode::parse(&text).ok_or_else(|| {
                    format!(
                        "unknown mode {text:?} (the modes: pyalloc, nofreelist, system, mimalloc)"
                    )
                })?;
                if let Some(reason) = mode.unavailable_reason() {
                    return Err(reason);
                }
                if !modes.contains(&mode) {
                    modes.push(mode);
                }
            }
            Short('s') | Long("size") => size = Some(positive(&mut parser, "--size")?),
            Short('r') | Long("runs") => runs = positive(&mut parser, "--runs")?,
            Value(value) => {
                let text = value.to_string_lossy();
                let w = workloads::find(&text).ok_or_else(|| {
                    format!("unknown workload {text:?} (the workloads: {})", names())
                })?;
                if !workloads.iter().any(|x| x.name == w.name) {
                    workloads.push(w);
                }
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    if workloads.is_empty() {
        workloads = WORKLOADS.iter().collect();
    }
    let mut skipped = Vec::new();
    if modes.is_empty() {
        (modes, skipped) = Mode::ALL.into_iter().partition(|m| m.available());
    }
    Ok(Command::Run(Request {
        workloads,
        modes,
        skipped,
        size,
        runs,
    }))
}

/// Runs every run of `w`, the modes taking turns run by run (so that a slow spell of a shared
/// machine touches every mode), each run on a fresh heap; prints a line of progress per run.
fn run_workload(w: &'static Workload, request: &Request, failures: &mut Vec<String>) -> Row {
    let size = request.size.unwrap_or(w.default_size);
    let mut row = Row {
        workload: w,
        size,
        modes: request.modes.iter().map(|&m| (m, Vec::new())).collect(),
        last_heap: None,
    };
    for i in 1..=request.runs {
        let mut progress = format!("minipy: {} run {i}/{}:", w.name, request.runs);
        for (mode, runs) in &mut row.modes {
            let heap = mode.fresh_heap();
            let run = run_once(w, *mode, heap.as_ref(), size, failures);
            progress += &format!(" {} {:.3} s", mode.name(), run.secs());
            if run.result.is_err() {
                progress += " (wrong answer)";
            }
            runs.push(run);
            if let Some(heap) = heap {
                if *mode == Mode::Pyalloc && i == request.runs {
                    row.last_heap = Some(heap);
                } else {
                    let what = format!("{} in mode {}, run {i}", w.name, mode.name());
                    retire_heap(&heap, &what, failures);
                }
            }
        }
        eprintln!("{progress}");
    }
    row
}

fn main() -> ExitCode {
    let request = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(r)) => r,
        Ok(Command::Help) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("minipy: {e}");
            eprintln!("run `minipy --help` for the options");
            return ExitCode::from(2);
        }
    };

    println!("minipy: a CPython-style object model on pyalloc, pyperformance-style workloads");
    println!("modes: pyalloc = pymalloc + free lists (float 100, list 80, dict 80, tuple 2000 per");
    println!(
        "length 1..=20); nofreelist = the same heap with free_lists(false); system = the same"
    );
    println!(
        "runtime on glibc malloc (allocator_api2::alloc::Global); mimalloc = the same runtime"
    );
    println!("on mimalloc (mi_malloc_small/mi_malloc/mi_free, feature `mimalloc`)");
    for mode in &request.skipped {
        if let Some(reason) = mode.unavailable_reason() {
            println!("skipped: {reason}");
        }
    }
    println!(
        "{} run{} per mode, each on a fresh heap:",
        request.runs,
        if request.runs == 1 { "" } else { "s" }
    );
    for w in &request.workloads {
        println!(
            "  {:<11} size {} = {}",
            w.name,
            request.size.unwrap_or(w.default_size),
            w.unit
        );
    }
    println!();

    let mut failures = Vec::new();
    let rows: Vec<Row> = request
        .workloads
        .iter()
        .map(|w| run_workload(w, &request, &mut failures))
        .collect();

    print_table(&rows);
    print_details(&rows);
    for row in &rows {
        failures.extend(row.failures());
        if let Some(heap) = &row.last_heap {
            report_heap(row.workload.name, heap);
            let what = format!("{} in mode pyalloc, last run", row.workload.name);
            retire_heap(heap, &what, &mut failures);
        }
    }

    println!();
    if failures.is_empty() {
        println!("all results match their known answers and agree across runs and modes; no leaks");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("minipy: FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}
