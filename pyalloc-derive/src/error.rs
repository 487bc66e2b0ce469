//! The bottom of the pipeline: [`Errors`], where every stage (`ast`, `attr`, `valid`) adds
//! what it finds and `expand` reads them back. It imports no other module of the crate, so
//! the stages above it import only forwards.

use syn::Error;

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
