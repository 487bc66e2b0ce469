//! Stage 4 when the input has errors, what the derive writes instead of the impl: one
//! `compile_error!` per problem, and a stub impl of the trait.
//!
//! Without the stub every `Pooled<T>` and `heap.free_list_stats::<T>()` in the user's crate
//! would add "the trait bound `T: FreeListed` is not satisfied" after the real error; with it,
//! the user sees only what is wrong with the derive input.
//!
//! The stub is an `unsafe impl` whose `free_list_id` never returns. That is sound because the
//! `compile_error!`s emitted next to it guarantee the crate never finishes compiling: no code
//! can ever call it.
//!
//! When a `#[free_list(crate = ...)]` could not be read there is no stub: the runtime's path
//! is unknown, and a stub naming `::pyalloc` would add an error of its own wherever the
//! runtime is reached by another name.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Error;

use crate::ast::Input;

/// The errors, as `compile_error!`s, and the stub impl if the runtime's path is known.
pub fn expand(input: &Input, error: Error) -> TokenStream {
    let errors = error.into_compile_error();
    let (Some(free_listed), Some(free_list_id)) = (
        input.runtime_item("FreeListed"),
        input.runtime_item("FreeListId"),
    ) else {
        return errors;
    };
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #errors
        #[automatically_derived]
        unsafe impl #impl_generics #free_listed
            for #ident #ty_generics #where_clause
        {
            const NAME: &'static str = "";
            fn free_list_id() -> &'static #free_list_id {
                ::core::unreachable!("#[derive(FreeListed)] failed to compile")
            }
        }
    }
}
