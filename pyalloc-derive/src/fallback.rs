//! What the derive writes when the input has errors: one `compile_error!` per problem, and a
//! stub impl of the trait.
//!
//! Without the stub every `Pooled<T>` and `heap.free_list_stats::<T>()` in the user's crate
//! would add "the trait bound `T: FreeListed` is not satisfied" after the real error; with it,
//! the user sees only what is wrong with the derive input.
//!
//! The stub is an `unsafe impl` whose `free_list_id` never returns. That is sound because the
//! `compile_error!`s emitted next to it guarantee the crate never finishes compiling: no code
//! can ever call it.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, Error};

/// The errors, as `compile_error!`s, and the stub impl.
pub fn expand(node: &DeriveInput, error: Error) -> TokenStream {
    let ident = &node.ident;
    let (impl_generics, ty_generics, where_clause) = node.generics.split_for_impl();
    let errors = error.into_compile_error();
    quote! {
        #errors
        #[automatically_derived]
        unsafe impl #impl_generics ::pyalloc::__private::FreeListed
            for #ident #ty_generics #where_clause
        {
            const NAME: &'static str = "";
            fn free_list_id() -> &'static ::pyalloc::__private::FreeListId {
                ::core::unreachable!("#[derive(FreeListed)] failed to compile")
            }
        }
    }
}
