//! The derive's view of its input: the type's name and generics, and its parsed
//! `#[free_list(...)]` keys, all still holding the syntax nodes they came from so every error
//! can point at the token that caused it.

use syn::{DeriveInput, Error, Generics, Ident};

use crate::attr::{self, Attrs};

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

/// Every error found so far, so the user sees all of them in one build.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    /// Adds one error.
    pub fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// All the errors pushed, as one (syn keeps each message and span), or `None`.
    pub fn finish(self) -> Option<Error> {
        self.0
    }
}
