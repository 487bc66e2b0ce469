//! The figures of CPython's `sys._debugmallocstats()`, derived by walking the heap.
//!
//! Nothing on the allocation path counts blocks: CPython removed its per-allocation counter
//! for speed (bpo-37537), and so do we. [`Heap::stats`](crate::Heap::stats) walks every arena
//! and every pool in use when asked. The accounting identity CPython prints holds exactly:
//!
//! ```text
//! allocated blocks + available blocks + unused pools + pool headers
//!     + quantization + arena alignment  ==  arenas × arena size
//! ```

use core::fmt;

use crate::arena::PoolSlot;
use crate::config::{HeapConfig, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};
use crate::free_list::{FreeListStats, FreeLists};
use crate::pool::{blocks_per_pool, Pool, POOL_OVERHEAD};
use crate::raw::RawHeap;
use crate::size_class::{block_size, class_of, is_small};

/// One size class's line of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// The class number.
    pub class: usize,
    /// Block size in bytes.
    pub size: usize,
    /// Pools in use (used or full) serving this class.
    pub pools: usize,
    /// Blocks handed out and not freed: live blocks, plus slots on layer-3 free lists.
    pub blocks_in_use: usize,
    /// Free blocks in those pools, carved or not.
    pub avail_blocks: usize,
    /// How many of `blocks_in_use` are slots resting on layer-3 free lists.
    pub free_list_slots: usize,
}

/// One free list's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeListLine {
    /// The list's name (the type's, or the key's).
    pub name: &'static str,
    /// Size of the values it holds.
    pub value_size: usize,
    /// Its figures.
    pub stats: FreeListStats,
}

/// What one pool is doing, as the occupancy map shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Free, its pages still resident (written by a former user, or the heap's cached empty
    /// pool). Cheap to reuse; costs memory until purged.
    Unused,
    /// Free and costing no memory: never touched, or its pages handed back to the OS.
    Purged,
    /// Serving `class`, with `live` of its `capacity` blocks in use.
    Used {
        /// The size class.
        class: usize,
        /// Blocks in use (free-list slots included).
        live: usize,
        /// Blocks the pool holds.
        capacity: usize,
    },
    /// Serving `class`, every block in use.
    Full {
        /// The size class.
        class: usize,
    },
}

impl PoolState {
    /// The map's character: `#` full, `1`–`9` used (tenths in use, rounded up), `o` unused
    /// but resident, `.` purged.
    pub fn symbol(self) -> char {
        match self {
            PoolState::Unused => 'o',
            PoolState::Purged => '.',
            PoolState::Full { .. } => '#',
            PoolState::Used { live, capacity, .. } => {
                let tenths = (live * 10).div_ceil(capacity).clamp(1, 9);
                char::from_digit(tenths as u32, 10).expect("a digit")
            }
        }
    }
}

/// One arena's pools, in address order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaOccupancy {
    /// The arena's index in the arena table.
    pub index: usize,
    /// Each pool's state, pool 0 first.
    pub pools: Vec<PoolState>,
    /// Bytes of this arena handed back to the OS (`madvise`) since it was mapped, by `trim`
    /// or the release policy's decay.
    pub purged_bytes: u64,
}

impl ArenaOccupancy {
    /// Pools kept for reuse with their pages resident (free, not purged).
    pub fn retained_pools(&self) -> usize {
        self.pools
            .iter()
            .filter(|p| matches!(p, PoolState::Unused))
            .count()
    }
}

/// Fragmentation as a picture: one row per arena mapped, one character per pool
/// ([`PoolState::symbol`]). `Display` prints it with a legend.
///
/// ```
/// use pyalloc::{Box, Heap, PoolState};
///
/// let heap = Heap::new();
/// let _b = Box::new_in([0u8; 64], &heap);
/// let stats = heap.stats();
/// let map = stats.occupancy();
/// assert_eq!(map.arenas().len(), 1);
/// assert!(matches!(map.arenas()[0].pools[0], PoolState::Used { live: 1, .. }));
/// println!("{map}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    arenas: Vec<ArenaOccupancy>,
}

impl Occupancy {
    /// Every arena mapped, in table order.
    pub fn arenas(&self) -> &[ArenaOccupancy] {
        &self.arenas
    }

    /// How many pools are in `state`'s kind (`Used` and `Full` match any class and fill).
    pub fn count(&self, matches: impl Fn(PoolState) -> bool) -> usize {
        self.arenas
            .iter()
            .flat_map(|a| a.pools.iter())
            .filter(|&&p| matches(p))
            .count()
    }
}

impl fmt::Display for Occupancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pools: # full, 1-9 used (tenths in use), o unused (resident), . purged or untouched"
        )?;
        if self.arenas.is_empty() {
            return writeln!(f, "(no arena mapped)");
        }
        for arena in &self.arenas {
            let row: String = arena.pools.iter().map(|p| p.symbol()).collect();
            let count =
                |kind: fn(&PoolState) -> bool| arena.pools.iter().filter(|p| kind(p)).count();
            writeln!(
                f,
                "arena {:>4} |{row}| {} used ({} full), {} unused, {} purged ({} KiB in all)",
                arena.index,
                count(|p| matches!(p, PoolState::Used { .. } | PoolState::Full { .. })),
                count(|p| matches!(p, PoolState::Full { .. })),
                count(|p| matches!(p, PoolState::Unused)),
                count(|p| matches!(p, PoolState::Purged)),
                arena.purged_bytes >> 10,
            )?;
        }
        Ok(())
    }
}

/// A snapshot of a heap's figures, in `sys._debugmallocstats()`'s terms. `Display` prints
/// CPython's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    classes: [ClassStats; NUM_SIZE_CLASSES],
    arena_size: usize,
    pool_size: usize,
    arenas_allocated_total: u64,
    arenas_reclaimed: u64,
    arenas_highwater: usize,
    arenas_current: usize,
    unused_pools: usize,
    arena_alignment: usize,
    large_allocations: usize,
    large_bytes: usize,
    quarantined: (usize, usize),
    arena_map: (usize, usize),
    retained_bytes: usize,
    purged_bytes: u64,
    free_lists: Vec<FreeListLine>,
    occupancy: Occupancy,
}

impl Stats {
    /// Walks the layers; `quarantined` is what the debug layer holds back (blocks, bytes).
    pub(crate) fn collect(
        raw: &RawHeap,
        lists: &FreeLists,
        quarantined: (usize, usize),
        config: &HeapConfig,
    ) -> Stats {
        let arenas = raw.arenas();
        let pool_size = arenas.pool_size();
        let mut classes = [ClassStats::default(); NUM_SIZE_CLASSES];
        for (class, line) in classes.iter_mut().enumerate() {
            line.class = class;
            line.size = block_size(class);
        }
        let mut unused_pools = 0;
        let mut occupancy = Occupancy::default();
        for entry in arenas.pools() {
            if entry.number == 0 {
                occupancy.arenas.push(ArenaOccupancy {
                    index: entry.arena_index as usize,
                    pools: Vec::with_capacity(arenas.pools_per_arena()),
                    purged_bytes: arenas.purged_in(entry.arena_index),
                });
            }
            let state = match entry.slot {
                PoolSlot::FreeDirty => PoolState::Unused,
                PoolSlot::FreeClean => PoolState::Purged,
                PoolSlot::InUse => {
                    // SAFETY: a pool in use of this heap, whose core the caller holds.
                    let pool = unsafe { Pool::from_addr(entry.addr) };
                    let live = pool.ref_count();
                    let capacity = blocks_per_pool(pool_size, pool.class());
                    if live == 0 {
                        // The cached empty pool: a spare, like CPython's free pools.
                        PoolState::Unused
                    } else {
                        let line = &mut classes[pool.class()];
                        line.pools += 1;
                        line.blocks_in_use += live;
                        line.avail_blocks += capacity - live;
                        if live == capacity {
                            PoolState::Full { class: line.class }
                        } else {
                            PoolState::Used {
                                class: line.class,
                                live,
                                capacity,
                            }
                        }
                    }
                }
            };
            if !matches!(state, PoolState::Used { .. } | PoolState::Full { .. }) {
                unused_pools += 1;
            }
            occupancy
                .arenas
                .last_mut()
                .expect("pool 0 comes first")
                .pools
                .push(state);
        }
        let mut free_lists = Vec::new();
        for (head, list) in lists.created() {
            let spec = list.spec();
            let stats = list.stats(head);
            free_lists.push(FreeListLine {
                name: spec.name,
                value_size: spec.value_layout.size(),
                stats,
            });
            if is_small(spec.slot_layout) && !config.debug {
                classes[class_of(spec.slot_layout.size())].free_list_slots += stats.len;
            }
        }
        let (large_allocations, large_bytes) = raw.large();
        Stats {
            classes,
            arena_size: arenas.arena_size(),
            pool_size,
            arenas_allocated_total: arenas.allocated_total(),
            arenas_reclaimed: arenas.reclaimed(),
            arenas_highwater: arenas.highwater(),
            arenas_current: arenas.current(),
            unused_pools,
            // Arenas are mapped aligned to their size and hold a whole number of pools.
            arena_alignment: arenas.current()
                * (arenas.arena_size() - arenas.pools_per_arena() * pool_size),
            large_allocations: large_allocations - quarantined.0,
            large_bytes: large_bytes - quarantined.1,
            quarantined,
            arena_map: (arenas.map().bytes(), arenas.map().leaves()),
            retained_bytes: arenas.retained_bytes(),
            purged_bytes: arenas.purged_bytes(),
            free_lists,
            occupancy,
        }
    }

    /// The occupancy map: each arena's pools, as a picture of fragmentation.
    pub fn occupancy(&self) -> &Occupancy {
        &self.occupancy
    }

    /// One line per size class, all 32 of them (the `Display` skips unused ones, as CPython).
    pub fn classes(&self) -> &[ClassStats] {
        &self.classes
    }

    /// The free lists this heap has seen.
    pub fn free_lists(&self) -> &[FreeListLine] {
        &self.free_lists
    }

    /// `# arenas allocated total`: arenas ever mapped.
    pub fn arenas_allocated_total(&self) -> u64 {
        self.arenas_allocated_total
    }

    /// `# arenas reclaimed`: arenas returned to the OS.
    pub fn arenas_reclaimed(&self) -> u64 {
        self.arenas_reclaimed
    }

    /// `# arenas highwater mark`: the most arenas mapped at once.
    pub fn arenas_highwater(&self) -> usize {
        self.arenas_highwater
    }

    /// `# arenas allocated current`: arenas mapped now.
    pub fn arenas_current(&self) -> usize {
        self.arenas_current
    }

    /// Bytes mapped in arenas now: `arenas_current × arena size`.
    pub fn arena_bytes(&self) -> usize {
        self.arenas_current * self.arena_size
    }

    /// `# bytes in allocated blocks`.
    pub fn bytes_in_allocated_blocks(&self) -> usize {
        self.classes.iter().map(|c| c.blocks_in_use * c.size).sum()
    }

    /// `# bytes in available blocks`: free blocks inside pools in use.
    pub fn bytes_in_available_blocks(&self) -> usize {
        self.classes.iter().map(|c| c.avail_blocks * c.size).sum()
    }

    /// Number of free pools in mapped arenas (`N unused pools * pool size`).
    pub fn unused_pools(&self) -> usize {
        self.unused_pools
    }

    /// Bytes of free pools in mapped arenas.
    pub fn bytes_in_unused_pools(&self) -> usize {
        self.unused_pools * self.pool_size
    }

    /// `# bytes lost to pool headers`.
    pub fn bytes_lost_to_pool_headers(&self) -> usize {
        self.pools_in_use() * POOL_OVERHEAD
    }

    /// `# bytes lost to quantization`: the tail of each pool in use too small for a block.
    pub fn bytes_lost_to_quantization(&self) -> usize {
        self.classes
            .iter()
            .map(|c| c.pools * ((self.pool_size - POOL_OVERHEAD) % c.size))
            .sum()
    }

    /// `# bytes lost to arena alignment`: zero, since arenas are mapped aligned to their size
    /// (CPython loses up to a pool per arena here).
    pub fn bytes_lost_to_arena_alignment(&self) -> usize {
        self.arena_alignment
    }

    /// `Total`: the sum of the six lines above, which equals [`arena_bytes`](Self::arena_bytes).
    pub fn total(&self) -> usize {
        self.bytes_in_allocated_blocks()
            + self.bytes_in_available_blocks()
            + self.bytes_in_unused_pools()
            + self.bytes_lost_to_pool_headers()
            + self.bytes_lost_to_quantization()
            + self.bytes_lost_to_arena_alignment()
    }

    /// Pools in use (used or full), all classes.
    pub fn pools_in_use(&self) -> usize {
        self.classes.iter().map(|c| c.pools).sum()
    }

    /// Blocks live or resting on free lists, all classes.
    pub fn blocks_in_use(&self) -> usize {
        self.classes.iter().map(|c| c.blocks_in_use).sum()
    }

    /// Requests served by the system allocator (over 512 bytes or aligned over 16) and live.
    pub fn large_allocations(&self) -> usize {
        self.large_allocations
    }

    /// Bytes in those.
    pub fn large_bytes(&self) -> usize {
        self.large_bytes
    }

    /// The arena map (which addresses are this heap's, for [`Heap::owns`](crate::Heap::owns)):
    /// the bytes of address space it takes (its root and its 32 KiB leaves, mapped zeroed from
    /// the OS) and its leaves. Only the pages written, one of the root and one of a leaf per
    /// region of arenas, are resident: the rest costs address space only.
    pub fn arena_map(&self) -> (usize, usize) {
        self.arena_map
    }

    /// Bytes of free pools kept for reuse with their pages resident: what the release policy
    /// (or [`Heap::trim`](crate::Heap::trim)) may still purge. Part of the unused pools' bytes.
    pub fn retained_bytes(&self) -> usize {
        self.retained_bytes
    }

    /// Bytes handed back to the OS with `madvise` since the heap was made (by `trim` and by the
    /// release policy's decay), arenas since unmapped included.
    pub fn purged_bytes(&self) -> u64 {
        self.purged_bytes
    }

    /// Debug mode: freed large blocks held back in the quarantine (see [`Heap`](crate::Heap)'s
    /// "Debug mode"), and the system bytes they hold.
    pub fn quarantined(&self) -> (usize, usize) {
        self.quarantined
    }
}

/// The lines printed in CPython's `printone` layout: a label, `=`, a value.
struct Lines(Vec<(String, usize)>);

impl Lines {
    fn push(&mut self, label: impl Into<String>, value: usize) {
        self.0.push((label.into(), value));
    }

    /// CPython's `printone`: the label padded to 35 columns (or one past the longest label,
    /// so a long free-list name never pushes its `=` out of line), `=`, the value with
    /// thousands separators right-aligned in 21.
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let longest = self.0.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let width = (longest + 1).max(35);
        for (label, value) in &self.0 {
            if label.is_empty() {
                writeln!(f)?;
            } else {
                writeln!(f, "{label:<width$}={:>21}", with_commas(*value))?;
            }
        }
        Ok(())
    }
}

fn with_commas(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Small block threshold = {SMALL_REQUEST_THRESHOLD}, in {NUM_SIZE_CLASSES} size classes.\n"
        )?;
        writeln!(f, "class   size   num pools   blocks in use  avail blocks")?;
        writeln!(f, "-----   ----   ---------   -------------  ------------")?;
        for c in self.classes.iter().filter(|c| c.pools > 0) {
            writeln!(
                f,
                "{:5} {:6} {:11} {:15} {:13}",
                c.class, c.size, c.pools, c.blocks_in_use, c.avail_blocks
            )?;
        }
        writeln!(f)?;
        let mut lines = Lines(Vec::new());
        lines.push(
            "# arenas allocated total",
            self.arenas_allocated_total as usize,
        );
        lines.push("# arenas reclaimed", self.arenas_reclaimed as usize);
        lines.push("# arenas highwater mark", self.arenas_highwater);
        lines.push("# arenas allocated current", self.arenas_current);
        lines.push(
            format!(
                "{} arenas * {} bytes/arena",
                self.arenas_current, self.arena_size
            ),
            self.arena_bytes(),
        );
        lines.push("", 0);
        lines.push(
            "# bytes in allocated blocks",
            self.bytes_in_allocated_blocks(),
        );
        lines.push(
            "# bytes in available blocks",
            self.bytes_in_available_blocks(),
        );
        lines.push(
            format!(
                "{} unused pools * {} bytes",
                self.unused_pools, self.pool_size
            ),
            self.bytes_in_unused_pools(),
        );
        lines.push(
            "# bytes lost to pool headers",
            self.bytes_lost_to_pool_headers(),
        );
        lines.push(
            "# bytes lost to quantization",
            self.bytes_lost_to_quantization(),
        );
        lines.push("# bytes lost to arena alignment", self.arena_alignment);
        lines.push("Total", self.total());
        lines.push("", 0);
        lines.push(
            format!("{} large blocks (system allocator)", self.large_allocations),
            self.large_bytes,
        );
        lines.push(
            format!("# bytes in arena map ({} leaves)", self.arena_map.1),
            self.arena_map.0,
        );
        lines.push("# bytes retained in unused pools", self.retained_bytes);
        lines.push(
            "# bytes purged (madvise), in all",
            self.purged_bytes as usize,
        );
        if self.quarantined.0 > 0 {
            lines.push(
                format!("{} quarantined blocks (debug mode)", self.quarantined.0),
                self.quarantined.1,
            );
        }
        if !self.free_lists.is_empty() {
            lines.push("", 0);
            for line in &self.free_lists {
                lines.push(
                    format!(
                        "{} free {}s * {} bytes each",
                        line.stats.len, line.name, line.value_size
                    ),
                    line.stats.len * line.value_size,
                );
            }
        }
        lines.print(f)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_symbols_show_fill_in_tenths() {
        let used = |live| PoolState::Used {
            class: 0,
            live,
            capacity: 100,
        };
        assert_eq!(used(1).symbol(), '1');
        assert_eq!(used(10).symbol(), '1');
        assert_eq!(used(11).symbol(), '2');
        assert_eq!(used(99).symbol(), '9');
        assert_eq!(PoolState::Full { class: 0 }.symbol(), '#');
        assert_eq!(PoolState::Unused.symbol(), 'o');
        assert_eq!(PoolState::Purged.symbol(), '.');
    }

    #[test]
    fn every_value_lines_up_whatever_the_longest_label() {
        let heap = crate::Heap::new();
        let key = crate::FreeListKey::new(
            "3-sized PyTupleObject",
            core::alloc::Layout::new::<[u64; 6]>(),
            10,
        );
        let slot = heap.alloc_slot(&key).unwrap();
        // SAFETY: `slot` came from `alloc_slot` with this key and is not used afterwards.
        unsafe { heap.free_slot(&key, slot) };
        let text = heap.stats().to_string();
        let columns: Vec<usize> = text
            .lines()
            .filter(|l| !l.starts_with("Small block threshold"))
            .filter_map(|l| l.find('='))
            .collect();
        assert!(columns.len() > 10, "{text}");
        assert!(columns.iter().all(|&c| c == columns[0]), "{text}");
        assert!(
            text.contains("1 free 3-sized PyTupleObjects * 48 bytes each ="),
            "{text}"
        );
    }

    #[test]
    fn commas_group_thousands() {
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(with_commas(3145728), "3,145,728");
    }
}
