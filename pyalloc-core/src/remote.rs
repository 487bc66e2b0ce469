//! Frees from other threads: each thread heap's mailbox of blocks sent back to it, and the
//! protocol that decides who may use a heap whose thread has exited.
//!
//! A block allocated by one thread's heap and freed by another must go back to its own pool,
//! whose header only the owner writes. Two designs are proven: mimalloc gives every page an
//! atomic thread-free list, snmalloc gives every allocator a message queue. pyalloc takes
//! snmalloc's, for three reasons:
//!
//! * a pool header keeps CPython's 48 bytes: an atomic list per pool would need 8 more,
//!   pushing the first block to offset 64 and changing blocks per pool in every class;
//! * a full pool needs nothing special: mimalloc must send frees into a *full* page through
//!   a second, heap-level list so the owner finds that page again, while here the owner frees
//!   each returned block through its ordinary path, which puts a full pool back in its list;
//! * the owner's fast path reads no atomic at all: the mailbox is looked at only on its slow
//!   path (a class out of pools, `trim`, thread exit).
//!
//! The cost is one compare-and-swap on the owner's mailbox per remote free, a cache line that
//! the senders share with each other but never with the owner's fast path.
//!
//! ## The mailbox
//! A Treiber stack threaded through the freed blocks' first word ([`link`]): senders push one
//! block with a compare-and-swap; the receiver takes the whole stack with one swap and walks
//! it privately. Nothing is ever popped singly, so there is no ABA problem.
//!
//! ## Ownership
//! Exactly one party may touch a heap's non-atomic state at a time (as a `Mutex` would
//! guarantee):
//!
//! ```text
//!  Owned ──abandon──▶ Abandoned ──try_claim──▶ Claimed
//!    ▲                    │  ▲                    │
//!    └─────try_adopt──────┘  └──────release───────┘
//! ```
//!
//! * **Owned**: its thread uses it; senders only push.
//! * **Abandoned**: its thread exited (or it is the shared fallback heap); anyone may claim it.
//! * **Claimed**: one thread holds it for a while (draining its mailbox, or allocating from
//!   the fallback heap), then releases it.
//!
//! A sender to an abandoned heap claims it and empties the mailbox itself, so a heap whose
//! thread exited gives its memory back as its blocks come home, and no block waits for an
//! owner that will never come. The race between a sender (push, then look at the state) and a
//! releaser (release, then look at the mailbox) is settled by a sequentially consistent fence
//! between each side's write and look: at least one of the two sees the other's write (a
//! Dekker pair; loom models such fences exactly, not `SeqCst` accesses), so a block is never left
//! in an abandoned heap's mailbox with nobody to empty it ([`Mailbox::post`],
//! [`Mailbox::release`]). `loom` checks this exhaustively (the tests below, with
//! `RUSTFLAGS="--cfg loom"`), and Miri's data-race detector checks the memory orderings over
//! real blocks (`tests/threads.rs`).
//!
//! [`link`]: crate::link

use core::ptr::{self, NonNull};

#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicPtr, AtomicU8, Ordering};

#[cfg(not(loom))]
use core::sync::atomic::{fence, AtomicPtr, AtomicU8, Ordering};

use crate::link;

const OWNED: u8 = 0;
const ABANDONED: u8 = 1;
const CLAIMED: u8 = 2;

/// A heap's mailbox and ownership state: the only parts of a thread heap other threads touch.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// The most recently sent block; each block's first word links to the one sent before.
    head: AtomicPtr<u8>,
    /// [`OWNED`], [`ABANDONED`] or [`CLAIMED`].
    state: AtomicU8,
}

/// What [`Mailbox::post`] leaves the caller to do.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Posted {
    /// The owner (or a claimer) will take the block.
    Delivered,
    /// The heap was abandoned and the caller now holds it: empty the mailbox, then
    /// [`release`](Mailbox::release).
    Claimed,
}

impl Mailbox {
    /// A mailbox for a heap its creating thread owns.
    #[cfg(not(loom))]
    pub(crate) const fn owned() -> Self {
        Mailbox {
            head: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(OWNED),
        }
    }

    /// A mailbox for a heap its creating thread owns.
    #[cfg(loom)]
    pub(crate) fn owned() -> Self {
        Mailbox {
            head: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(OWNED),
        }
    }

    /// Sends `block` home; if the heap is abandoned, tries to claim it for the caller.
    ///
    /// # Safety
    ///
    /// `block` is pointer-aligned, at least a pointer wide, belongs to this mailbox's heap, and
    /// the caller gives it up: nobody uses it afterwards but the heap.
    pub(crate) unsafe fn post(&self, block: NonNull<u8>) -> Posted {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is the caller's to give up, pointer-aligned and wide enough;
            // nobody else reads it until the exchange below publishes it.
            unsafe { link::write(block.as_ptr(), head) };
            // Release: the link (and the sender's last writes to the block) go with it.
            match self.head.compare_exchange_weak(
                head,
                block.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        // The push, then a look at the state, with a sequentially consistent fence between:
        // paired with the fence between `recheck`'s store and look (see the module docs).
        fence(Ordering::SeqCst);
        if self.state.load(Ordering::Relaxed) == ABANDONED && self.try_claim() {
            Posted::Claimed
        } else {
            Posted::Delivered
        }
    }

    /// Whether blocks are waiting. A relaxed look, for the owner's slow path: a block sent
    /// concurrently is seen at the owner's next look.
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        !self.head.load(Ordering::Relaxed).is_null()
    }

    /// Takes every waiting block, most recent first.
    ///
    /// # Safety
    ///
    /// The caller owns or has claimed the heap (only the holder takes mail), and frees every
    /// block the iterator yields into the heap (the iterator reads each block's link before
    /// yielding it, so freeing it then is fine).
    pub(crate) unsafe fn take_all(&self) -> impl Iterator<Item = NonNull<u8>> {
        // Acquire: each block's link (and the sender's last writes to it) happen before.
        let mut at = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        core::iter::from_fn(move || {
            let block = NonNull::new(at)?;
            // SAFETY: a posted block holds the link written before it was published, and is
            // the holder's alone now.
            at = unsafe { link::read(block.as_ptr()) };
            Some(block)
        })
    }

    /// Tries to take an abandoned heap for a while.
    pub(crate) fn try_claim(&self) -> bool {
        self.state
            .compare_exchange(ABANDONED, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Tries to make an abandoned heap the calling thread's own.
    pub(crate) fn try_adopt(&self) -> bool {
        self.state
            .compare_exchange(ABANDONED, OWNED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the heap is abandoned (a hint: it may be claimed or adopted the next moment).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ABANDONED
    }

    /// Gives up a claimed heap. Returns `true` when mail arrived that its sender left to the
    /// holder and the caller holds the heap again: empty the mailbox and release again.
    ///
    /// # Safety
    ///
    /// The caller holds the claim, and has emptied the mailbox.
    #[must_use]
    pub(crate) unsafe fn release(&self) -> bool {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), CLAIMED);
        self.state.store(ABANDONED, Ordering::Release);
        self.recheck()
    }

    /// The owner's thread is exiting: the heap becomes anyone's. Returns `true` when the caller
    /// must claim-drain as for [`release`](Self::release).
    ///
    /// # Safety
    ///
    /// The caller owns the heap, and has emptied the mailbox.
    #[must_use]
    pub(crate) unsafe fn abandon(&self) -> bool {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), OWNED);
        self.state.store(ABANDONED, Ordering::Release);
        self.recheck()
    }

    /// After making the heap abandoned: a sender that pushed before seeing it abandoned left
    /// its block to the holder; take the heap back to deliver it.
    fn recheck(&self) -> bool {
        // The store of the state, then a look at the mailbox, with a sequentially consistent
        // fence between (paired with `post`'s): of two fences, one comes first in the single
        // total order, and the look after the second sees the write before the first.
        fence(Ordering::SeqCst);
        !self.head.load(Ordering::Relaxed).is_null() && self.try_claim()
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run with `RUSTFLAGS="--cfg loom" cargo test -p pyalloc-core --lib --release remote`.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// A heap in miniature: the mailbox, and the state only its holder may touch (loom's
    /// `UnsafeCell` reports two holders at once as a data race).
    struct Heap {
        mailbox: Mailbox,
        freed: UnsafeCell<Vec<usize>>,
    }

    impl Heap {
        fn drain(&self) {
            // SAFETY: called by the holder only; each block is a leaked `Box<[usize; 2]>`.
            self.freed.with_mut(|freed| unsafe {
                for block in self.mailbox.take_all() {
                    (*freed).push(block.as_ptr().addr());
                }
                (*freed).sort_unstable();
            });
        }

        /// A thread that is not the owner frees `block`.
        fn send(&self, block: NonNull<u8>) {
            // SAFETY: the block is given up.
            if unsafe { self.mailbox.post(block) } == Posted::Claimed {
                loop {
                    self.drain();
                    // SAFETY: held and drained.
                    if !unsafe { self.mailbox.release() } {
                        break;
                    }
                }
            }
        }
    }

    fn block() -> NonNull<u8> {
        NonNull::from(Box::leak(Box::new([0usize; 2]))).cast()
    }

    fn heap() -> Arc<Heap> {
        Arc::new(Heap {
            mailbox: Mailbox::owned(),
            freed: UnsafeCell::new(Vec::new()),
        })
    }

    /// After the model: every block delivered exactly once, nothing left in the mailbox.
    fn assert_all_home(heap: &Heap, blocks: Vec<usize>) {
        assert!(!heap.mailbox.has_mail(), "a block was stranded");
        let mut expected = blocks.clone();
        expected.sort_unstable();
        heap.freed
            .with(|freed| assert_eq!(unsafe { &*freed }, &expected));
        for addr in blocks {
            // SAFETY: each block was leaked by `block()` and is freed once here.
            drop(unsafe { Box::from_raw(ptr::with_exposed_provenance_mut::<[usize; 2]>(addr)) });
        }
    }

    fn spawn_sender(heap: &Arc<Heap>, addr: usize) -> thread::JoinHandle<()> {
        let heap = Arc::clone(heap);
        thread::spawn(move || {
            heap.send(NonNull::new(ptr::with_exposed_provenance_mut(addr)).unwrap())
        })
    }

    /// The owner takes its mail and exits while a sender posts: the block is delivered exactly
    /// once, by one holder at a time, and nothing is left in the mailbox.
    #[test]
    fn a_block_sent_while_the_owner_exits_comes_home_once() {
        loom::model(|| {
            let heap = heap();
            let addr = block().as_ptr().addr();
            let sender = spawn_sender(&heap, addr);
            heap.drain(); // the owner's last slow path
                          // SAFETY: owned and drained.
            if unsafe { heap.mailbox.abandon() } {
                loop {
                    heap.drain();
                    // SAFETY: held and drained.
                    if !unsafe { heap.mailbox.release() } {
                        break;
                    }
                }
            }
            sender.join().unwrap();
            assert!(heap.mailbox.is_abandoned());
            assert_all_home(&heap, vec![addr]);
        });
    }

    /// Two senders post to an abandoned heap at once: each may claim it, never both at a time,
    /// and neither block is left behind.
    #[test]
    fn two_senders_to_an_abandoned_heap_strand_nothing() {
        loom::model(|| {
            let heap = heap();
            // SAFETY: owned, nothing posted.
            assert!(!unsafe { heap.mailbox.abandon() });
            let blocks: Vec<usize> = (0..2).map(|_| block().as_ptr().addr()).collect();
            let senders: Vec<_> = blocks.iter().map(|&a| spawn_sender(&heap, a)).collect();
            for s in senders {
                s.join().unwrap();
            }
            assert!(heap.mailbox.is_abandoned());
            assert_all_home(&heap, blocks);
        });
    }

    /// Two threads adopt and claim an abandoned heap at once: at most one adopts, and a claim
    /// never overlaps an owner.
    #[test]
    fn adoption_and_claims_exclude_each_other() {
        loom::model(|| {
            let heap = heap();
            // SAFETY: owned, empty mailbox.
            assert!(!unsafe { heap.mailbox.abandon() });
            let other = Arc::clone(&heap);
            let adopter = thread::spawn(move || {
                if other.mailbox.try_adopt() {
                    other.drain(); // the new owner's slow path
                    true
                } else {
                    false
                }
            });
            let addr = block().as_ptr().addr();
            heap.send(NonNull::new(ptr::with_exposed_provenance_mut(addr)).unwrap());
            let adopted = adopter.join().unwrap();
            if adopted {
                // The owner takes its mail later, on its slow path.
                heap.drain();
            }
            heap.freed
                .with(|freed| assert_eq!(unsafe { &*freed }, &vec![addr]));
            // SAFETY: leaked above, freed once.
            drop(unsafe { Box::from_raw(ptr::with_exposed_provenance_mut::<[usize; 2]>(addr)) });
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn mail_comes_out_most_recent_first_and_the_box_empties() {
        let mailbox = Mailbox::owned();
        let mut blocks = [[0usize; 2]; 3];
        let ptrs: Vec<NonNull<u8>> = blocks.iter_mut().map(|b| NonNull::from(b).cast()).collect();
        for &p in &ptrs {
            // SAFETY: each block is pointer-aligned, two words wide, given up to the mailbox.
            let posted = unsafe { mailbox.post(p) };
            assert_eq!(posted, Posted::Delivered, "owned: no claim");
        }
        assert!(mailbox.has_mail());
        // SAFETY: we are the owner.
        let taken: Vec<_> = unsafe { mailbox.take_all() }.collect();
        assert_eq!(taken, ptrs.iter().rev().copied().collect::<Vec<_>>());
        assert!(!mailbox.has_mail());
    }

    #[test]
    fn a_post_to_an_abandoned_heap_claims_it_and_a_release_hands_it_back() {
        let mailbox = Mailbox::owned();
        // SAFETY: owned, nothing posted.
        assert!(!unsafe { mailbox.abandon() });
        assert!(mailbox.is_abandoned());
        let mut block = [0usize; 2];
        // SAFETY: a two-word block, given up.
        let posted = unsafe { mailbox.post(NonNull::from(&mut block).cast()) };
        assert_eq!(posted, Posted::Claimed);
        assert!(!mailbox.try_claim(), "held once");
        assert!(!mailbox.try_adopt(), "not adoptable while claimed");
        // SAFETY: held.
        assert_eq!(unsafe { mailbox.take_all() }.count(), 1);
        // SAFETY: held, drained.
        assert!(!unsafe { mailbox.release() });
        assert!(mailbox.try_adopt());
    }
}
