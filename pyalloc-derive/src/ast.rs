//! Stage 1, the derive's view of its input: the type's name and generics, and its parsed
//! `#[free_list(...)]` keys, all still holding the syntax nodes they came from so every error
//! can point at the token that caused it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{DeriveInput, Generics, Ident};

use crate::attr::{self, Attrs};
use crate::error::Errors;

/// A type being derived.
pub struct Input<'a> {
    /// The type's name (`NAME` defaults to it).
    pub ident: &'a Ident,
    /// Lifetime, type and const parameters and the where clause, as written.
    pub generics: &'a Generics,
    /// The keys of every `#[free_list(...)]` on the type that parsed; keys with syntax errors
    /// are left out (and reported through `errors`).
    pub attrs: Attrs,
}

impl<'a> Input<'a> {
    /// Reads the type and its attributes; every syntax error goes to `errors`.
    pub fn from_syn(node: &'a DeriveInput, errors: &mut Errors) -> Self {
        let attrs = attr::get(&node.attrs, errors);
        attr::reject_misplaced(&node.data, errors);
        Input {
            ident: &node.ident,
            generics: &node.generics,
            attrs,
        }
    }

    /// The path of `item` in the runtime's hidden module, for the generated code:
    /// `::pyalloc::__private::item`, or `path::__private::item` with
    /// `#[free_list(crate = "path")]`. In the latter every token carries the string's span, so
    /// rustc reports a path that does not resolve (or lacks `__private`) at the string rather
    /// than at the derive.
    ///
    /// `None` when a `crate` key was written but could not be read: the runtime's path is
    /// then unknown, and `::pyalloc` may not even be a dependency.
    pub fn runtime_item(&self, item: &str) -> Option<TokenStream> {
        match &self.attrs.crate_path {
            Some(krate) => {
                let span = krate.lit.span();
                let (path, item) = (&krate.path, Ident::new(item, span));
                Some(quote_spanned!(span=> #path::__private::#item))
            }
            None if self.attrs.crate_path_unreadable => None,
            None => {
                let item = Ident::new(item, Span::call_site());
                Some(quote!(::pyalloc::__private::#item))
            }
        }
    }
}
