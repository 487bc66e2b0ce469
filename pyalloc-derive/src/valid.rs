//! Stage 3, every semantic check, each error spanned on the token at fault: the generics the
//! trait's safety contract forbids, and attribute values that parsed but are out of range.

use syn::{Error, GenericParam};

use crate::ast::Input;
use crate::attr::{Capacity, Name};
use crate::error::Errors;

/// `pyalloc_core::MAX_FREE_LIST_CAPACITY`. A proc-macro crate cannot link the runtime it
/// generates code for, so the bound is repeated here; the UI test
/// `tests/ui/pass/capacity-at-maximum.rs` fails if the two ever differ.
pub const MAX_FREE_LIST_CAPACITY: u64 = 1 << 20;

/// Runs every check on `input`, pushing each problem to `errors`.
pub fn validate(input: &Input, errors: &mut Errors) {
    if let Some(capacity) = &input.attrs.capacity {
        check_capacity(capacity, errors);
    }
    if let Some(name) = &input.attrs.name {
        check_name(name, errors);
    }
    check_generics(input, errors);
}

/// Lifetimes are fine; type and const parameters are not.
///
/// `FreeListed::free_list_id` must return a `static` that belongs to one type alone, because a
/// list's slots have the layout of the type that created it. The derive declares that static
/// inside the impl, and a `static` inside a generic impl is a single item shared by every
/// instantiation: `Wrapper<u8>` and `Wrapper<[u64; 64]>` would push 8-byte and 512-byte slots on
/// the same list. Lifetimes are erased before layout, so every `Ref<'a>` has the same layout and
/// sharing is sound.
fn check_generics(input: &Input, errors: &mut Errors) {
    let ident = input.ident;
    for param in &input.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            GenericParam::Type(ty) => errors.push(Error::new_spanned(
                param,
                format!(
                    "#[derive(FreeListed)] does not support type parameters such as `{}`: a \
                     `static` inside a generic impl is shared by every instantiation, so all \
                     `{ident}<..>` types would share one free list although their slots differ \
                     in layout; derive it on concrete types instead (a newtype per \
                     instantiation), or create lists at run time with `FreeListKey`",
                    ty.ident
                ),
            )),
            GenericParam::Const(konst) => errors.push(Error::new_spanned(
                param,
                format!(
                    "#[derive(FreeListed)] does not support const parameters such as `{}`: a \
                     `static` inside a generic impl is shared by every instantiation, so all \
                     `{ident}<..>` types would share one free list although their slots differ \
                     in layout; derive it on concrete types instead (a newtype per \
                     instantiation), or create lists at run time with `FreeListKey`",
                    konst.ident
                ),
            )),
        }
    }
}

/// `capacity` is at least 1 and at most [`MAX_FREE_LIST_CAPACITY`].
fn check_capacity(capacity: &Capacity, errors: &mut Errors) {
    let lit = &capacity.lit;
    match lit.base10_parse::<u64>() {
        Ok(0) => errors.push(Error::new_spanned(
            lit,
            "`capacity` must be at least 1: a free list of capacity 0 never keeps a slot; \
             to disable a list at run time use `Heap::set_free_list_capacity::<T>(0)` \
             (or `HeapConfig::free_lists(false)` for every list of a heap)",
        )),
        Ok(value) if value <= MAX_FREE_LIST_CAPACITY => {}
        _ => errors.push(Error::new_spanned(
            lit,
            format!(
                "`capacity` must be at most MAX_FREE_LIST_CAPACITY = 1_048_576 (1 << 20), \
                 found {}: a free list keeps its slots pinned in memory",
                lit.base10_digits()
            ),
        )),
    }
}

/// `name` is not empty.
fn check_name(name: &Name, errors: &mut Errors) {
    if name.lit.value().is_empty() {
        errors.push(Error::new_spanned(
            &name.lit,
            "`name` must not be empty: it labels this list in `Heap::stats()`; \
             leave the key out to use the type's name",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::{parse_quote, DeriveInput};

    fn messages(input: DeriveInput) -> Vec<String> {
        let mut errors = Errors::default();
        let input = Input::from_syn(&input, &mut errors);
        validate(&input, &mut errors);
        errors
            .finish()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn lifetimes_and_where_clauses_pass() {
        let errors = messages(parse_quote! {
            #[free_list(capacity = 1_048_576, name = "R")]
            struct Ref<'a, 'b: 'a>(&'a u8, &'b u8) where 'a: 'b;
        });
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn capacity_bounds() {
        assert!(messages(parse_quote!(
            #[free_list(capacity = 1)]
            struct A;
        ))
        .is_empty());
        let zero = messages(parse_quote!(
            #[free_list(capacity = 0)]
            struct A;
        ));
        assert_eq!(zero.len(), 1);
        assert!(zero[0].contains("set_free_list_capacity"), "{zero:?}");
        for too_big in [
            messages(parse_quote!(
                #[free_list(capacity = 1_048_577)]
                struct A;
            )),
            messages(parse_quote!(
                #[free_list(capacity = 99999999999999999999999)]
                struct A;
            )),
        ] {
            assert_eq!(too_big.len(), 1);
            assert!(
                too_big[0].contains("at most MAX_FREE_LIST_CAPACITY"),
                "{too_big:?}"
            );
        }
    }

    #[test]
    fn every_type_and_const_parameter_is_reported() {
        let errors = messages(parse_quote! {
            #[free_list(capacity = 0, name = "")]
            struct S<'a, T, const N: usize, U: Clone>(&'a [T; N], U);
        });
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].contains("at least 1"));
        assert!(errors[1].contains("must not be empty"));
        assert!(errors[2].contains("type parameters such as `T`"));
        assert!(errors[3].contains("const parameters such as `N`"));
        assert!(errors[4].contains("type parameters such as `U`"));
        assert!(errors[4].contains("all `S<..>` types would share one free list"));
    }
}
