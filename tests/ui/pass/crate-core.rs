// A runtime that depends on pyalloc-core and the derive but not on the facade names the core's
// hidden module, which exports the same items as the facade's.
use pyalloc_core::{FreeListed, Heap, Pooled};

#[derive(pyalloc_derive::FreeListed)]
#[free_list(crate = "pyalloc_core", capacity = 2, name = "PyFloatObject")]
struct Float(f64);

fn main() {
    assert_eq!((Float::CAPACITY, Float::NAME), (2, "PyFloatObject"));
    let heap = Heap::new();
    drop(Pooled::new_in(Float(1.0), &heap));
    assert_eq!(heap.free_list_stats::<Float>().len, 1);
}
