//! [`Pooled`]: an owning pointer to a value in a slot of its type's free list.

use core::borrow::{Borrow, BorrowMut};
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::AllocError;

use crate::free_list::{FreeListed, ListSpec};
use crate::heap::Heap;

/// A `T` living in a slot of its free list in `heap`: the layer-3 counterpart of
/// `Box<T, &Heap>`.
///
/// Creating one pops the most recently freed slot of `T`'s list (or takes a layer-2 block when
/// the list is empty); dropping it runs `T`'s destructor and pushes the slot back (or frees it
/// to layer 2 when the list is full). A panic in `T`'s destructor still returns the slot.
///
/// ```
/// use pyalloc::{FreeListed, Heap, Pooled};
///
/// #[derive(FreeListed)]
/// #[free_list(capacity = 100)] // CPython's float free list
/// struct Float(f64);
///
/// let heap = Heap::new();
/// let a = Pooled::new_in(Float(1.5), &heap);
/// let slot = Pooled::as_ptr(&a);
/// drop(a);
/// let b = Pooled::new_in(Float(2.5), &heap);
/// assert_eq!(Pooled::as_ptr(&b), slot); // LIFO: the freed slot is reused at once
/// assert_eq!(b.0, 2.5);
/// assert_eq!(heap.free_list_stats::<Float>().hits, 1);
/// ```
pub struct Pooled<'h, T: FreeListed> {
    ptr: NonNull<T>,
    heap: &'h Heap,
    _owns: PhantomData<T>,
}

impl<'h, T: FreeListed> Pooled<'h, T> {
    /// Moves `value` into a slot of `heap`.
    ///
    /// # Panics
    ///
    /// When the heap cannot supply memory (see [`try_new_in`](Self::try_new_in)).
    #[inline]
    pub fn new_in(value: T, heap: &'h Heap) -> Self {
        match Self::try_new_in(value, heap) {
            Ok(pooled) => pooled,
            Err(_) => out_of_memory(),
        }
    }

    /// Moves `value` into a slot of `heap`, or gives `AllocError` when no memory can be had.
    #[inline]
    pub fn try_new_in(value: T, heap: &'h Heap) -> Result<Self, AllocError> {
        let ptr = if size_of::<T>() == 0 {
            NonNull::dangling()
        } else {
            heap.pop_typed(T::free_list_id(), &const { ListSpec::of::<T>() })?
                .cast::<T>()
        };
        // SAFETY: the slot is valid for writes of `T` (slot layout ⊇ `T`'s layout); a
        // dangling pointer is valid for zero-sized writes.
        unsafe { ptr.as_ptr().write(value) };
        Ok(Pooled {
            ptr,
            heap,
            _owns: PhantomData,
        })
    }

    /// The heap the value lives in.
    pub fn heap(this: &Self) -> &'h Heap {
        this.heap
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
            release_slot::<T>(this.heap, this.ptr);
            value
        }
    }

    /// Gives up ownership without dropping: the value stays in its slot until
    /// [`from_raw`](Self::from_raw) takes it back. For runtimes that manage object lifetimes
    /// themselves (reference counts).
    pub fn into_raw(this: Self) -> NonNull<T> {
        ManuallyDrop::new(this).ptr
    }

    /// Takes back ownership of a value given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `ptr` came from `into_raw` of a `Pooled<T>` of this same `heap`, and is taken back once.
    pub unsafe fn from_raw(ptr: NonNull<T>, heap: &'h Heap) -> Self {
        Pooled {
            ptr,
            heap,
            _owns: PhantomData,
        }
    }
}

/// Returns a slot that holds no live value to its free list.
///
/// # Safety
///
/// `ptr` is a slot of `heap` from `T`'s list (or dangling for a zero-sized `T`), holding no
/// live value.
unsafe fn release_slot<T: FreeListed>(heap: &Heap, ptr: NonNull<T>) {
    if size_of::<T>() != 0 {
        // SAFETY: forwarded contract.
        unsafe {
            heap.push_typed(
                T::free_list_id(),
                &const { ListSpec::of::<T>() },
                ptr.cast(),
            )
        }
    }
}

#[cold]
#[inline(never)]
fn out_of_memory() -> ! {
    panic!("pyalloc: out of memory allocating a pooled value")
}

impl<T: FreeListed> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        /// Returns the slot even if `T`'s destructor panics.
        struct ReturnSlot<'a, T: FreeListed>(&'a Heap, NonNull<T>);
        impl<T: FreeListed> Drop for ReturnSlot<'_, T> {
            #[inline]
            fn drop(&mut self) {
                // SAFETY: runs after the value was dropped (or its drop unwound): the slot
                // holds nothing live.
                unsafe { release_slot::<T>(self.0, self.1) }
            }
        }
        let _return_slot = ReturnSlot(self.heap, self.ptr);
        // SAFETY: the value is live and dropped exactly once, here.
        unsafe { ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

/// The traits an owning pointer to a `T` forwards to the value: `Deref`, `DerefMut`, `AsRef`,
/// `AsMut`, `Borrow`, `BorrowMut`, and the comparisons, hashing and formatting of `T`. Written
/// once for [`Pooled`] and [`PoolBox`](crate::PoolBox), which differ only in where their slot
/// goes back to. The type needs a `ptr: NonNull<T>` field to a live, uniquely owned value.
macro_rules! forward_to_value {
    ($owner:ty) => {
        impl<T: FreeListed> Deref for $owner {
            type Target = T;
            #[inline]
            fn deref(&self) -> &T {
                // SAFETY: the value is live while the owner exists.
                unsafe { self.ptr.as_ref() }
            }
        }

        impl<T: FreeListed> DerefMut for $owner {
            #[inline]
            fn deref_mut(&mut self) -> &mut T {
                // SAFETY: the value is live and uniquely owned.
                unsafe { self.ptr.as_mut() }
            }
        }

        impl<T: FreeListed> AsRef<T> for $owner {
            fn as_ref(&self) -> &T {
                self
            }
        }

        impl<T: FreeListed> AsMut<T> for $owner {
            fn as_mut(&mut self) -> &mut T {
                self
            }
        }

        impl<T: FreeListed> Borrow<T> for $owner {
            fn borrow(&self) -> &T {
                self
            }
        }

        impl<T: FreeListed> BorrowMut<T> for $owner {
            fn borrow_mut(&mut self) -> &mut T {
                self
            }
        }

        impl<T: FreeListed + fmt::Debug> fmt::Debug for $owner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&**self, f)
            }
        }

        impl<T: FreeListed + fmt::Display> fmt::Display for $owner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&**self, f)
            }
        }

        impl<T: FreeListed + PartialEq> PartialEq for $owner {
            fn eq(&self, other: &Self) -> bool {
                **self == **other
            }
        }

        impl<T: FreeListed + Eq> Eq for $owner {}

        impl<T: FreeListed + PartialOrd> PartialOrd for $owner {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                (**self).partial_cmp(&**other)
            }
        }

        impl<T: FreeListed + Ord> Ord for $owner {
            fn cmp(&self, other: &Self) -> Ordering {
                (**self).cmp(&**other)
            }
        }

        impl<T: FreeListed + Hash> Hash for $owner {
            fn hash<H: Hasher>(&self, state: &mut H) {
                (**self).hash(state)
            }
        }
    };
}
pub(crate) use forward_to_value;

forward_to_value!(Pooled<'_, T>);
