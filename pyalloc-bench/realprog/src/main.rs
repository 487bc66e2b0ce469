//! A real multi-threaded program, to compare global allocators on the work programs do rather
//! than on allocator loops: it builds a JSON document of a few hundred MB with rayon and
//! serde_json, parses it back, aggregates it and serializes the result.
//!
//! ```text
//! pyalloc-realprog [--records N] [--seed S] [--threads T]
//! ```
//!
//! The global allocator is chosen at build time by one cargo feature (`system`, `mimalloc`,
//! `jemalloc`, `pyalloc`); `run.sh` builds one binary per allocator and runs them side by
//! side. The stages, each timed:
//!
//! 1. generate `--records` records (strings, numbers, a nested address, a list of events, a
//!    map of attributes) in parallel chunks, each chunk from its own seeded generator, so the
//!    document is the same for every allocator and thread count;
//! 2. serialize each chunk to a JSON array in parallel and join them into one document, an
//!    array of chunk arrays (so that each chunk is valid JSON on its own and the offsets kept
//!    from the join let the chunks be parsed in parallel);
//! 3. drop the records (on the worker threads: most frees are of blocks another thread
//!    allocated);
//! 4. parse the chunks back in parallel into `serde_json::Value` trees (the many small maps,
//!    strings and vectors a dynamic program makes);
//! 5. aggregate per city (records, total score, events, total amount, tag counts) with a
//!    parallel fold and reduce, and build a summary per record;
//! 6. serialize the summaries and the aggregate again, in parallel chunks, and drop
//!    everything.
//!
//! Work is split into chunks of [`CHUNK`] records, far more chunks than threads, so rayon's
//! work stealing moves them between threads. The last lines are a digest of the output (the
//! same for every allocator: the program checks itself across runs) and one `result` line
//! for `run.sh`: wall time of the stages and peak RSS (`getrusage`'s `ru_maxrss`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---- The global allocator: one feature at a time. ----------------------------------------

#[cfg(any(
    all(feature = "system", feature = "mimalloc"),
    all(feature = "system", feature = "jemalloc"),
    all(feature = "system", feature = "pyalloc"),
    all(feature = "mimalloc", feature = "jemalloc"),
    all(feature = "mimalloc", feature = "pyalloc"),
    all(feature = "jemalloc", feature = "pyalloc"),
))]
compile_error!("choose one allocator feature: system, mimalloc, jemalloc or pyalloc");

#[cfg(feature = "system")]
#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "pyalloc")]
#[global_allocator]
static GLOBAL: pyalloc::Global = pyalloc::Global;

/// The allocator this binary was built with.
const ALLOCATOR: &str = if cfg!(feature = "system") {
    "system"
} else if cfg!(feature = "mimalloc") {
    "mimalloc"
} else if cfg!(feature = "jemalloc") {
    "jemalloc"
} else if cfg!(feature = "pyalloc") {
    "pyalloc"
} else {
    "default"
};

// ---- The document. -------------------------------------------------------------------------

/// Records per chunk: the unit of parallel work in every stage.
const CHUNK: usize = 2_000;

/// One record of the document.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    active: bool,
    score: f64,
    tags: Vec<String>,
    bio: String,
    address: Address,
    events: Vec<Event>,
    attributes: BTreeMap<String, String>,
}

/// A nested object.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    zip: String,
    geo: [f64; 2],
}

/// An element of a record's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Event {
    at: u64,
    kind: String,
    amount: f64,
    note: Option<String>,
}

const CITIES: [&str; 24] = [
    "Amsterdam",
    "Athens",
    "Berlin",
    "Bogota",
    "Cairo",
    "Chicago",
    "Delhi",
    "Dublin",
    "Helsinki",
    "Istanbul",
    "Jakarta",
    "Lagos",
    "Lima",
    "Lisbon",
    "London",
    "Madrid",
    "Montreal",
    "Nairobi",
    "Osaka",
    "Oslo",
    "Paris",
    "Seoul",
    "Sydney",
    "Warsaw",
];

const WORDS: [&str; 32] = [
    "alpha", "bravo", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lumen", "meadow", "nimbus", "onyx", "prism", "quartz", "raven", "sierra", "tundra",
    "umber", "violet", "willow", "xenon", "yarrow", "zephyr", "amber", "basalt", "cedar", "dune",
    "estuary", "falcon",
];

const KINDS: [&str; 6] = ["login", "purchase", "refund", "upload", "comment", "logout"];

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "un", "be", "di", "fa", "go",
];

fn word(rng: &mut fastrand::Rng) -> &'static str {
    WORDS[rng.usize(..WORDS.len())]
}

fn proper_name(rng: &mut fastrand::Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.usize(2..5) {
        s.push_str(SYLLABLES[rng.usize(..SYLLABLES.len())]);
    }
    s[..1].to_ascii_uppercase() + &s[1..]
}

/// Between `count.start` and `count.end - 1` words, space-separated.
fn words(rng: &mut fastrand::Rng, count: core::ops::Range<usize>) -> String {
    let mut s = String::new();
    for i in 0..rng.usize(count) {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(word(rng));
    }
    s
}

/// Record `id`, from `rng`.
fn record(id: u64, rng: &mut fastrand::Rng) -> Record {
    let first = proper_name(rng);
    let last = proper_name(rng);
    let email = format!(
        "{}.{}{}@{}.example",
        first.to_lowercase(),
        last.to_lowercase(),
        rng.u32(..1000),
        word(rng)
    );
    let events = (0..rng.usize(0..8))
        .map(|_| Event {
            at: 1_600_000_000 + rng.u64(..100_000_000),
            kind: KINDS[rng.usize(..KINDS.len())].to_owned(),
            amount: (rng.f64() * 50_000.0).round() / 100.0,
            note: rng.bool().then(|| words(rng, 1..6)),
        })
        .collect();
    let attributes = (0..rng.usize(0..5))
        .map(|_| (word(rng).to_owned(), format!("{:x}", rng.u64(..))))
        .collect();
    Record {
        id,
        name: format!("{first} {last}"),
        email,
        active: rng.bool(),
        score: (rng.f64() * 1000.0).round() / 10.0,
        tags: (0..rng.usize(1..6)).map(|_| word(rng).to_owned()).collect(),
        bio: words(rng, 5..30),
        address: Address {
            street: format!("{} {} Street", rng.u32(1..2000), proper_name(rng)),
            city: CITIES[rng.usize(..CITIES.len())].to_owned(),
            zip: format!("{:05}", rng.u32(..100_000)),
            geo: [rng.f64() * 180.0 - 90.0, rng.f64() * 360.0 - 180.0],
        },
        events,
        attributes,
    }
}

/// The records of chunk `c` (ids `c * CHUNK ..`), from the chunk's own generator.
fn chunk_records(seed: u64, c: usize, records: usize) -> Vec<Record> {
    let mut rng = fastrand::Rng::with_seed(seed ^ (c as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let start = c * CHUNK;
    let end = records.min(start + CHUNK);
    (start..end).map(|i| record(i as u64, &mut rng)).collect()
}

// ---- The transformation. -------------------------------------------------------------------

/// Per city: what the aggregate stage adds up. Scores and amounts are summed as whole tenths
/// and cents: floating-point sums would depend on how rayon splits the work, and the output
/// digest must not.
#[derive(Clone, Debug, Default, Serialize)]
struct CityStats {
    records: u64,
    active: u64,
    score_tenths: u64,
    events: u64,
    amount_cents: u64,
    tags: BTreeMap<String, u64>,
}

impl CityStats {
    fn merge(mut self, other: CityStats) -> CityStats {
        self.records += other.records;
        self.active += other.active;
        self.score_tenths += other.score_tenths;
        self.events += other.events;
        self.amount_cents += other.amount_cents;
        for (tag, n) in other.tags {
            *self.tags.entry(tag).or_default() += n;
        }
        self
    }
}

/// `x` in hundredths (`scale` 100) or tenths (10), rounded: the generator rounds scores and
/// amounts to those.
fn fixed(x: Option<f64>, scale: f64) -> u64 {
    (x.unwrap_or(0.0) * scale).round() as u64
}

/// One record of the output.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    id: u64,
    name: &'a str,
    city: &'a str,
    events: usize,
    amount: f64,
    kinds: Vec<&'a str>,
    tags: String,
}

/// The fields of a parsed record the transformation reads, or why the record is malformed.
fn summarize(v: &Value) -> Result<Summary<'_>, String> {
    let field = |name: &str| v.get(name).ok_or_else(|| format!("no {name} in {v}"));
    let events = field("events")?.as_array().ok_or("events")?;
    let mut kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e.get("kind").and_then(Value::as_str))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let tags = field("tags")?
        .as_array()
        .ok_or("tags")?
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("+");
    Ok(Summary {
        id: field("id")?.as_u64().ok_or("id")?,
        name: field("name")?.as_str().ok_or("name")?,
        city: field("address")?
            .get("city")
            .and_then(Value::as_str)
            .ok_or("city")?,
        events: events.len(),
        amount: events
            .iter()
            .filter_map(|e| e.get("amount").and_then(Value::as_f64))
            .sum(),
        kinds,
        tags,
    })
}

/// Adds one parsed record to its city's figures.
fn add(mut stats: HashMap<String, CityStats>, v: &Value) -> HashMap<String, CityStats> {
    let Some(city) = v.pointer("/address/city").and_then(Value::as_str) else {
        return stats;
    };
    let s = stats.entry(city.to_owned()).or_default();
    s.records += 1;
    s.active += u64::from(v["active"].as_bool() == Some(true));
    s.score_tenths += fixed(v["score"].as_f64(), 10.0);
    if let Some(events) = v["events"].as_array() {
        s.events += events.len() as u64;
        s.amount_cents += events
            .iter()
            .map(|e| fixed(e["amount"].as_f64(), 100.0))
            .sum::<u64>();
    }
    for tag in v["tags"].as_array().into_iter().flatten() {
        if let Some(tag) = tag.as_str() {
            *s.tags.entry(tag.to_owned()).or_default() += 1;
        }
    }
    stats
}

fn merge_maps(
    mut a: HashMap<String, CityStats>,
    b: HashMap<String, CityStats>,
) -> HashMap<String, CityStats> {
    for (city, s) in b {
        let mine = a.remove(&city).unwrap_or_default();
        a.insert(city, mine.merge(s));
    }
    a
}

/// FNV-1a over `bytes`, continuing from `h`: the output digest.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

// ---- The program. --------------------------------------------------------------------------

struct Args {
    records: usize,
    seed: u64,
    threads: usize,
}

const USAGE: &str = "usage: pyalloc-realprog [--records N] [--seed S] [--threads T]";

fn parse_args() -> Result<Args, String> {
    let mut out = Args {
        records: 250_000,
        seed: 0x5eed,
        threads: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|&n| n >= 0.0 && n.fract() == 0.0 && n < 1e15)
                .map(|n| n as u64)
                .ok_or(format!("{what} takes a whole number (6e5 is fine)"))
        };
        match arg.as_str() {
            "--records" => out.records = number("--records")? as usize,
            "--seed" => out.seed = number("--seed")?,
            "--threads" => out.threads = number("--threads")? as usize,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    Ok(out)
}

/// Peak resident set size of the process so far, in KiB (`ru_maxrss`).
fn max_rss_kib() -> i64 {
    let mut usage = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return -1;
    }
    // SAFETY: `getrusage` succeeded, so the struct is initialised (and it was zeroed).
    unsafe { usage.assume_init() }.ru_maxrss
}

/// Times the stages and prints their times on stderr.
struct Clock {
    start: Instant,
    last: Instant,
}

impl Clock {
    fn new() -> Self {
        let now = Instant::now();
        Clock {
            start: now,
            last: now,
        }
    }

    fn lap(&mut self, stage: &str) {
        let now = Instant::now();
        eprintln!(
            "  {stage:<28} {:>7.3} s",
            now.duration_since(self.last).as_secs_f64()
        );
        self.last = now;
    }
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .expect("the global pool is built once, first");
    }
    let chunks = args.records.div_ceil(CHUNK);
    eprintln!(
        "{ALLOCATOR}: {} records in {chunks} chunks, {} threads",
        args.records,
        rayon::current_num_threads()
    );
    let mut clock = Clock::new();

    // 1. Generate.
    let records: Vec<Vec<Record>> = (0..chunks)
        .into_par_iter()
        .map(|c| chunk_records(args.seed, c, args.records))
        .collect();
    clock.lap("generate");

    // 2. Serialize: each chunk to a JSON array, joined into `[chunk,chunk,...]`.
    let parts: Vec<String> = records
        .par_iter()
        .map(|chunk| serde_json::to_string(chunk).expect("records serialize"))
        .collect();
    let mut doc = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
    let mut spans = Vec::with_capacity(parts.len());
    doc.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            doc.push(',');
        }
        spans.push(doc.len()..doc.len() + part.len());
        doc.push_str(part);
    }
    doc.push(']');
    parts.into_par_iter().for_each(drop);
    clock.lap("serialize");

    // 3. Drop the records, chunk by chunk on the workers.
    records.into_par_iter().for_each(drop);
    clock.lap("drop records");

    // 4. Parse the chunks back.
    let parsed: Vec<Vec<Value>> = spans
        .par_iter()
        .map(|span| serde_json::from_str(&doc[span.clone()]).expect("the document parses"))
        .collect();
    let parsed_records: usize = parsed.iter().map(Vec::len).sum();
    assert_eq!(parsed_records, args.records, "every record comes back");
    clock.lap("parse");

    // 5. Transform: aggregate per city, and a summary per record.
    let stats = parsed
        .par_iter()
        .flat_map(|chunk| chunk.par_iter())
        .fold(HashMap::new, add)
        .reduce(HashMap::new, merge_maps);
    let summaries: Vec<Vec<Summary>> = parsed
        .par_iter()
        .map(|chunk| {
            chunk
                .iter()
                .map(|v| summarize(v).unwrap_or_else(|e| panic!("malformed record: {e}")))
                .collect()
        })
        .collect();
    clock.lap("aggregate");

    // 6. Serialize again: the summaries in chunks, the aggregate sorted by city.
    let out: Vec<String> = summaries
        .par_iter()
        .map(|chunk| serde_json::to_string(chunk).expect("summaries serialize"))
        .collect();
    let stats: BTreeMap<String, CityStats> = stats.into_iter().collect();
    let aggregate = serde_json::to_string_pretty(&stats).expect("the aggregate serializes");
    let out_bytes: usize = out.iter().map(String::len).sum();
    let digest = out
        .iter()
        .fold(fnv(0xcbf2_9ce4_8422_2325, aggregate.as_bytes()), |h, s| {
            fnv(h, s.as_bytes())
        });
    clock.lap("serialize again");

    drop(summaries);
    rayon::join(
        || out.into_par_iter().for_each(drop),
        || parsed.into_par_iter().for_each(drop),
    );
    drop(doc);
    clock.lap("drop all");

    let wall = clock.start.elapsed().as_secs_f64();
    let rss = max_rss_kib();
    println!(
        "document {:.1} MB, output {:.1} MB, {} cities, digest {digest:016x}",
        spans.last().map_or(0, |s| s.end) as f64 / 1e6,
        out_bytes as f64 / 1e6,
        stats.len()
    );
    println!(
        "result allocator={ALLOCATOR} wall_s={wall:.3} maxrss_mib={:.0} digest={digest:016x}",
        rss as f64 / 1024.0
    );
    std::process::ExitCode::SUCCESS
}
