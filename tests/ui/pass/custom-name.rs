// `name = "..."` sets the name shown in statistics; a raw identifier's default name drops `r#`.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(name = "PyFloatObject")]
struct Float(f64);

#[allow(non_camel_case_types)]
#[derive(FreeListed)]
struct r#type(u32);

fn main() {
    assert_eq!(Float::NAME, "PyFloatObject");
    assert_eq!(Float::CAPACITY, 80);
    assert_eq!(r#type::NAME, "type");
    let heap = Heap::new();
    drop(Pooled::new_in(Float(2.0), &heap));
    drop(Pooled::new_in(r#type(7), &heap));
    let stats = heap.stats();
    let names: Vec<&str> = stats.free_lists().iter().map(|line| line.name).collect();
    assert!(names.contains(&"PyFloatObject"), "{names:?}");
    assert!(names.contains(&"type"), "{names:?}");
}
