// An enum: all variants share the enum's one list.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed, Debug, PartialEq)]
#[free_list(capacity = 7)]
enum Value {
    Int(i64),
    Pair { a: u32, b: u32 },
    None,
}

fn main() {
    assert_eq!(Value::CAPACITY, 7);
    assert_eq!(Value::NAME, "Value");
    let heap = Heap::new();
    let values = [
        Pooled::new_in(Value::Int(-3), &heap),
        Pooled::new_in(Value::Pair { a: 1, b: 2 }, &heap),
        Pooled::new_in(Value::None, &heap),
    ];
    assert_eq!(*values[0], Value::Int(-3));
    assert_eq!(*values[1], Value::Pair { a: 1, b: 2 });
    assert_eq!(*values[2], Value::None);
    drop(values);
    assert_eq!(heap.free_list_stats::<Value>().len, 3);
}
