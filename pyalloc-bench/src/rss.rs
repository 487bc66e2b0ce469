//! Resident set size from `/proc/self/statm`, the lazily freed part of it, and the process's
//! minor page faults.

/// The process's resident set size in bytes (`/proc/self/statm`, second field × page size);
/// 0 where the file cannot be read.
pub fn rss_bytes() -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: usize = text
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    // SAFETY: `sysconf` only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).unwrap_or(4096)
}

/// The minor page faults the process has taken so far (`getrusage`), 0 if it fails.
pub fn minor_faults() -> u64 {
    // SAFETY: `rusage` is plain data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: `usage` is a valid out-parameter.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_minflt).unwrap_or(0)
}

/// The process's `LazyFree` bytes (`/proc/self/smaps_rollup`): pages handed back with
/// `MADV_FREE` that the kernel has not reclaimed yet. They still count in the RSS, and are
/// dropped only under memory pressure. 0 where the file cannot be read.
pub fn lazy_free_bytes() -> usize {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps_rollup") else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("LazyFree:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
