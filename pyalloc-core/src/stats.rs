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

use crate::config::{HeapConfig, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};
use crate::free_list::{slot_layout, FreeListStats, FreeLists};
use crate::pool::{blocks_per_pool, PoolHeader, POOL_OVERHEAD};
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
    free_lists: Vec<FreeListLine>,
}

impl Stats {
    pub(crate) fn collect(raw: &RawHeap, lists: &FreeLists, config: &HeapConfig) -> Stats {
        let pool_size = config.pool_size;
        let mut classes = [ClassStats::default(); NUM_SIZE_CLASSES];
        for (class, line) in classes.iter_mut().enumerate() {
            line.class = class;
            line.size = block_size(class);
        }
        let mut unused_pools = 0;
        for ao in &raw.arenas.objects {
            let Some(base) = ao.base else { continue };
            let free = ao.dirty_free | ao.clean_free;
            unused_pools += free.count_ones() as usize;
            for number in 0..raw.arenas.pools_per_arena as usize {
                if free & (1 << number) != 0 {
                    continue;
                }
                // SAFETY: a pool whose free bit is clear is in use, so its header is valid.
                let header =
                    unsafe { &*base.as_ptr().add(number * pool_size).cast::<PoolHeader>() };
                if header.ref_count == 0 {
                    // The raw heap's cached empty pool: a spare, like CPython's free pools.
                    unused_pools += 1;
                    continue;
                }
                let line = &mut classes[header.size_class as usize];
                line.pools += 1;
                line.blocks_in_use += header.ref_count as usize;
                line.avail_blocks +=
                    blocks_per_pool(pool_size, line.class) - header.ref_count as usize;
            }
        }
        let mut free_lists = Vec::new();
        for (spec, stats) in lists.created() {
            free_lists.push(FreeListLine {
                name: spec.name,
                value_size: spec.value_layout.size(),
                stats,
            });
            let slot = slot_layout(spec.value_layout);
            if is_small(slot) && !config.debug {
                classes[class_of(slot.size())].free_list_slots += stats.len;
            }
        }
        Stats {
            classes,
            arena_size: config.arena_size,
            pool_size,
            arenas_allocated_total: raw.arenas.allocated_total,
            arenas_reclaimed: raw.arenas.reclaimed,
            arenas_highwater: raw.arenas.highwater,
            arenas_current: raw.arenas.current,
            unused_pools,
            // Arenas are mapped aligned to their size and hold a whole number of pools.
            arena_alignment: raw.arenas.current
                * (config.arena_size - raw.arenas.pools_per_arena as usize * pool_size),
            large_allocations: raw.large_count,
            large_bytes: raw.large_bytes,
            free_lists,
        }
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
}

/// CPython's `printone`: the label padded to 35 columns, `=`, the value with thousands
/// separators right-aligned in 21.
fn print_one(f: &mut fmt::Formatter<'_>, label: &str, value: usize) -> fmt::Result {
    writeln!(f, "{label:<35}={:>21}", with_commas(value))
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
        print_one(
            f,
            "# arenas allocated total",
            self.arenas_allocated_total as usize,
        )?;
        print_one(f, "# arenas reclaimed", self.arenas_reclaimed as usize)?;
        print_one(f, "# arenas highwater mark", self.arenas_highwater)?;
        print_one(f, "# arenas allocated current", self.arenas_current)?;
        print_one(
            f,
            &format!(
                "{} arenas * {} bytes/arena",
                self.arenas_current, self.arena_size
            ),
            self.arena_bytes(),
        )?;
        writeln!(f)?;
        print_one(
            f,
            "# bytes in allocated blocks",
            self.bytes_in_allocated_blocks(),
        )?;
        print_one(
            f,
            "# bytes in available blocks",
            self.bytes_in_available_blocks(),
        )?;
        print_one(
            f,
            &format!(
                "{} unused pools * {} bytes",
                self.unused_pools, self.pool_size
            ),
            self.bytes_in_unused_pools(),
        )?;
        print_one(
            f,
            "# bytes lost to pool headers",
            self.bytes_lost_to_pool_headers(),
        )?;
        print_one(
            f,
            "# bytes lost to quantization",
            self.bytes_lost_to_quantization(),
        )?;
        print_one(f, "# bytes lost to arena alignment", self.arena_alignment)?;
        print_one(f, "Total", self.total())?;
        writeln!(f)?;
        print_one(
            f,
            &format!("{} large blocks (system allocator)", self.large_allocations),
            self.large_bytes,
        )?;
        if !self.free_lists.is_empty() {
            writeln!(f)?;
            for line in &self.free_lists {
                print_one(
                    f,
                    &format!(
                        "{} free {}s * {} bytes each",
                        line.stats.len, line.name, line.value_size
                    ),
                    line.stats.len * line.value_size,
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_group_thousands() {
        assert_eq!(with_commas(0), "0");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1000), "1,000");
        assert_eq!(with_commas(3145728), "3,145,728");
    }
}
