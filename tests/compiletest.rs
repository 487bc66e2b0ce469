//! UI tests of `#[derive(FreeListed)]`: every accepted shape compiles and runs, and every
//! rejected input gives the diagnostic recorded in its `.stderr`.
//!
//! Regenerate the `.stderr` files after changing a message with
//! `TRYBUILD=overwrite cargo test -p pyalloc --test compiletest`, then read each diff.

#[test]
#[cfg_attr(miri, ignore = "runs rustc")]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
