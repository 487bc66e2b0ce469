//! W5: replaying a [`Trace`] on a [`Peer`], touching and verifying every block.
//!
//! Each block gets two bytes derived from its id on allocation: [`first_tag`] at offset 0 and
//! [`last_tag`] at its last byte. They are checked when the block is freed; a reallocation
//! must bring the first byte along (and, when growing, the old last byte), and a zeroed
//! allocation must read zero at both ends before the tags go in. Any mismatch stops the
//! replay with a [`ReplayError`] naming the event. The checks are part of the timed loop
//! ("harness included"); blocks still live at the end are verified and freed after timing.

use core::alloc::Layout;
use std::fmt;
use std::time::{Duration, Instant};

use crate::peers::Peer;
use crate::trace::{Op, Trace};

/// The tag written at offset 0 of block `id`.
#[inline(always)]
pub fn first_tag(id: u32) -> u8 {
    (id.wrapping_mul(0x9E37_79B1) >> 24) as u8 ^ 0xA5
}

/// The tag written at the last byte of block `id`.
#[inline(always)]
pub fn last_tag(id: u32) -> u8 {
    (id.wrapping_mul(0x85EB_CA6B) >> 24) as u8 ^ 0x5A
}

/// The layout of a traced request: CPython guarantees 16-byte alignment to every request.
#[inline(always)]
pub fn layout_of(size: u32) -> Layout {
    match Layout::from_size_align((size as usize).max(1), 16) {
        Ok(layout) => layout,
        Err(_) => unreachable!("a u32 size rounded to 16 fits isize"),
    }
}

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// The trace.
    pub trace: String,
    /// The peer's label.
    pub peer: String,
    /// The 1-based event number (the trace's line), or 0 for the final frees.
    pub event: usize,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.event == 0 {
            write!(
                f,
                "{} on {}: after the last event: {}",
                self.trace, self.peer, self.what
            )
        } else {
            write!(
                f,
                "{} on {}: event {}: {}",
                self.trace, self.peer, self.event, self.what
            )
        }
    }
}

impl std::error::Error for ReplayError {}

/// A live block of the replay.
#[derive(Clone, Copy, Debug)]
struct Slot {
    ptr: *mut u8,
    size: u32,
}

const EMPTY: Slot = Slot {
    ptr: core::ptr::null_mut(),
    size: 0,
};

/// What went wrong with a block, before it is dressed as a [`ReplayError`].
#[derive(Debug)]
struct Fault(String);

/// Writes both tags of block `id`.
///
/// # Safety
///
/// - `ptr` is a live block of at least `len >= 1` bytes.
#[inline(always)]
unsafe fn tag(ptr: *mut u8, len: usize, id: u32) {
    // SAFETY: offsets 0 and `len - 1` are inside the block (caller's contract).
    unsafe {
        ptr.add(len - 1).write(last_tag(id));
        ptr.write(first_tag(id));
    }
}

/// Checks both tags of block `id` (only the first when the block is one byte long).
///
/// # Safety
///
/// - `ptr` is a live block of at least `len >= 1` bytes.
#[inline(always)]
unsafe fn verify(ptr: *mut u8, len: usize, id: u32) -> Result<(), Fault> {
    // SAFETY: offsets 0 and `len - 1` are inside the block (caller's contract).
    let (first, last) = unsafe { (ptr.read(), ptr.add(len - 1).read()) };
    if first != first_tag(id) || (len > 1 && last != last_tag(id)) {
        return Err(mismatch(ptr, len, id, first, last));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn mismatch(ptr: *mut u8, len: usize, id: u32, first: u8, last: u8) -> Fault {
    Fault(format!(
        "block {id} ({len} B at {ptr:p}) was overwritten: first byte {first:#04x} (expected \
         {:#04x}), last byte {last:#04x} (expected {:#04x})",
        first_tag(id),
        last_tag(id)
    ))
}

#[cold]
#[inline(never)]
fn failed(op: &str, size: u32) -> Fault {
    Fault(format!("{op} of {size} B returned null"))
}

/// Checks that a fresh block is neither null nor misaligned for `layout` (CPython's callers
/// rely on 16 bytes, and the C-ABI peers get it from `malloc` only for requests of 16 bytes
/// and up).
#[inline(always)]
fn fresh(op: &str, p: *mut u8, layout: Layout, size: u32) -> Result<*mut u8, Fault> {
    if p.is_null() {
        return Err(failed(op, size));
    }
    if p as usize & (layout.align() - 1) != 0 {
        return Err(misaligned(op, p, layout));
    }
    Ok(p)
}

#[cold]
#[inline(never)]
fn misaligned(op: &str, p: *mut u8, layout: Layout) -> Fault {
    Fault(format!(
        "{op} of {} B returned {p:p}, not aligned to {}",
        layout.size(),
        layout.align()
    ))
}

/// One replay of `trace` on `peer`: returns the time of the event loop. The peer should be
/// fresh (or at least hold no block of an earlier replay under the same ids).
///
/// Blocks still live after the last event are verified and freed outside the timing.
pub fn replay<P: Peer>(peer: &P, trace: &Trace) -> Result<Duration, ReplayError> {
    replay_counted(peer, trace).map(|run| run.elapsed)
}

/// What one replay measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    /// The time of the event loop.
    pub elapsed: Duration,
    /// The CPU time this thread spent in the event loop, user and system
    /// (`CLOCK_THREAD_CPUTIME_ID`): unlike `elapsed`, it leaves out the time the thread waited
    /// for a core, which on a loaded machine is most of the noise. Page faults are still in it.
    pub cpu: Duration,
    /// The minor page faults the process took during the event loop (the allocator faulting
    /// its memory in; the harness's own id table is written before the timing starts).
    pub minor_faults: u64,
}

/// [`replay`], with the minor page faults of the event loop.
pub fn replay_counted<P: Peer>(peer: &P, trace: &Trace) -> Result<Measured, ReplayError> {
    // `vec![EMPTY; n]` writes every slot (`Slot` is not known to be zero), so the table is
    // faulted in here, before the timing.
    let mut slots = vec![EMPTY; trace.ids];
    let dress = |event: usize, Fault(what): Fault| ReplayError {
        trace: trace.name.clone(),
        peer: peer.name().to_owned(),
        event,
        what,
    };
    let faults = crate::rss::minor_faults();
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    // SAFETY: `run` only frees or resizes blocks it allocated on this peer, which `slots`
    // tracks by id (the trace was validated: each id is born once and dies at most once).
    let result = unsafe { run(peer, trace, &mut slots) };
    let elapsed = start.elapsed();
    let cpu = thread_cpu_time().saturating_sub(cpu_start);
    let minor_faults = crate::rss::minor_faults() - faults;
    result.map_err(|(i, fault)| dress(i + 1, fault))?;
    for (id, slot) in slots.iter().enumerate() {
        if slot.ptr.is_null() {
            continue;
        }
        let len = layout_of(slot.size).size();
        // SAFETY: a non-null slot is a live block of `len` bytes allocated by `peer`.
        unsafe {
            verify(slot.ptr, len, id as u32).map_err(|f| dress(0, f))?;
            peer.free(slot.ptr, layout_of(slot.size));
        }
    }
    Ok(Measured {
        elapsed,
        cpu,
        minor_faults,
    })
}

/// The CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`); zero if the clock fails.
pub fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-parameter.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The timed loop. On error, returns the index of the failing event.
///
/// # Safety
///
/// - `trace` is valid ([`Trace::new`] checked it) and `slots` has `trace.ids` empty entries;
/// - nobody else frees the blocks recorded in `slots`.
#[inline(never)]
unsafe fn run<P: Peer>(peer: &P, trace: &Trace, slots: &mut [Slot]) -> Result<(), (usize, Fault)> {
    for (i, e) in trace.events.iter().enumerate() {
        let layout = layout_of(e.size);
        let len = layout.size();
        match e.op {
            Op::Alloc => {
                // SAFETY: `layout.size() >= 1`.
                let p = unsafe { peer.alloc(layout) };
                let p = fresh("alloc", p, layout, e.size).map_err(|f| (i, f))?;
                // SAFETY: `p` is a fresh block of `len` bytes.
                unsafe { tag(p, len, e.id) };
                slots[e.id as usize] = Slot {
                    ptr: p,
                    size: e.size,
                };
            }
            Op::AllocZeroed => {
                // SAFETY: `layout.size() >= 1`.
                let p = unsafe { peer.alloc_zeroed(layout) };
                let p = fresh("alloc_zeroed", p, layout, e.size).map_err(|f| (i, f))?;
                // SAFETY: `p` is a fresh block of `len` bytes.
                let (first, last) = unsafe { (p.read(), p.add(len - 1).read()) };
                if first != 0 || last != 0 {
                    return Err((
                        i,
                        Fault(format!("zeroed block {} of {len} B is not zero", e.id)),
                    ));
                }
                // SAFETY: as above.
                unsafe { tag(p, len, e.id) };
                slots[e.id as usize] = Slot {
                    ptr: p,
                    size: e.size,
                };
            }
            Op::Realloc => {
                let old = core::mem::replace(&mut slots[e.id as usize], EMPTY);
                let old_layout = layout_of(old.size);
                let old_len = old_layout.size();
                // SAFETY: the trace names a live block (validated), allocated by `peer` with
                // `old_layout`.
                unsafe { verify(old.ptr, old_len, e.id) }.map_err(|f| (i, f))?;
                // SAFETY: as above; `len >= 1`; the old pointer is dropped on success.
                let p = unsafe { peer.realloc(old.ptr, old_layout, len) };
                let p = fresh("realloc", p, layout, e.size).map_err(|f| (i, f))?;
                // SAFETY: `p` is a live block of `len` bytes holding the old block's first
                // `min(old_len, len)` bytes.
                let (first, kept_last) = unsafe { (p.read(), p.add(old_len.min(len) - 1).read()) };
                if first != first_tag(e.id)
                    || (len >= old_len && old_len > 1 && kept_last != last_tag(e.id))
                {
                    return Err((
                        i,
                        Fault(format!(
                        "realloc of block {} ({old_len} B at {:p}) to {len} B at {p:p} lost its \
                         contents: first byte {first:#04x} (expected {:#04x})",
                        e.id, old.ptr, first_tag(e.id)
                    )),
                    ));
                }
                // SAFETY: `p` is a live block of `len` bytes.
                unsafe { tag(p, len, e.new_id) };
                slots[e.new_id as usize] = Slot {
                    ptr: p,
                    size: e.size,
                };
            }
            Op::Free => {
                let slot = core::mem::replace(&mut slots[e.id as usize], EMPTY);
                let layout = layout_of(slot.size);
                // SAFETY: the trace names a live block (validated) allocated by `peer` with
                // `layout`; it is forgotten from `slots` above.
                unsafe {
                    verify(slot.ptr, layout.size(), e.id).map_err(|f| (i, f))?;
                    peer.free(slot.ptr, layout);
                }
            }
        }
    }
    Ok(())
}

/// The median and the spread of a peer's runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// The median.
    pub median: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
}

impl Summary {
    /// The summary of `values` (all zero when empty).
    pub fn of(values: &mut [f64]) -> Self {
        let median = median(values);
        Summary {
            median,
            min: values.first().copied().unwrap_or(0.0),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

/// The median of `values` (mean of the middle two for an even count); 0 when empty. Sorts
/// `values`.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
