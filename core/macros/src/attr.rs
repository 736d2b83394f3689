//! Parsing of the `#[task(...)]` options.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

pub(crate) struct Options {
    pub(crate) name: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) max_retry: Option<u32>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) krate: syn::Path,
}

const KNOWN: &str = "`name`, `queue`, `max_retry`, `timeout`, `crate`";

pub(crate) fn parse(attr: TokenStream) -> syn::Result<Options> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut o =
        Options { name: None, queue: None, max_retry: None, timeout_ms: None, krate: syn::parse_quote!(::conveyor) };
    for pair in pairs {
        let key = pair.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        let value = &pair.value;
        match key.as_str() {
            "name" => o.name = Some(non_empty(value, "name")?),
            "queue" => o.queue = Some(non_empty(value, "queue")?),
            "max_retry" => o.max_retry = Some(int(value)?),
            "timeout" => {
                let s = string(value, "timeout")?;
                let ms = parse_duration_ms(&s).ok_or_else(|| {
                    syn::Error::new_spanned(
                        value,
                        format!("invalid timeout `{s}`: use a positive duration like \"30s\", \"250ms\", \"5m\" or \"1h 30m\""),
                    )
                })?;
                o.timeout_ms = Some(ms);
            }
            "crate" => {
                o.krate = syn::parse_str(&string(value, "crate")?).map_err(|e| syn::Error::new_spanned(value, e))?
            }
            _ => {
                return Err(syn::Error::new_spanned(
                    &pair.path,
                    format!("unknown task option; expected one of {KNOWN}"),
                ))
            }
        }
    }
    Ok(o)
}

fn string(value: &Expr, what: &str) -> syn::Result<String> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.value()),
        _ => Err(syn::Error::new_spanned(value, format!("`{what}` takes a string literal"))),
    }
}

fn non_empty(value: &Expr, what: &str) -> syn::Result<String> {
    let s = string(value, what)?;
    if s.trim().is_empty() {
        return Err(syn::Error::new_spanned(value, format!("`{what}` must not be empty")));
    }
    Ok(s)
}

fn int(value: &Expr) -> syn::Result<u32> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse(),
        _ => Err(syn::Error::new_spanned(value, "`max_retry` takes a whole number, like `max_retry = 5`")),
    }
}

/// A positive duration in whole ms, as `humantime` reads it: `"250ms"`, `"30s"`, `"5m"`,
/// `"2h"`, `"1h 30m"`.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let d = humantime::parse_duration(s).ok()?;
    u64::try_from(d.as_millis()).ok().filter(|ms| *ms > 0)
}
