// A union.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 16, name = "Bits")]
union Bits {
    int: u64,
    float: f64,
}

fn main() {
    assert_eq!(Bits::CAPACITY, 16);
    assert_eq!(Bits::NAME, "Bits");
    let heap = Heap::new();
    let bits = Pooled::new_in(Bits { float: 1.0 }, &heap);
    // SAFETY: every bit pattern is a valid u64.
    assert_eq!(unsafe { bits.int }, 1.0f64.to_bits());
}
