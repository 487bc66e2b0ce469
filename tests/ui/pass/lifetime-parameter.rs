// Lifetime parameters (with bounds and a where clause) are accepted: they do not change the
// layout, so every instantiation shares one list.
use pyalloc::{FreeListed, Heap, Pooled};

#[derive(FreeListed)]
#[free_list(capacity = 10)]
struct Token<'src, 'a: 'src>
where
    'src: 'a,
{
    text: &'src str,
    kind: &'a str,
}

fn list_of<'x>(_: &Token<'x, 'x>) -> *const pyalloc::FreeListId {
    Token::<'x, 'x>::free_list_id()
}

fn main() {
    let source = String::from("let x = 1;");
    let heap = Heap::new();
    let token = Pooled::new_in(
        Token {
            text: &source[4..5],
            kind: "ident",
        },
        &heap,
    );
    assert_eq!((token.text, token.kind), ("x", "ident"));
    assert!(core::ptr::eq(
        list_of(&token),
        Token::<'static, 'static>::free_list_id()
    ));
    drop(token);
    let stats = heap.free_list_stats::<Token<'static, 'static>>();
    assert_eq!((stats.pushes, stats.capacity), (1, 10));
}
