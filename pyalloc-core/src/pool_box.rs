//! [`PoolBox`]: layer 3 without a lifetime, on the calling thread's heap of [`Global`].

use core::borrow::{Borrow, BorrowMut};
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::AllocError;

use crate::free_list::FreeListed;
use crate::global::Global;
use crate::pooled::forward_to_value;

/// A `T` in a slot of its free list in the calling thread's heap of [`Global`]: the
/// lifetime-free counterpart of [`Pooled`](crate::Pooled), and layer 3's counterpart of
/// `Box<T>`.
///
/// Creating one pops the most recently freed slot of `T`'s list in the calling thread's heap
/// (or takes a block from layer 2); dropping it pushes the slot on the list of the thread that
/// drops it, as CPython 3.13's free-threaded build keeps its free lists per thread. A slot
/// dropped on another thread than the one that made it rests there, and when that list
/// overflows or is emptied, goes home to its own heap: never lost, never handed out twice.
///
/// ```
/// use pyalloc::{FreeListed, PoolBox};
///
/// #[derive(FreeListed, Debug, PartialEq)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let a = PoolBox::new(Point { x: 1.0, y: 2.0 });
/// let slot = PoolBox::as_ptr(&a);
/// drop(a);
/// let b = PoolBox::new(Point { x: 3.0, y: 4.0 });
/// assert_eq!(PoolBox::as_ptr(&b), slot, "LIFO: the freed slot comes back at once");
/// // `Send` when `T` is: it may be dropped on any thread.
/// std::thread::spawn(move || assert_eq!(b.x, 3.0)).join().unwrap();
/// ```
pub struct PoolBox<T: FreeListed> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

// SAFETY: a `PoolBox<T>` owns its `T` uniquely (as `Box<T>` does); its slot may be returned
// on any thread (`Global` sends foreign slots home), so sending it is sending a `T`.
unsafe impl<T: FreeListed + Send> Send for PoolBox<T> {}
// SAFETY: `&PoolBox<T>` gives only `&T`.
unsafe impl<T: FreeListed + Sync> Sync for PoolBox<T> {}

impl<T: FreeListed> PoolBox<T> {
    /// Moves `value` into a slot.
    ///
    /// # Panics
    ///
    /// When no memory can be had (see [`try_new`](Self::try_new)).
    #[inline]
    pub fn new(value: T) -> Self {
        match Self::try_new(value) {
            Ok(boxed) => boxed,
            Err(_) => out_of_memory(),
        }
    }

    /// Moves `value` into a slot, or gives `AllocError` when no memory can be had.
    #[inline]
    pub fn try_new(value: T) -> Result<Self, AllocError> {
        let ptr = if size_of::<T>() == 0 {
            NonNull::dangling()
        } else {
            Global::pop_slot::<T>()?.cast::<T>()
        };
        // SAFETY: the slot is valid for writes of `T` (slot layout ⊇ `T`'s layout); a dangling
        // pointer is valid for zero-sized writes.
        unsafe { ptr.as_ptr().write(value) };
        Ok(PoolBox {
            ptr,
            _owns: PhantomData,
        })
    }

    /// The address of the value.
    pub fn as_ptr(this: &Self) -> NonNull<T> {
        this.ptr
    }

    /// Moves the value out and returns its slot to the free list.
    pub fn into_inner(this: Self) -> T {
        let this = ManuallyDrop::new(this);
        // SAFETY: the value is live; after the read the slot holds nothing and is released.
        unsafe {
            let value = this.ptr.as_ptr().read();
            release_slot(this.ptr);
            value
        }
    }

    /// Gives up ownership without dropping; [`from_raw`](Self::from_raw) takes it back.
    pub fn into_raw(this: Self) -> NonNull<T> {
        ManuallyDrop::new(this).ptr
    }

    /// Takes back ownership of a value given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw` of a `PoolBox<T>`, and is taken back once.
    pub unsafe fn from_raw(ptr: NonNull<T>) -> Self {
        PoolBox {
            ptr,
            _owns: PhantomData,
        }
    }
}

/// Returns a slot that holds no live value to the calling thread's free list for `T`.
///
/// # Safety
///
/// `ptr` is a slot from `Global::pop_slot::<T>` (or dangling for a zero-sized `T`), holding no
/// live value.
#[inline]
unsafe fn release_slot<T: FreeListed>(ptr: NonNull<T>) {
    if size_of::<T>() != 0 {
        // SAFETY: forwarded contract.
        unsafe { Global::push_slot::<T>(ptr.cast()) }
    }
}

#[cold]
#[inline(never)]
fn out_of_memory() -> ! {
    panic!("pyalloc: out of memory allocating a PoolBox")
}

impl<T: FreeListed> Drop for PoolBox<T> {
    #[inline]
    fn drop(&mut self) {
        /// Returns the slot even if `T`'s destructor panics.
        struct ReturnSlot<T: FreeListed>(NonNull<T>);
        impl<T: FreeListed> Drop for ReturnSlot<T> {
            #[inline]
            fn drop(&mut self) {
                // SAFETY: runs after the value was dropped (or its drop unwound).
                unsafe { release_slot(self.0) }
            }
        }
        let _return_slot = ReturnSlot(self.ptr);
        // SAFETY: the value is live and dropped exactly once, here.
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

forward_to_value!(PoolBox<T>);
