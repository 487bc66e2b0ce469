//! Stage 4, writing the impl with `quote!`.
//!
//! The generated impl upholds `FreeListed`'s safety contract ("the returned static belongs to
//! this type alone") because:
//!
//! - `static ID` is declared inside the body of `free_list_id` of this one impl, so no other
//!   item can name it, and every expansion of the derive declares a new one;
//! - the impl has no type or const parameters (`valid` rejects them), so it is not one impl
//!   shared by several types with different layouts; its lifetime parameters, if any, are
//!   erased before layout, so every instantiation has the same layout and may share the list;
//! - a derive runs once per type, and a second `FreeListed` impl for the same type is a
//!   coherence error, so the static belongs to exactly one type.
//!
//! Generated code names the runtime only through the absolute path `::pyalloc::__private`, so
//! it neither depends on the user's imports nor is confused by their own items called
//! `FreeListed`, `FreeListId` or `ID`. With `#[free_list(crate = "path")]` it uses
//! `path::__private` instead, exactly as the user wrote the path (see `Input::runtime_item`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{DeriveInput, LitInt, LitStr};

use crate::ast::Input;
use crate::error::Errors;
use crate::{fallback, valid};

/// The whole derive: parse, check, and write the impl, or the fallback on any error.
pub fn derive(node: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let input = Input::from_syn(node, &mut errors);
    valid::validate(&input, &mut errors);
    match errors.finish() {
        None => impl_free_listed(&input),
        Some(error) => fallback::expand(&input, error),
    }
}

/// `unsafe impl FreeListed` for a validated input.
fn impl_free_listed(input: &Input) -> TokenStream {
    let ident = input.ident;
    let runtime = |item| {
        input
            .runtime_item(item)
            .expect("an input without errors has a readable `crate` path")
    };
    let (free_listed, free_list_id) = (runtime("FreeListed"), runtime("FreeListId"));
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    // Without `capacity`, the trait's default (`DEFAULT_FREE_LIST_CAPACITY`) applies: one
    // source of truth. The literal keeps the user's span and loses any suffix (`100u8` is a
    // fine way to write 100, but `CAPACITY` is a `usize`).
    let capacity = input.attrs.capacity.as_ref().map(|capacity| {
        let value = LitInt::new(capacity.lit.base10_digits(), capacity.lit.span());
        quote!(const CAPACITY: usize = #value;)
    });

    let name = match &input.attrs.name {
        Some(name) => LitStr::new(&name.lit.value(), name.lit.span()),
        // `r#type` is listed as "type".
        None => LitStr::new(&ident.unraw().to_string(), ident.span()),
    };

    quote! {
        #[automatically_derived]
        unsafe impl #impl_generics #free_listed
            for #ident #ty_generics #where_clause
        {
            #capacity
            const NAME: &'static str = #name;
            #[inline]
            fn free_list_id() -> &'static #free_list_id {
                static ID: #free_list_id = #free_list_id::new();
                &ID
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn expand(input: DeriveInput) -> String {
        derive(&input).to_string()
    }

    #[test]
    fn expands_to_the_documented_impl() {
        let expected = quote! {
            #[automatically_derived]
            unsafe impl ::pyalloc::__private::FreeListed for Float {
                const CAPACITY: usize = 100;
                const NAME: &'static str = "Float";
                #[inline]
                fn free_list_id() -> &'static ::pyalloc::__private::FreeListId {
                    static ID: ::pyalloc::__private::FreeListId =
                        ::pyalloc::__private::FreeListId::new();
                    &ID
                }
            }
        };
        let actual = expand(parse_quote! {
            #[free_list(capacity = 100)]
            struct Float(f64);
        });
        assert_eq!(actual, expected.to_string());
    }

    #[test]
    fn crate_replaces_pyalloc_in_every_path() {
        let expected = quote! {
            #[automatically_derived]
            unsafe impl renamed::inner::__private::FreeListed for Float {
                const NAME: &'static str = "Float";
                #[inline]
                fn free_list_id() -> &'static renamed::inner::__private::FreeListId {
                    static ID: renamed::inner::__private::FreeListId =
                        renamed::inner::__private::FreeListId::new();
                    &ID
                }
            }
        };
        let actual = expand(parse_quote! {
            #[free_list(crate = "renamed::inner")]
            struct Float(f64);
        });
        assert_eq!(actual, expected.to_string());
    }

    #[test]
    fn the_stub_uses_the_crate_path_and_is_left_out_when_it_is_unreadable() {
        let actual = expand(parse_quote! {
            #[free_list(capacity = 0, crate = "::renamed")]
            struct Float(f64);
        });
        assert_eq!(actual.matches("compile_error").count(), 1, "{actual}");
        assert!(
            actual.contains("unsafe impl :: renamed :: __private :: FreeListed for Float"),
            "{actual}"
        );
        assert!(!actual.contains("pyalloc"), "{actual}");
        for unreadable in [
            parse_quote! {
                #[free_list(crate = "pyalloc-core")]
                struct Float(f64);
            },
            parse_quote! {
                #[free_list(crate)]
                struct Float(f64);
            },
        ] {
            let actual = expand(unreadable);
            assert_eq!(actual.matches("compile_error").count(), 1, "{actual}");
            assert!(!actual.contains("impl"), "{actual}");
        }
    }

    #[test]
    fn default_capacity_is_left_to_the_trait() {
        let actual = expand(parse_quote!(
            struct Unit;
        ));
        assert!(!actual.contains("CAPACITY"), "{actual}");
        assert!(
            actual.contains(r#"const NAME : & 'static str = "Unit""#),
            "{actual}"
        );
    }

    #[test]
    fn suffix_dropped_name_kept_raw_identifier_unrawed() {
        let actual = expand(parse_quote! {
            #[free_list(capacity = 0x40u8, name = "PyFloatObject")]
            struct r#type;
        });
        assert!(actual.contains("const CAPACITY : usize = 64 ;"), "{actual}");
        assert!(actual.contains(r#""PyFloatObject""#), "{actual}");
        let actual = expand(parse_quote!(
            struct r#type;
        ));
        assert!(actual.contains(r#"= "type""#), "{actual}");
        assert!(actual.contains("for r#type"), "{actual}");
    }

    #[test]
    fn lifetimes_and_where_clause_are_carried() {
        let actual = expand(parse_quote! {
            struct Ref<'a, 'b: 'a> where 'a: 'b { x: &'a u8, y: &'b u8 }
        });
        assert!(
            actual.contains("unsafe impl < 'a , 'b : 'a > :: pyalloc :: __private :: FreeListed for Ref < 'a , 'b > where 'a : 'b"),
            "{actual}"
        );
    }

    #[test]
    fn errors_expand_to_compile_errors_and_a_stub() {
        let actual = expand(parse_quote! {
            #[free_list(capacity = 0)]
            struct Wrapper<T>(T);
        });
        assert_eq!(actual.matches("compile_error").count(), 2, "{actual}");
        assert!(actual.contains("unreachable"), "{actual}");
        assert!(!actual.contains("static ID"), "{actual}");
    }
}
