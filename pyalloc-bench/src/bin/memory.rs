//! W6: resident memory of each peer, each scenario in a fresh child process.
//!
//! ```text
//! cargo run --release -p pyalloc-bench --bin memory -- [--csv] [--peers a,b,..] [--svg PATH]
//! ```
//!
//! A child (this binary re-run with the hidden `--child PEER SCENARIO`) builds its
//! bookkeeping, takes the baseline RSS (`/proc/self/statm`), allocates 1e6 blocks of 64 B
//! (writing one byte of each) and records the peak RSS above the baseline. Then, by
//! scenario, it frees 90% of the blocks at random, all of them at random, all in allocation
//! order, or all but one in a thousand (at random), and records the RSS above baseline
//! before and after the allocator's release call (`trim()`, `malloc_trim(0)`,
//! `mi_collect(true)`, jemalloc's purge; pymalloc and bumpalo have none).
//!
//! `after-decay` asks what a program gets back without asking: it frees all the blocks at
//! random, then goes on allocating lightly for one second of wall time (a sliding window of
//! 4096 live blocks of random sizes 16–512 B, 64 of them replaced every millisecond, sleeping
//! in between), and records the RSS then, with no release call; the "with" figure is after a
//! release call made afterwards. Printed below the table, and the CSV's last columns: the RSS
//! right after the frees, the window's own payload, the rounds of replacement done in the
//! second, the `LazyFree` bytes then (`/proc/self/smaps_rollup`: pages given back with
//! `MADV_FREE`, still counted in the RSS until the kernel needs them), and the second's
//! size-class floor (the pages that any allocator carving 16-byte size classes from 4 KiB
//! pages keeps for each class's highest count of live blocks: `Window::class_floor`).
//! pyalloc's decay (`PYALLOC_RELEASE`, or a `pyalloc:POLICY` peer) runs on its slow paths
//! only; the window turns pools over, so they happen.
//!
//! The table is also drawn as a bar chart, written to `--svg PATH` (by default
//! `target/charts/memory.svg`): peak RSS over the payload per allocator, and the RSS left
//! after the frees and after the release call per scenario and allocator.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pyalloc_bench::chart::{self, Chart, Panel};
use pyalloc_bench::rng::{permutation, seeded};
use pyalloc_bench::rss::{lazy_free_bytes, rss_bytes};
use pyalloc_bench::workloads::layout;
use pyalloc_bench::{available_peers, parse_peers, with_peer, Peer, PeerKind, PeerVisitor};

const BLOCKS: usize = 1_000_000;
const SIZE: usize = 64;

/// `after-decay`: how long the program goes on allocating lightly after the frees.
const LIGHT_TIME: Duration = Duration::from_secs(1);
/// `after-decay`: live blocks in the light allocation's sliding window.
const WINDOW: usize = 4096;
/// `after-decay`: blocks of the window replaced per round (a round a millisecond).
const WINDOW_TURN: usize = 64;
/// `after-decay`: the window's block sizes, uniform.
const WINDOW_SIZES: core::ops::RangeInclusive<usize> = 16..=512;
/// `after-decay`'s floor: the size classes of a pool allocator (CPython's: 16-byte steps)...
const CLASS_STEP: usize = 16;
/// ...and the pages they are carved from.
const PAGE: usize = 4096;
/// `after-decay`'s size classes, indexed by size in [`CLASS_STEP`]s rounded up (0 unused).
const CLASSES: usize = WINDOW_SIZES.end().div_ceil(CLASS_STEP) + 1;

/// The frees after the peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Free90,
    AllRandom,
    AllInOrder,
    Survivors,
    AfterDecay,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Free90,
        Scenario::AllRandom,
        Scenario::AllInOrder,
        Scenario::Survivors,
        Scenario::AfterDecay,
    ];

    fn key(self) -> &'static str {
        match self {
            Scenario::Free90 => "free90",
            Scenario::AllRandom => "all-random",
            Scenario::AllInOrder => "all-in-order",
            Scenario::Survivors => "survivors",
            Scenario::AfterDecay => "after-decay",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::Free90 => "90% freed at random",
            Scenario::AllRandom => "all freed at random",
            Scenario::AllInOrder => "all freed in allocation order",
            Scenario::Survivors => "1 in 1000 survives",
            Scenario::AfterDecay => "all freed at random, then 1 s of light allocation",
        }
    }

    /// The indexes to free, in order.
    fn frees(self) -> Vec<usize> {
        let mut rng = seeded(0x5EED);
        match self {
            Scenario::Free90 => {
                let mut order = permutation(&mut rng, BLOCKS);
                order.truncate(BLOCKS * 9 / 10);
                order
            }
            Scenario::AllRandom | Scenario::AfterDecay => permutation(&mut rng, BLOCKS),
            Scenario::AllInOrder => (0..BLOCKS).collect(),
            Scenario::Survivors => {
                let mut order: Vec<usize> = (0..BLOCKS).filter(|i| i % 1000 != 999).collect();
                rng.shuffle(&mut order);
                order
            }
        }
    }
}

/// What a child measured, in bytes above its baseline.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    peak: usize,
    /// After the frees (`after-decay`: and the second of light allocation).
    after_free: usize,
    after_release: usize,
    /// `after-decay` only.
    light: Option<Light>,
}

/// What `after-decay` measured besides [`Figures`]' columns.
#[derive(Clone, Copy, Debug, Default)]
struct Light {
    /// RSS above the baseline right after the frees.
    before: usize,
    /// Rounds of the window done in the second.
    rounds: usize,
    /// `LazyFree` after the second (pages given back with `MADV_FREE`, still in the RSS).
    lazy_free: usize,
    /// The size-class floor of the second: see [`Window::class_floor`].
    class_floor: usize,
}

/// `after-decay`'s light allocation: a window of [`WINDOW`] live blocks of random sizes, of
/// which [`WINDOW_TURN`] are replaced each round, a round each millisecond (a sleep in
/// between), until [`LIGHT_TIME`] has passed. Its bookkeeping is made before the baseline.
struct Window {
    blocks: Vec<(*mut u8, core::alloc::Layout)>,
    rng: fastrand::Rng,
    /// Live blocks of each size class (16-byte steps), and the most there have been.
    live: Vec<usize>,
    most: Vec<usize>,
}

impl Window {
    fn new() -> Self {
        Window {
            blocks: vec![(core::ptr::dangling_mut::<u8>(), layout(16)); WINDOW],
            rng: seeded(0xDECA),
            live: vec![0; CLASSES],
            most: vec![0; CLASSES],
        }
    }

    /// The bytes any allocator that segregates size classes (16-byte steps) into 4 KiB pages
    /// keeps resident at the end of the second without moving live blocks: it has carved
    /// pages for each class's highest count of live blocks, and the frees since then hit
    /// blocks at random, so they leave holes in those pages, not free pages (a page holds 8
    /// to 256 of the window's blocks). pymalloc, mimalloc, jemalloc and pyalloc are such
    /// allocators; glibc, which coalesces free chunks of any size, is not. Pool headers,
    /// pages carved past the highest count and the allocator's own structures come on top.
    fn class_floor(&self) -> usize {
        self.most
            .iter()
            .enumerate()
            .map(|(class, &most)| (most * class * CLASS_STEP).div_ceil(PAGE) * PAGE)
            .sum()
    }

    fn fill<P: Peer>(&mut self, peer: &P, at: usize) {
        let l = layout(self.rng.usize(WINDOW_SIZES));
        // SAFETY: `l` is not zero-sized; the block is freed once, by `replace` or `clear`.
        let p = unsafe { peer.alloc(l) };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` is a fresh block of `l.size()` bytes.
        unsafe {
            p.write_volatile(at as u8);
            p.add(l.size() - 1).write_volatile(at as u8);
        }
        self.blocks[at] = (p, l);
        self.born(l.size());
    }

    /// Counts a block of `size` bytes made live, for [`Window::class_floor`].
    fn born(&mut self, size: usize) {
        let class = size.div_ceil(CLASS_STEP);
        self.live[class] += 1;
        self.most[class] = self.most[class].max(self.live[class]);
    }

    /// Counts a block of `size` bytes freed.
    fn died(&mut self, size: usize) {
        self.live[size.div_ceil(CLASS_STEP)] -= 1;
    }

    /// Runs the second; returns the rounds done.
    fn run<P: Peer>(&mut self, peer: &P) -> usize {
        let start = Instant::now();
        for at in 0..WINDOW {
            self.fill(peer, at);
        }
        let mut rounds = 0;
        while start.elapsed() < LIGHT_TIME {
            for _ in 0..WINDOW_TURN {
                let at = self.rng.usize(..WINDOW);
                let (p, l) = self.blocks[at];
                // SAFETY: every slot holds a live block of this peer (filled above).
                unsafe { peer.free(p, l) };
                self.died(l.size());
                self.fill(peer, at);
            }
            rounds += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        rounds
    }

    fn clear<P: Peer>(&mut self, peer: &P) {
        for &(p, l) in &self.blocks {
            // SAFETY: each slot holds a live block of this peer, freed once here.
            unsafe { peer.free(p, l) };
        }
    }
}

/// The child's work on one peer.
struct Child(Scenario);

impl PeerVisitor for Child {
    type Output = Figures;
    fn visit<P: Peer>(self, peer: &P) -> Figures {
        // The bookkeeping is written in full before the baseline (non-zero fills: a zeroed
        // `vec!` would come from calloc's untouched pages and be charged to the peer).
        let frees = self.0.frees();
        let mut live = vec![1u8; BLOCKS];
        let mut ptrs = vec![core::ptr::dangling_mut::<u8>(); BLOCKS];
        let mut window = (self.0 == Scenario::AfterDecay).then(Window::new);
        let l = layout(SIZE);
        let baseline = rss_bytes();
        for (i, p) in ptrs.iter_mut().enumerate() {
            // SAFETY: `l` is 64 bytes; the block is fresh and freed at most once below.
            unsafe {
                *p = peer.alloc(l);
                assert!(!p.is_null(), "out of memory");
                p.write_volatile(i as u8);
            }
        }
        let peak = rss_bytes().saturating_sub(baseline);
        for &i in &frees {
            // SAFETY: `frees` names each index at most once.
            unsafe { peer.free(ptrs[i], l) };
            live[i] = 0;
        }
        let mut after_free = rss_bytes().saturating_sub(baseline);
        let mut light = None;
        if let Some(window) = &mut window {
            let rounds = window.run(peer);
            let before = after_free;
            after_free = rss_bytes().saturating_sub(baseline);
            light = Some(Light {
                before,
                rounds,
                lazy_free: lazy_free_bytes(),
                class_floor: window.class_floor(),
            });
        }
        peer.release();
        let after_release = rss_bytes().saturating_sub(baseline);
        if let Some(window) = &mut window {
            window.clear(peer);
        }
        for (i, &p) in ptrs.iter().enumerate() {
            if live[i] != 0 {
                // SAFETY: a survivor is live and freed once, here.
                unsafe { peer.free(p, l) };
            }
        }
        Figures {
            peak,
            after_free,
            after_release,
            light,
        }
    }
}

fn child(peer: &str, scenario: &str) -> ExitCode {
    let (Some(kind), Some(scenario)) = (
        PeerKind::from_key(peer),
        Scenario::ALL.into_iter().find(|s| s.key() == scenario),
    ) else {
        eprintln!("--child PEER SCENARIO: unknown {peer} or {scenario}");
        return ExitCode::from(2);
    };
    match with_peer(kind, Child(scenario)) {
        Some(f) => {
            print!("{} {} {}", f.peak, f.after_free, f.after_release);
            if let Some(l) = f.light {
                print!(
                    " {} {} {} {}",
                    l.before, l.rounds, l.lazy_free, l.class_floor
                );
            }
            println!();
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "{peer}: {}",
                kind.unavailable_reason().unwrap_or("unavailable")
            );
            ExitCode::from(3)
        }
    }
}

fn run_child(kind: PeerKind, scenario: Scenario) -> Result<Figures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", kind.key(), scenario.key()])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<usize> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match (out.status.success(), nums.as_slice()) {
        (true, &[peak, after_free, after_release]) => Ok(Figures {
            peak,
            after_free,
            after_release,
            light: None,
        }),
        (true, &[peak, after_free, after_release, before, rounds, lazy_free, class_floor]) => {
            Ok(Figures {
                peak,
                after_free,
                after_release,
                light: Some(Light {
                    before,
                    rounds,
                    lazy_free,
                    class_floor,
                }),
            })
        }
        _ => Err(format!(
            "child {} {} failed ({}): {}{}",
            kind.key(),
            scenario.key(),
            out.status,
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, peer, scenario] = args.as_slice() {
        if flag == "--child" {
            return child(peer, scenario);
        }
    }
    let mut csv = false;
    let mut peers = None;
    let mut svg = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--csv" => csv = true,
            "--peers" => peers = it.next().cloned(),
            "--svg" if !it.as_slice().is_empty() => svg = it.next().map(PathBuf::from),
            _ => {
                eprintln!("usage: memory [--csv] [--peers a,b,..] [--svg PATH]");
                return ExitCode::from(2);
            }
        }
    }
    let svg = svg.unwrap_or_else(|| chart::default_path("memory.svg"));
    let peers = match parse_peers(peers.as_deref()) {
        Ok(p) => available_peers(&p),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let payload = (BLOCKS * SIZE) as f64;
    let mut rows = Vec::new();
    for &kind in &peers {
        let mut figures = Vec::new();
        for scenario in Scenario::ALL {
            match run_child(kind, scenario) {
                Ok(f) => figures.push(f),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        rows.push((kind, figures));
    }
    let pct = |part: usize, whole: usize| 100.0 * part as f64 / whole.max(1) as f64;
    if csv {
        println!(
            "allocator,peak_rss_per_payload,scenario,rss_after_free_pct_of_peak,\
             rss_after_release_pct_of_peak,rss_before_light_pct_of_peak,light_rounds,\
             lazy_free_after_light_pct_of_peak,size_class_floor_pct_of_peak"
        );
        for (kind, figures) in &rows {
            for (scenario, f) in Scenario::ALL.iter().zip(figures) {
                let light = f.light.map_or_else(
                    || ",,,".to_owned(),
                    |l| {
                        format!(
                            "{:.1},{},{:.1},{:.2}",
                            pct(l.before, f.peak),
                            l.rounds,
                            pct(l.lazy_free, f.peak),
                            pct(l.class_floor, f.peak)
                        )
                    },
                );
                println!(
                    "{},{:.3},{},{:.1},{:.1},{light}",
                    kind.key(),
                    f.peak as f64 / payload,
                    scenario.key(),
                    pct(f.after_free, f.peak),
                    pct(f.after_release, f.peak)
                );
            }
        }
    } else {
        print_table(&rows);
    }
    match chart_of(&rows).write(&svg) {
        // Stdout is the CSV with `--csv`: the path goes to stderr then.
        Ok(()) if csv => eprintln!("chart: {}", svg.display()),
        Ok(()) => println!("\nchart: {}", svg.display()),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The table: one row per peer, one column per scenario.
fn print_table(rows: &[(PeerKind, Vec<Figures>)]) {
    let payload = (BLOCKS * SIZE) as f64;
    let pct = |part: usize, whole: usize| 100.0 * part as f64 / whole.max(1) as f64;
    println!(
        "{BLOCKS} blocks of {SIZE} B ({:.0} MB payload); RSS above the baseline, as % of the peak: \
         without / with the release call",
        payload / 1e6
    );
    print!("{:<28} {:>10}", "allocator", "peak/pay");
    for s in Scenario::ALL {
        print!(" {:>22}", s.key());
    }
    println!();
    for (kind, figures) in rows {
        print!(
            "{:<28} {:>10.3}",
            kind.label(),
            figures[0].peak as f64 / payload
        );
        for f in figures {
            let cell = format!(
                "{:.1}% / {:.1}%",
                pct(f.after_free, f.peak),
                pct(f.after_release, f.peak)
            );
            print!(" {cell:>22}");
        }
        println!();
    }
    println!();
    for s in Scenario::ALL {
        println!("{:>14}: {}", s.key(), s.title());
    }
    // The window's mean payload: sizes uniform over WINDOW_SIZES.
    let window = WINDOW as f64 * (*WINDOW_SIZES.start() + *WINDOW_SIZES.end()) as f64 / 2.0;
    println!(
        "\nafter-decay: RSS right after the frees -> after {:.0} s of light allocation (no \
         release call) -> after a release call; the window holds about {:.2} MB ({:.1}% of \
         the payload)",
        LIGHT_TIME.as_secs_f64(),
        window / 1e6,
        100.0 * window / payload
    );
    for (kind, figures) in rows {
        for f in figures {
            let Some(l) = f.light else { continue };
            println!(
                "  {:<28} {:>6.1}% -> {:>6.1}% -> {:>6.1}%   ({} rounds of {WINDOW_TURN}; \
                 LazyFree {:.1}%; size-class floor {:.2}% of the peak)",
                kind.label(),
                pct(l.before, f.peak),
                pct(f.after_free, f.peak),
                pct(f.after_release, f.peak),
                l.rounds,
                pct(l.lazy_free, f.peak),
                pct(l.class_floor, f.peak)
            );
        }
    }
}

/// The chart of the table: one row of [`Figures`] per peer, one per scenario.
fn chart_of(rows: &[(PeerKind, Vec<Figures>)]) -> Chart {
    let payload = (BLOCKS * SIZE) as f64;
    let pct = |part: usize, whole: usize| 100.0 * part as f64 / whole.max(1) as f64;
    let scenarios: Vec<String> = Scenario::ALL.iter().map(|s| s.title().into()).collect();
    let retained = |after: fn(&Figures) -> usize| {
        rows.iter()
            .map(|(_, figures)| figures.iter().map(|f| pct(after(f), f.peak)).collect())
            .collect()
    };
    // The axis says "%".
    let percent = |v: f64| format!("{v:.0}");
    let blocks = format!("{:e}", BLOCKS as f64);
    Chart {
        title: format!("Resident memory of {blocks} blocks of {SIZE} B"),
        notes: vec![
            format!(
                "{blocks} blocks of {SIZE} B ({:.0} MB payload) allocated, then freed by \
                 scenario; RSS above the baseline of a fresh child process per allocator \
                 and scenario",
                payload / 1e6
            ),
            "the release call: trim(), malloc_trim(0), mi_collect(true), jemalloc's purge \
             (pymalloc and bumpalo have none); lower is better"
                .into(),
        ],
        series: rows.iter().map(|(k, _)| k.label().to_owned()).collect(),
        panels: vec![
            Panel {
                title: "Peak RSS over the payload".into(),
                y_desc: "peak RSS ÷ payload".into(),
                categories: vec![format!("{blocks} blocks of {SIZE} B, all live")],
                values: rows
                    .iter()
                    .map(|(_, figures)| vec![figures[0].peak as f64 / payload])
                    .collect(),
                reference: Some((1.0, "= payload".into())),
                label: |v| format!("{v:.2}"),
                weight: 3,
            },
            Panel {
                title: "RSS retained after the frees".into(),
                y_desc: "% of the peak RSS".into(),
                categories: scenarios.clone(),
                values: retained(|f| f.after_free),
                reference: None,
                label: percent,
                weight: 4,
            },
            Panel {
                title: "RSS retained after the frees and the release call".into(),
                y_desc: "% of the peak RSS".into(),
                categories: scenarios,
                values: retained(|f| f.after_release),
                reference: None,
                label: percent,
                weight: 4,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_floor_counts_the_pages_of_each_class_highest_live_count() {
        let mut window = Window::new();
        assert_eq!(window.class_floor(), 0);
        // Nine blocks of 500 B (class 512: 4,608 B, two pages), of which five die again: the
        // highest count is what the pages were carved for.
        for _ in 0..9 {
            window.born(500);
        }
        for _ in 0..5 {
            window.died(500);
        }
        assert_eq!(window.class_floor(), 2 * PAGE);
        // A block of 16 B is a page of its own class, and a second one shares it.
        window.born(16);
        window.born(9);
        assert_eq!(window.class_floor(), 3 * PAGE);
        // Reaching the old highest count again carves nothing more; passing it does not
        // either while the class's pages have room (4 + 5 = 9, then 10 blocks: 5,120 B).
        for _ in 0..5 {
            window.born(512);
        }
        assert_eq!(window.class_floor(), 3 * PAGE);
        window.born(497);
        assert_eq!(window.class_floor(), 3 * PAGE);
        for _ in 0..7 {
            window.born(512);
        }
        // 17 blocks of 512 B: 8,704 B, three pages.
        assert_eq!(window.class_floor(), 4 * PAGE);
    }
}
