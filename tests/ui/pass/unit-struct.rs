// A unit struct: zero-sized, so `Pooled` never takes a slot for it.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 3)]
struct Marker;

fn main() {
    assert_eq!(Marker::CAPACITY, 3);
    assert_eq!(Marker::NAME, "Marker");
    let heap = Heap::new();
    drop(Pooled::new_in(Marker, &heap));
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_eq!(heap.free_list_stats::<Marker>().pushes, 0);
}
