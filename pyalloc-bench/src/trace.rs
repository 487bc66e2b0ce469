//! Allocation traces (`../shared/traces/*.trace.gz`): parsing into a compact event list, and
//! writing (for tests).
//!
//! Format: gzip'd text, one event a line: `a ID SIZE` (allocate), `z ID SIZE` (allocate
//! zeroed), `r OLD NEW SIZE` (reallocate OLD to SIZE bytes, result NEW), `f ID` (free). IDs
//! are dense from 0 and each used once.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// What an event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// `a ID SIZE`
    Alloc,
    /// `z ID SIZE`
    AllocZeroed,
    /// `r OLD NEW SIZE`
    Realloc,
    /// `f ID`
    Free,
}

/// One event, 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What it does.
    pub op: Op,
    /// The requested size (allocations and reallocations; 0 for frees).
    pub size: u32,
    /// The block allocated or freed; for a reallocation, the old block.
    pub id: u32,
    /// For a reallocation, the new block's id; else equal to `id`.
    pub new_id: u32,
}

impl Event {
    /// `a ID SIZE`.
    pub fn alloc(id: u32, size: u32) -> Self {
        Event {
            op: Op::Alloc,
            size,
            id,
            new_id: id,
        }
    }
    /// `z ID SIZE`.
    pub fn alloc_zeroed(id: u32, size: u32) -> Self {
        Event {
            op: Op::AllocZeroed,
            size,
            id,
            new_id: id,
        }
    }
    /// `r OLD NEW SIZE`.
    pub fn realloc(old: u32, new: u32, size: u32) -> Self {
        Event {
            op: Op::Realloc,
            size,
            id: old,
            new_id: new,
        }
    }
    /// `f ID`.
    pub fn free(id: u32) -> Self {
        Event {
            op: Op::Free,
            size: 0,
            id,
            new_id: id,
        }
    }
}

/// A whole trace in memory.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The trace's name (its file name without `.trace.gz`).
    pub name: String,
    /// The events, in order.
    pub events: Vec<Event>,
    /// One more than the largest id.
    pub ids: usize,
}

/// A trace that cannot be read or does not follow the format.
#[derive(Debug)]
pub struct TraceError(pub String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

impl Trace {
    /// Checks and wraps `events`: every id is allocated once and freed (or reallocated away)
    /// at most once, after its allocation.
    pub fn new(name: impl Into<String>, events: Vec<Event>) -> Result<Self, TraceError> {
        let name = name.into();
        let ids = events
            .iter()
            .map(|e| e.id.max(e.new_id) as usize + 1)
            .max()
            .unwrap_or(0);
        // 0 = never seen, 1 = live, 2 = gone.
        let mut state = vec![0u8; ids];
        for (i, e) in events.iter().enumerate() {
            let bad = |what: &str| TraceError(format!("{name}: event {}: {what}: {e:?}", i + 1));
            let (born, dies) = match e.op {
                Op::Alloc | Op::AllocZeroed => (Some(e.id), None),
                Op::Realloc => (Some(e.new_id), Some(e.id)),
                Op::Free => (None, Some(e.id)),
            };
            if let Some(id) = dies {
                if state[id as usize] != 1 {
                    return Err(bad("block is not live"));
                }
                state[id as usize] = 2;
            }
            if let Some(id) = born {
                if state[id as usize] != 0 {
                    return Err(bad("id reused"));
                }
                state[id as usize] = 1;
            }
        }
        Ok(Trace { name, events, ids })
    }

    /// Reads a gzip'd trace wholly into memory.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let file = std::fs::File::open(path)
            .map_err(|e| TraceError(format!("{}: {e}", path.display())))?;
        let mut text = Vec::new();
        GzDecoder::new(std::io::BufReader::new(file))
            .read_to_end(&mut text)
            .map_err(|e| TraceError(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".gz").trim_end_matches(".trace"))
            .unwrap_or("trace");
        Self::parse(name, &text)
    }

    /// Parses the text of a trace.
    pub fn parse(name: &str, text: &[u8]) -> Result<Self, TraceError> {
        let mut events = Vec::with_capacity(text.len() / 10);
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let bad = || {
                TraceError(format!(
                    "{name}: line {}: cannot parse {:?}",
                    n + 1,
                    String::from_utf8_lossy(line)
                ))
            };
            let mut fields = line.split(|&b| b == b' ');
            let op = fields.next().ok_or_else(bad)?;
            let mut num = || -> Result<u32, TraceError> {
                let f = fields.next().ok_or_else(bad)?;
                std::str::from_utf8(f)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)
            };
            let event = match op {
                b"a" => Event::alloc(num()?, num()?),
                b"z" => Event::alloc_zeroed(num()?, num()?),
                b"r" => Event::realloc(num()?, num()?, num()?),
                b"f" => Event::free(num()?),
                _ => return Err(bad()),
            };
            events.push(event);
        }
        Self::new(name, events)
    }

    /// Writes the trace as gzip'd text to `path`.
    pub fn write_gz(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = GzEncoder::new(std::io::BufWriter::new(file), Compression::fast());
        for e in &self.events {
            match e.op {
                Op::Alloc => writeln!(out, "a {} {}", e.id, e.size)?,
                Op::AllocZeroed => writeln!(out, "z {} {}", e.id, e.size)?,
                Op::Realloc => writeln!(out, "r {} {} {}", e.id, e.new_id, e.size)?,
                Op::Free => writeln!(out, "f {}", e.id)?,
            }
        }
        out.finish()?.flush()
    }
}

/// The shared traces: every `*.trace.gz` of `shared/traces` beside the workspace, sorted.
pub fn default_traces() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".trace.gz")))
        .collect();
    paths.sort();
    paths
}
