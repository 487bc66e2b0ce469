// The expansion uses absolute paths: it needs no imports, and items of the user's called
// `FreeListed`, `FreeListId`, `ID`, `__private` or `core` do not confuse it. It raises no
// warning, not even under `deny(warnings, missing_docs)`, and works on a type inside a function.
#![deny(warnings, missing_docs)]
//! Hygiene.

/// Shadows the runtime's trait name.
pub trait FreeListed {}
/// Shadows the runtime's id type.
pub struct FreeListId;
/// Shadows the static the expansion declares.
pub static ID: u8 = 0;
/// Shadows the hidden module.
pub mod __private {}
/// Shadows `core`.
pub mod core {}

/// A type named like the generated static.
#[derive(pyalloc::FreeListed)]
#[free_list(capacity = 5)]
pub struct ID {
    /// A field.
    pub v: u32,
}

fn main() {
    #[derive(pyalloc::FreeListed)]
    struct Local(u16);

    let heap = pyalloc::Heap::new();
    let a = pyalloc::Pooled::new_in(ID { v: ID.into() }, &heap);
    let b = pyalloc::Pooled::new_in(Local(9), &heap);
    assert_eq!((a.v, b.0), (0, 9));
    assert_eq!(<ID as pyalloc::FreeListed>::CAPACITY, 5);
    assert_eq!(<Local as pyalloc::FreeListed>::NAME, "Local");
    let _: (&dyn FreeListed, FreeListId) = (&(), FreeListId);
}

impl FreeListed for () {}
