// A struct with named fields and an explicit capacity.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed, Debug, PartialEq)]
#[free_list(capacity = 100)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {
    assert_eq!(<Point as FreeListed>::CAPACITY, 100);
    assert_eq!(<Point as FreeListed>::NAME, "Point");
    let heap = Heap::new();
    let p = Pooled::new_in(Point { x: 1.0, y: 2.0 }, &heap);
    assert_eq!(*p, Point { x: 1.0, y: 2.0 });
    assert_eq!(p.x + p.y, 3.0);
}
