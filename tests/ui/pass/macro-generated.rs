// Keys passed through `macro_rules!` fragments (`$n:expr` arrives in an invisible group).
use pyalloc::{FreeListed, Heap, Pooled};

macro_rules! pooled_type {
    ($ty:ident, $capacity:expr, $name:literal) => {
        #[derive(FreeListed)]
        #[free_list(capacity = $capacity, name = $name)]
        struct $ty(u64);
    };
}

pooled_type!(Small, 2, "small");
pooled_type!(Big, 2000, "big");

fn main() {
    assert_eq!((Small::CAPACITY, Small::NAME), (2, "small"));
    assert_eq!((Big::CAPACITY, Big::NAME), (2000, "big"));
    let heap = Heap::new();
    let (s, b) = (Pooled::new_in(Small(1), &heap), Pooled::new_in(Big(2), &heap));
    assert_eq!(s.0 + b.0, 3);
}
