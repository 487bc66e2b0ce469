//! The derive's view of its input: the type's name and generics, and its parsed
//! `#[free_list(...)]` keys, all still holding the syntax nodes they came from so every error
//! can point at the token that caused it.

use syn::{DeriveInput, Generics, Ident};

use crate::attr::{self, Attrs};
use crate::error::Errors;

/// A type being derived.
pub struct Input<'a> {
    /// The item as written; the fallback builds its stub impl from it.
    pub original: &'a DeriveInput,
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
            original: node,
            ident: &node.ident,
            generics: &node.generics,
            attrs,
        }
    }
}
