// The derived impl drives a real free list: one drop is one push, capacity is the attribute's.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 100)]
struct Float(f64);

fn main() {
    let heap = Heap::new();
    let x = Pooled::new_in(Float(1.5), &heap);
    let slot = Pooled::as_ptr(&x);
    assert_eq!(x.0, 1.5);
    drop(x);
    let stats = heap.free_list_stats::<Float>();
    assert_eq!(stats.pushes, 1);
    assert_eq!(stats.len, 1);
    assert_eq!(stats.capacity, 100);
    let y = Pooled::new_in(Float(2.5), &heap);
    assert_eq!(Pooled::as_ptr(&y), slot);
    assert_eq!(heap.free_list_stats::<Float>().hits, 1);
    heap.check().unwrap();
}
