//! The re-entrancy gate: the one way into a heap's core.
//!
//! A [`Heap`](crate::Heap) keeps its layers in an `UnsafeCell` and hands its methods a
//! `&mut` to them. That is sound only while no second `&mut` can exist, and the core itself can
//! open a way in: it calls foreign code (an [`ArenaSource`](crate::ArenaSource)), and a panic
//! inside it runs the panic hook, which may allocate from the very same heap (a thread-local
//! heap, or any heap serving as the global allocator). The gate sits beside the core, outside
//! the cell, and closes while the core might be re-entered:
//!
//! * the fast paths test the request size against [`Gate::fast_limit`], a test they make
//!   anyway (it routes large and zero-sized requests); closing the gate sets the limit to 0,
//!   so a re-entrant call falls into the slow path at no cost to the fast one;
//! * the slow path asks [`Gate::is_closed`] before it borrows the core, and a re-entrant call
//!   is refused there (an `AllocError`, or a free deferred until the gate opens), never aliased;
//! * `Global`'s fast paths test no limit: they read the thread heap through a thread-local
//!   pointer, which a thread heap's gate points away from the heap while it is closed (the
//!   gate calls `Global` back whenever it closes or opens), so they fail there at no cost.
//!
//! The gate is closed around every call out of the core (the arena source) and around every
//! slow-path operation as a whole; the fast paths call nothing out and cannot panic, so they
//! need not close it.
//!
//! ```text
//! closed  ⇒  fast_limit == 0;   open  ⇒  fast_limit == open_limit
//! the core is borrowed  ⇒  closed, or the borrower is a fast path (which calls out only
//!                          with the gate closed, and does not panic)
//! ```

use core::cell::Cell;

/// Beside a heap's core: whether it is in use, and the fast path's size limit.
#[derive(Debug)]
pub(crate) struct Gate {
    /// A request takes the fast path when `size - 1 < fast_limit` (and its alignment is at
    /// most 16). `open_limit` while the gate is open, 0 while it is closed.
    fast_limit: Cell<usize>,
    /// The limit while open: `SMALL_REQUEST_THRESHOLD`, or 0 in debug mode, where every
    /// request takes the debug layer's slow path.
    open_limit: usize,
    /// Whether the core is borrowed by a slow path or a call out is under way.
    closed: Cell<bool>,
    /// Called after the gate closes and after it opens again (not on nested closes): a thread
    /// heap of `Global` points the thread's fast-path pointer away from its heap while the
    /// gate is closed (see `global.rs`), which is how `Global`'s fast paths, which do not
    /// test the limit above, keep out of a busy core.
    turned: Option<fn()>,
}

impl Gate {
    /// An open gate whose fast path serves requests of `1..=open_limit` bytes.
    pub(crate) const fn new(open_limit: usize) -> Self {
        Gate {
            fast_limit: Cell::new(open_limit),
            open_limit,
            closed: Cell::new(false),
            turned: None,
        }
    }

    /// Sets the function called whenever the gate closes or opens (see the field).
    pub(crate) fn set_turned(&mut self, turned: fn()) {
        self.turned = Some(turned);
    }

    #[inline]
    fn turn(&self) {
        if let Some(turned) = self.turned {
            turned();
        }
    }

    /// The fast path's size limit now (see the field).
    #[inline(always)]
    pub(crate) fn fast_limit(&self) -> usize {
        self.fast_limit.get()
    }

    /// Whether the fast paths are open: the gate is open and the heap is not in debug mode.
    #[inline(always)]
    pub(crate) fn fast_paths_open(&self) -> bool {
        self.fast_limit.get() != 0
    }

    /// Whether a slow path or a call out is under way: a call arriving now is re-entrant.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Runs `f` with the gate closed, and reopens it afterwards, also when `f` unwinds.
    /// Closing a closed gate is allowed (it stays closed until the outer call ends).
    #[inline]
    pub(crate) fn closed<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Restores the gate as it was, on return and on unwind alike.
        struct Reopen<'a> {
            gate: &'a Gate,
            was_closed: bool,
        }
        impl Drop for Reopen<'_> {
            fn drop(&mut self) {
                self.gate.closed.set(self.was_closed);
                if !self.was_closed {
                    self.gate.fast_limit.set(self.gate.open_limit);
                    self.gate.turn();
                }
            }
        }
        let _reopen = Reopen {
            gate: self,
            was_closed: self.closed.replace(true),
        };
        self.fast_limit.set(0);
        if !_reopen.was_closed {
            self.turn();
        }
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_shuts_the_fast_path_and_reopens_on_unwind() {
        let gate = Gate::new(512);
        assert_eq!(gate.fast_limit(), 512);
        gate.closed(|| {
            assert!(gate.is_closed());
            assert_eq!(gate.fast_limit(), 0);
            gate.closed(|| assert!(gate.is_closed()));
            assert!(gate.is_closed(), "a nested close keeps the outer one");
        });
        assert!(!gate.is_closed());
        assert_eq!(gate.fast_limit(), 512);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gate.closed(|| panic!("inside"));
        }));
        assert!(unwound.is_err());
        assert!(!gate.is_closed());
        assert_eq!(gate.fast_limit(), 512);
    }

    #[test]
    fn a_debug_gate_never_opens_the_fast_path() {
        let gate = Gate::new(0);
        assert!(!gate.fast_paths_open());
        gate.closed(|| {});
        assert_eq!(gate.fast_limit(), 0);
    }
}
