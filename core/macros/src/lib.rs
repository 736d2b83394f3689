//! The `#[task]` attribute of [Conveyor](https://crates.io/crates/conveyor). Use it through
//! the `conveyor` crate: `#[conveyor::task]`.
//!
//! ```text
//! #[conveyor::task(name = "email:welcome", queue = "emails", max_retry = 5, timeout = "30s")]
//! async fn send_welcome(args: Welcome) -> Result<(), conveyor::TaskError> { ... }
//! ```
//!
//! The function becomes a unit struct of the same name that implements `conveyor::Task`, so
//! `send_welcome` is the value passed to `client.enqueue(send_welcome, args)` and
//! `worker.register(send_welcome)`, and `send_welcome::call(args)` runs the body directly.

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Defines a task from an `async fn(args: T) -> Result<R, E>` (optionally with a second
/// parameter `ctx: conveyor::TaskContext`). `T` and `R` are serde types; `E` converts into
/// `conveyor::TaskError` (any `std::error::Error` does).
///
/// Options: `name = "…"` (default: the function's name), `queue = "…"` (default `"default"`),
/// `max_retry = N` (default 25), `timeout = "30s"` (`ms`, `s`, `m`, `h`; default none),
/// `crate = "path"` (default `conveyor`).
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let parsed = attr::parse(attr.into()).and_then(|opts| {
        let func = syn::parse2::<syn::ItemFn>(item.clone().into())?;
        expand::expand(opts, func)
    });
    match parsed {
        Ok(tokens) => tokens.into(),
        Err(e) => {
            // Keep the original item so that one error does not cascade into many.
            let mut out: proc_macro2::TokenStream = e.to_compile_error();
            out.extend(proc_macro2::TokenStream::from(item));
            out.into()
        }
    }
}
