// `crate = "path"` points the expansion at the runtime under another name: a crate renamed by
// `extern crate`, and a module that re-exports it, as a macro crate built on pyalloc would.
extern crate pyalloc as renamed;

/// What a runtime built on pyalloc would re-export for its users' derives.
mod runtime {
    pub use ::pyalloc as alloc;
}

#[derive(renamed::FreeListed)]
#[free_list(crate = "renamed", capacity = 3)]
struct Float(f64);

#[derive(renamed::FreeListed)]
#[free_list(crate = "crate::runtime::alloc")]
struct Int(i64);

fn main() {
    // The impls are of the facade's one trait, whatever path named it.
    assert_eq!(<Float as renamed::FreeListed>::CAPACITY, 3);
    assert_eq!(<Int as pyalloc::FreeListed>::NAME, "Int");
    let heap = renamed::Heap::new();
    let x = renamed::Pooled::new_in(Float(1.5), &heap);
    let slot = renamed::Pooled::as_ptr(&x);
    drop(x);
    let y = renamed::Pooled::new_in(Float(2.5), &heap);
    assert_eq!(renamed::Pooled::as_ptr(&y), slot);
    drop(renamed::Pooled::new_in(Int(7), &heap));
    assert_eq!(heap.free_list_stats::<Int>().len, 1);
}
