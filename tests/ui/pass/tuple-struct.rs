// A tuple struct without `#[free_list]`: the trait's default capacity and the type's name.
use pyalloc::{FreeListed, DEFAULT_FREE_LIST_CAPACITY};

#[derive(FreeListed)]
struct Float(f64);

fn main() {
    assert_eq!(Float::CAPACITY, DEFAULT_FREE_LIST_CAPACITY);
    assert_eq!(Float::CAPACITY, 80);
    assert_eq!(Float::NAME, "Float");
    assert_eq!(Float(0.5).0, 0.5);
}
