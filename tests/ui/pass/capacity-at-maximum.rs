// The bounds the derive accepts are the runtime's: 1 and MAX_FREE_LIST_CAPACITY. The derive
// keeps its own copy of the maximum, and this test fails if the two differ. Any integer suffix
// and base are accepted.
use pyalloc::{FreeListed, Heap, Pooled, MAX_FREE_LIST_CAPACITY};

#[derive(FreeListed)]
#[free_list(capacity = 1_048_576)]
struct Largest(u8);

#[derive(FreeListed)]
#[free_list(capacity = 1)]
struct Smallest(u8);

#[derive(FreeListed)]
#[free_list(capacity = 0x40u8)]
struct Hex(u8);

fn main() {
    assert_eq!(Largest::CAPACITY, MAX_FREE_LIST_CAPACITY);
    assert_eq!(Smallest::CAPACITY, 1);
    assert_eq!(Hex::CAPACITY, 64);
    let heap = Heap::new();
    drop(Pooled::new_in(Largest(1), &heap));
    drop(Pooled::new_in(Hex(3), &heap));
    drop([
        Pooled::new_in(Smallest(1), &heap),
        Pooled::new_in(Smallest(2), &heap),
    ]);
    assert_eq!(heap.free_list_stats::<Largest>().capacity, MAX_FREE_LIST_CAPACITY);
    assert_eq!(heap.free_list_stats::<Hex>().capacity, 64);
    let smallest = heap.free_list_stats::<Smallest>();
    assert_eq!((smallest.len, smallest.overflows), (1, 1));
}
