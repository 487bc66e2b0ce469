//! Stage 2, parsing `#[free_list(capacity = <integer>, name = "<string>", crate = "<path>")]`:
//! the syntax only, which includes reading the path inside `crate`'s string. Whether a
//! capacity is in range or a name is empty is for `valid`.
//!
//! Each attribute is parsed as a comma-separated list of `key = value` entries, and each entry
//! is checked on its own, so a typo in one key does not hide an error in the next.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Data, Error, Expr, ExprLit, ExprUnary, Field, Ident, Lit, LitInt, LitStr,
    MacroDelimiter, Meta, Path, Result, Token, UnOp,
};

use crate::error::Errors;

/// The keys `#[free_list(...)]` knows, in the order the messages list them.
const KEYS: &[&str] = &["capacity", "name", "crate"];

/// The attribute written out, for messages about malformed ones.
const SYNTAX: &str = "`#[free_list(capacity = <integer>, name = \"<string>\")]`, each key optional";

/// Integer types a `capacity` literal may carry as a suffix (`100usize`).
const INT_SUFFIXES: &[&str] = &[
    "", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
];

/// The keys set by every `#[free_list(...)]` of a type.
#[derive(Default)]
pub struct Attrs {
    /// `capacity = N`.
    pub capacity: Option<Capacity>,
    /// `name = "..."`.
    pub name: Option<Name>,
    /// `crate = "path"`.
    pub crate_path: Option<CratePath>,
    /// A `crate` key was written but its value could not be read: where the runtime is, is
    /// unknown, so the fallback must not name `::pyalloc` (it may not be a dependency).
    pub crate_path_unreadable: bool,
}

/// `capacity = N`: syntactically an integer literal; its value is checked by `valid`.
pub struct Capacity {
    /// `N`, with its span.
    pub lit: LitInt,
}

/// `name = "..."`.
pub struct Name {
    /// The string, with its span.
    pub lit: LitStr,
}

/// `crate = "path"`: where the generated code finds the runtime's `__private` module.
pub struct CratePath {
    /// The string, with its span.
    pub lit: LitStr,
    /// The path read from the string; every token of it carries the string's span.
    pub path: Path,
}

/// One entry of the list, as written: `key = value`, or `key` followed by something else
/// (`capacity`, `capacity(100)`), kept whole so its error can cover it.
///
/// Parsed by hand rather than as a `syn::Meta` because `Meta` reads `-1` as a single literal
/// whose span covers only the `-`; as an expression it is a negation spanning both tokens.
struct Entry {
    key: Ident,
    value: Option<(Token![=], Expr)>,
    /// What follows a key that has no `= value`, up to the next comma.
    rest: TokenStream,
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> Result<Self> {
        let key = input.call(Ident::parse_any)?;
        if input.peek(Token![=]) {
            let eq = input.parse()?;
            let value = input.parse()?;
            return Ok(Entry {
                key,
                value: Some((eq, value)),
                rest: TokenStream::new(),
            });
        }
        let mut rest = TokenStream::new();
        while !input.is_empty() && !input.peek(Token![,]) {
            rest.extend([input.parse::<TokenTree>()?]);
        }
        Ok(Entry {
            key,
            value: None,
            rest,
        })
    }
}

impl ToTokens for Entry {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.key.to_tokens(tokens);
        if let Some((eq, value)) = &self.value {
            eq.to_tokens(tokens);
            value.to_tokens(tokens);
        }
        self.rest.to_tokens(tokens);
    }
}

/// Reads every `#[free_list(...)]` among `attrs`, pushing each syntax error to `errors` and
/// keeping the keys that parsed.
pub fn get(attrs: &[Attribute], errors: &mut Errors) -> Attrs {
    let mut out = Attrs::default();
    for attr in attrs
        .iter()
        .filter(|attr| attr.path().is_ident("free_list"))
    {
        if let Err(error) = parse_attribute(attr, &mut out, errors) {
            errors.push(error);
        }
    }
    out
}

/// One `#[free_list(...)]`: errors in the attribute's shape are returned (nothing inside can
/// be read then); errors in single entries are pushed and the other entries still read.
fn parse_attribute(attr: &Attribute, out: &mut Attrs, errors: &mut Errors) -> Result<()> {
    let list = match &attr.meta {
        Meta::List(list) => list,
        Meta::Path(_) => {
            return Err(Error::new_spanned(
                attr,
                format!("`#[free_list]` needs a list of keys: expected {SYNTAX}"),
            ))
        }
        Meta::NameValue(_) => {
            return Err(Error::new_spanned(
                attr,
                format!("`#[free_list = ...]` is not supported: expected {SYNTAX}"),
            ))
        }
    };
    if !matches!(list.delimiter, MacroDelimiter::Paren(_)) {
        return Err(Error::new_spanned(
            attr,
            format!("`#[free_list]` takes its keys in parentheses: expected {SYNTAX}"),
        ));
    }
    if list.tokens.is_empty() {
        return Err(Error::new_spanned(
            attr,
            format!("`#[free_list()]` is empty: expected {SYNTAX}, or remove the attribute"),
        ));
    }
    let entries = list.parse_args_with(Punctuated::<Entry, Token![,]>::parse_terminated)?;
    for entry in &entries {
        if let Err(error) = parse_entry(entry, out) {
            if entry.key.unraw() == "crate" && out.crate_path.is_none() {
                out.crate_path_unreadable = true;
            }
            errors.push(error);
        }
    }
    Ok(())
}

/// One `key = value` entry.
fn parse_entry(entry: &Entry, out: &mut Attrs) -> Result<()> {
    let key = entry.key.unraw().to_string();
    let (example, already) = if key == "capacity" {
        (
            "capacity = 100",
            out.capacity.as_ref().map(|c| c.lit.to_token_stream()),
        )
    } else if key == "name" {
        (
            "name = \"PyFloatObject\"",
            out.name.as_ref().map(|n| n.lit.to_token_stream()),
        )
    } else if key == "crate" {
        (
            "crate = \"pyalloc\"",
            out.crate_path.as_ref().map(|c| c.lit.to_token_stream()),
        )
    } else {
        return Err(unknown_key(&entry.key));
    };
    let Some((_, value)) = &entry.value else {
        return Err(Error::new_spanned(
            entry,
            format!("expected `{key} = ...`, like `{example}`"),
        ));
    };
    if let Some(first) = already {
        return Err(Error::new_spanned(
            entry,
            format!("duplicate `{key}` in #[free_list]: it is already set to `{first}`"),
        ));
    }
    if key == "capacity" {
        out.capacity = Some(Capacity {
            lit: capacity_literal(value)?,
        });
    } else if key == "name" {
        out.name = Some(Name {
            lit: name_literal(value)?,
        });
    } else {
        out.crate_path = Some(crate_path(value)?);
    }
    Ok(())
}

/// The literal of `capacity = N`, or an error saying what `N` must be.
fn capacity_literal(value: &Expr) -> Result<LitInt> {
    match value {
        // A literal passed through a `macro_rules!` `$n:expr` arrives in an invisible group.
        Expr::Group(group) => capacity_literal(&group.expr),
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => {
            if INT_SUFFIXES.contains(&lit.suffix()) {
                Ok(lit.clone())
            } else {
                Err(Error::new_spanned(
                    lit,
                    format!(
                        "`capacity` must be an integer literal, like `capacity = 100`; \
                         `{}` is not an integer suffix",
                        lit.suffix()
                    ),
                ))
            }
        }
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_), ..
        }) => Err(Error::new_spanned(
            value,
            "`capacity` cannot be negative: it is how many freed slots the list keeps, \
             from 1 to 1_048_576",
        )),
        Expr::Lit(_) => Err(Error::new_spanned(
            value,
            "`capacity` must be an integer literal, like `capacity = 100`",
        )),
        _ => Err(Error::new_spanned(
            value,
            "`capacity` must be an integer literal, like `capacity = 100`: a derive sees \
             tokens, not values, so it cannot evaluate a constant or an expression",
        )),
    }
}

/// The literal of `name = "..."`, or an error.
fn name_literal(value: &Expr) -> Result<LitStr> {
    match value {
        Expr::Group(group) => name_literal(&group.expr),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit.clone()),
        _ => Err(Error::new_spanned(
            value,
            "`name` must be a string literal, like `name = \"PyFloatObject\"`",
        )),
    }
}

/// The path of `crate = "path"`, read from the string, or an error.
///
/// The path is read in module style (`a::b`, with an optional leading `::` and `crate`, `self`
/// or `super` segments, but no generic arguments): it names a crate or a module, never a type.
/// `LitStr::parse_with` gives every token of it the string's span, so an error about the path,
/// ours or rustc's, points at the string.
fn crate_path(value: &Expr) -> Result<CratePath> {
    let lit = match value {
        Expr::Group(group) => return crate_path(&group.expr),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit,
        _ => {
            return Err(Error::new_spanned(
                value,
                "`crate` must be a string literal holding a path, like `crate = \"pyalloc\"`",
            ))
        }
    };
    let written = lit.value();
    if written.trim().is_empty() {
        return Err(Error::new_spanned(
            lit,
            "`crate` must not be empty: it is the path of the pyalloc crate, like \
             `crate = \"pyalloc\"`; leave the key out to use `::pyalloc`",
        ));
    }
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Ok(CratePath {
            lit: lit.clone(),
            path,
        }),
        Err(error) => {
            let hint = if written.contains('-') {
                "; in a path, a crate name's `-` is written `_`"
            } else {
                ""
            };
            Err(Error::new_spanned(
                lit,
                format!(
                    "`crate` must be a path, like `crate = \"pyalloc\"` or \
                     `crate = \"::runtime::pyalloc\"`: `{written}` is not one ({error}){hint}"
                ),
            ))
        }
    }
}

/// The error for a key not in [`KEYS`], suggesting the nearest one when it looks like a typo.
fn unknown_key(key: &Ident) -> Error {
    let written = key.unraw().to_string();
    let suggestion = KEYS
        .iter()
        .map(|known| (edit_distance(&written, known), known))
        .filter(|&(distance, _)| distance <= 2)
        .min()
        .map(|(_, known)| format!(" (did you mean `{known}`?)"))
        .unwrap_or_default();
    Error::new_spanned(
        key,
        format!(
            "unknown key `{written}` in #[free_list]{suggestion}; the keys are `capacity`, \
             `name` and `crate`"
        ),
    )
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `#[free_list]` on a field or a variant: the derive would never read it, so say so rather
/// than ignore it.
pub fn reject_misplaced(data: &Data, errors: &mut Errors) {
    match data {
        Data::Struct(data) => reject_on_fields(&data.fields, errors),
        Data::Union(data) => reject_on_fields(&data.fields.named, errors),
        Data::Enum(data) => {
            for variant in &data.variants {
                for attr in misplaced(&variant.attrs) {
                    errors.push(Error::new_spanned(
                        attr,
                        "`#[free_list]` belongs on the enum, not on a variant: \
                         every variant shares the enum's one list",
                    ));
                }
                reject_on_fields(&variant.fields, errors);
            }
        }
    }
}

fn reject_on_fields<'f>(fields: impl IntoIterator<Item = &'f Field>, errors: &mut Errors) {
    for field in fields {
        for attr in misplaced(&field.attrs) {
            errors.push(Error::new_spanned(
                attr,
                "`#[free_list]` belongs on the type, not on a field: \
                 the whole value lives in one slot of one list",
            ));
        }
    }
}

fn misplaced(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("free_list"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn parse(input: syn::DeriveInput) -> (Attrs, Vec<String>) {
        let mut errors = Errors::default();
        let attrs = get(&input.attrs, &mut errors);
        reject_misplaced(&input.data, &mut errors);
        let messages = errors
            .finish()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default();
        (attrs, messages)
    }

    #[test]
    fn reads_both_keys() {
        let (attrs, errors) = parse(parse_quote! {
            #[free_list(capacity = 1_000, name = "PyFloatObject")]
            struct Float(f64);
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(attrs.capacity.unwrap().lit.base10_digits(), "1000");
        assert_eq!(attrs.name.unwrap().lit.value(), "PyFloatObject");
    }

    #[test]
    fn keys_may_be_split_over_attributes_and_other_attributes_are_ignored() {
        let (attrs, errors) = parse(parse_quote! {
            #[free_list(r#capacity = 0x10usize,)]
            #[derive(Debug)]
            #[free_list(name = r"raw")]
            struct Float(f64);
        });
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(attrs.capacity.unwrap().lit.base10_digits(), "16");
        assert_eq!(attrs.name.unwrap().lit.value(), "raw");
    }

    #[test]
    fn no_attribute_means_no_keys() {
        let (attrs, errors) = parse(parse_quote!(
            struct Unit;
        ));
        assert!(errors.is_empty());
        assert!(attrs.capacity.is_none() && attrs.name.is_none() && attrs.crate_path.is_none());
        assert!(!attrs.crate_path_unreadable);
    }

    #[test]
    fn every_bad_entry_is_reported_and_good_ones_kept() {
        let (attrs, errors) = parse(parse_quote! {
            #[free_list(capasity = 1, capacity = 7, capacity = 8, name = 3, colour = "red")]
            struct Float(f64);
        });
        assert_eq!(attrs.capacity.unwrap().lit.base10_digits(), "7");
        assert!(attrs.name.is_none());
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(
            errors[0],
            "unknown key `capasity` in #[free_list] (did you mean `capacity`?); \
             the keys are `capacity`, `name` and `crate`"
        );
        assert_eq!(
            errors[1],
            "duplicate `capacity` in #[free_list]: it is already set to `7`"
        );
        assert!(errors[2].starts_with("`name` must be a string literal"));
        assert_eq!(
            errors[3],
            "unknown key `colour` in #[free_list]; the keys are `capacity`, `name` and `crate`"
        );
    }

    #[test]
    fn capacity_values_that_are_not_integer_literals() {
        let cases: [(syn::DeriveInput, &str); 7] = [
            (
                parse_quote!(
                    #[free_list(capacity = "100")]
                    struct A;
                ),
                "`capacity` must be an integer literal, like `capacity = 100`",
            ),
            (
                parse_quote!(
                    #[free_list(capacity = 1.5)]
                    struct A;
                ),
                "`capacity` must be an integer literal, like `capacity = 100`",
            ),
            (
                parse_quote!(
                    #[free_list(capacity = -1)]
                    struct A;
                ),
                "`capacity` cannot be negative",
            ),
            (
                parse_quote!(
                    #[free_list(capacity = -(1))]
                    struct A;
                ),
                "`capacity` cannot be negative",
            ),
            (
                parse_quote!(
                    #[free_list(capacity = CAP)]
                    struct A;
                ),
                "cannot evaluate a constant or an expression",
            ),
            (
                parse_quote!(
                    #[free_list(capacity = 100abc)]
                    struct A;
                ),
                "`abc` is not an integer suffix",
            ),
            (
                parse_quote!(
                    #[free_list(capacity)]
                    struct A;
                ),
                "expected `capacity = ...`, like `capacity = 100`",
            ),
        ];
        for (input, expected) in cases {
            let (attrs, errors) = parse(input);
            assert!(attrs.capacity.is_none(), "{expected}: {errors:?}");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains(expected),
                "{:?} lacks {expected:?}",
                errors[0]
            );
        }
    }

    #[test]
    fn crate_is_read_as_a_module_path() {
        for (input, expected) in [
            (
                parse_quote!(
                    #[free_list(crate = "renamed")]
                    struct A;
                ),
                "renamed",
            ),
            (
                parse_quote!(
                    #[free_list(crate = r"::runtime :: pyalloc")]
                    struct A;
                ),
                ":: runtime :: pyalloc",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "crate::reexports")]
                    struct A;
                ),
                "crate :: reexports",
            ),
        ] {
            let (attrs, errors) = parse(input);
            assert!(errors.is_empty(), "{errors:?}");
            assert!(!attrs.crate_path_unreadable);
            let krate = attrs.crate_path.unwrap();
            assert_eq!(krate.path.to_token_stream().to_string(), expected);
        }
    }

    #[test]
    fn crate_values_that_are_not_paths() {
        let cases: [(syn::DeriveInput, &str); 7] = [
            (
                parse_quote!(
                    #[free_list(crate = pyalloc)]
                    struct A;
                ),
                "`crate` must be a string literal holding a path, like `crate = \"pyalloc\"`",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "")]
                    struct A;
                ),
                "`crate` must not be empty",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "  ")]
                    struct A;
                ),
                "`crate` must not be empty",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "pyalloc-core")]
                    struct A;
                ),
                "`pyalloc-core` is not one (unexpected token); in a path, a crate name's `-` \
                 is written `_`",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "pyalloc::")]
                    struct A;
                ),
                "`pyalloc::` is not one (unexpected end of input, expected path segment after `::`)",
            ),
            (
                parse_quote!(
                    #[free_list(crate = "runtime::<u8>")]
                    struct A;
                ),
                "`runtime::<u8>` is not one",
            ),
            (
                parse_quote!(
                    #[free_list(crate)]
                    struct A;
                ),
                "expected `crate = ...`, like `crate = \"pyalloc\"`",
            ),
        ];
        for (input, expected) in cases {
            let (attrs, errors) = parse(input);
            assert!(attrs.crate_path.is_none(), "{expected}: {errors:?}");
            assert!(attrs.crate_path_unreadable, "{expected}");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains(expected),
                "{:?} lacks {expected:?}",
                errors[0]
            );
        }
    }

    #[test]
    fn a_duplicate_crate_keeps_the_first_path() {
        let (attrs, errors) = parse(parse_quote! {
            #[free_list(crate = "first")]
            #[free_list(crate = "second")]
            struct A;
        });
        assert_eq!(
            errors,
            ["duplicate `crate` in #[free_list]: it is already set to `\"first\"`"]
        );
        assert!(!attrs.crate_path_unreadable);
        assert_eq!(attrs.crate_path.unwrap().lit.value(), "first");
        // A readable `crate` after an unreadable one still gives the runtime's path.
        let (attrs, errors) = parse(parse_quote! {
            #[free_list(crate = 1, crate = "second")]
            struct A;
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(attrs.crate_path.unwrap().lit.value(), "second");
    }

    #[test]
    fn a_literal_from_a_macro_expression_is_accepted() {
        let lit: LitInt = parse_quote!(42);
        let grouped = Expr::Group(syn::ExprGroup {
            attrs: Vec::new(),
            group_token: Default::default(),
            expr: Box::new(parse_quote!(#lit)),
        });
        assert_eq!(capacity_literal(&grouped).unwrap().base10_digits(), "42");
    }

    #[test]
    fn malformed_attributes() {
        let cases: [(syn::DeriveInput, &str); 4] = [
            (
                parse_quote!(
                    #[free_list]
                    struct A;
                ),
                "`#[free_list]` needs a list of keys",
            ),
            (
                parse_quote!(
                    #[free_list = 3]
                    struct A;
                ),
                "`#[free_list = ...]` is not supported",
            ),
            (
                parse_quote!(
                    #[free_list[capacity = 3]]
                    struct A;
                ),
                "takes its keys in parentheses",
            ),
            (
                parse_quote!(
                    #[free_list()]
                    struct A;
                ),
                "`#[free_list()]` is empty",
            ),
        ];
        for (input, expected) in cases {
            let (_, errors) = parse(input);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains(expected),
                "{:?} lacks {expected:?}",
                errors[0]
            );
        }
    }

    #[test]
    fn misplaced_attributes_on_fields_and_variants() {
        let (_, errors) = parse(parse_quote! {
            enum E {
                #[free_list(capacity = 1)]
                A { #[free_list(capacity = 2)] x: u8 },
                B(#[free_list(name = "b")] u8),
            }
        });
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("not on a variant"));
        assert!(errors[1].contains("not on a field"));
        assert!(errors[2].contains("not on a field"));
        let (_, errors) = parse(parse_quote! {
            union U { #[free_list(capacity = 2)] x: u8 }
        });
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("capacity", "capacity"), 0);
        assert_eq!(edit_distance("capcity", "capacity"), 1);
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("", "name"), 4);
        assert_eq!(edit_distance("size", "name"), 3);
    }
}
