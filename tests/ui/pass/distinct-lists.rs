// Two derived types, even of the same layout, get lists of their own.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 4)]
struct A(u64);

#[derive(FreeListed)]
#[free_list(capacity = 4)]
struct B(u64);

fn main() {
    assert!(!core::ptr::eq(A::free_list_id(), B::free_list_id()));
    assert_ne!(A::free_list_id().get(), B::free_list_id().get());

    let heap = Heap::new();
    drop(Pooled::new_in(A(1), &heap));
    let a_before = heap.free_list_stats::<A>();
    assert_eq!((a_before.pushes, a_before.len), (1, 1));

    for i in 0..10 {
        drop(Pooled::new_in(B(i), &heap));
    }
    assert_eq!(heap.free_list_stats::<A>(), a_before, "using B moved A's list");
    let b = heap.free_list_stats::<B>();
    assert_eq!((b.pushes, b.hits, b.misses, b.len), (10, 9, 1, 1));

    // A's slot is still A's: the next A reuses it, B's are not touched.
    let a = Pooled::new_in(A(2), &heap);
    assert_eq!(heap.free_list_stats::<A>().hits, 1);
    assert_eq!(heap.free_list_stats::<B>(), b);
    assert_eq!(a.0, 2);
}
