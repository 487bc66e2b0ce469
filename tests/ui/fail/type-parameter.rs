// The only error is the derive's: the type's uses below raise no "FreeListed is not
// implemented" (the fallback writes a stub impl).
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 10)]
struct Wrapper<'a, T: Clone>(&'a T);

fn main() {
    let heap = Heap::new();
    let value = 1u8;
    let pooled = Pooled::new_in(Wrapper(&value), &heap);
    let _ = heap.free_list_stats::<Wrapper<u8>>();
    drop(pooled);
}
