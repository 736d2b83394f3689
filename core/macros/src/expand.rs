//! Expansion of `#[task]` into a unit struct implementing `Task`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use crate::attr::Options;

pub(crate) fn expand(o: Options, f: ItemFn) -> syn::Result<TokenStream> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(sig.fn_token.span(), "#[task] functions must be `async fn`"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(&sig.generics, "#[task] functions cannot be generic"));
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => return Err(syn::Error::new_spanned(r, "#[task] functions cannot take `self`")),
            FnArg::Typed(t) => args.push(t),
        }
    }
    let Some((first, rest)) = args.split_first() else {
        return Err(syn::Error::new(
            sig.paren_token.span.join(),
            "#[task] functions take the arguments as their first parameter, `args: T` (`_: ()` for none), \
             optionally followed by `ctx: TaskContext` and `Data<T>` parameters",
        ));
    };
    check_args_type(&first.ty)?;
    let args_ty = &first.ty;
    let output = result_ok_type(&sig.output, sig.ident.span())?;

    let vis = &f.vis;
    let ident = &sig.ident;
    let attrs = &f.attrs;
    let inputs = &sig.inputs;
    let ret = &sig.output;
    let body = &f.block;
    let krate = &o.krate;
    let name = o.name.unwrap_or_else(|| ident.to_string());
    let queue = o.queue.map(|q| quote!(.queue(#q)));
    let max_retry = o.max_retry.map(|n| quote!(.max_retry(#n)));
    let timeout = o.timeout_ms.map(|ms| quote!(.timeout(#krate::__private::Duration::from_millis(#ms))));
    // Every parameter after the arguments is taken from the attempt's context; the error for a
    // type that cannot be (`FromContext` not implemented) points at that parameter.
    let names: Vec<_> = (0..rest.len()).map(|i| quote::format_ident!("__conveyor_p{}", i)).collect();
    let takes = rest.iter().zip(&names).map(|(p, n)| {
        let ty = &p.ty;
        quote::quote_spanned!(ty.span()=> let #n = <#ty as #krate::FromContext>::from_context(&ctx)?;)
    });
    let required = rest.iter().map(|p| {
        let ty = &p.ty;
        quote::quote_spanned!(ty.span()=> v.extend(<#ty as #krate::FromContext>::required());)
    });

    Ok(quote! {
        #(#attrs)*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, Default)]
        #vis struct #ident;

        impl #ident {
            /// Runs the task's body directly, without a queue.
            #vis async fn call(#inputs) #ret #body
        }

        impl #krate::Task for #ident {
            const NAME: &'static str = #name;
            type Args = #args_ty;
            type Output = #output;

            fn defaults() -> #krate::TaskDefaults {
                #krate::TaskDefaults::new() #queue #max_retry #timeout
            }

            fn required_data() -> #krate::__private::Vec<(::core::any::TypeId, &'static str)> {
                #[allow(unused_mut)]
                let mut v = #krate::__private::Vec::new();
                #(#required)*
                v
            }

            fn run(args: Self::Args, ctx: #krate::TaskContext) -> #krate::BoxFuture<::core::result::Result<Self::Output, #krate::TaskError>> {
                #krate::__private::Box::pin(async move {
                    #(#takes)*
                    let _ = &ctx;
                    Self::call(args #(, #names)*).await.map_err(|e| {
                        #[allow(unused_imports)]
                        use #krate::__private::{ViaBox as _, ViaBoxed as _, ViaInto as _};
                        (&&&#krate::__private::IntoTaskError::new(e)).to_task_error()
                    })
                })
            }
        }
    })
}

/// Refuses, with what to write instead, the argument types that cannot work: a reference (the
/// arguments are decoded from the queue, so they are owned), and `TaskContext` or `Data<T>`
/// first (the arguments come first).
fn check_args_type(ty: &Type) -> syn::Result<()> {
    match ty {
        Type::Reference(r) => {
            let hint = match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => "use `String` instead of `&str`",
                Type::Slice(_) => "use `Vec<T>` instead of `&[T]`",
                _ => "use an owned type",
            };
            Err(syn::Error::new_spanned(
                ty,
                format!("task arguments are decoded from the queue, so they are owned: {hint}"),
            ))
        }
        Type::Path(p)
            if p.path.segments.last().is_some_and(|s| {
                s.ident == "TaskContext"
                    || (s.ident == "Data" && matches!(s.arguments, PathArguments::AngleBracketed(_)))
            }) =>
        {
            Err(syn::Error::new_spanned(
                ty,
                "the task's arguments come first: `async fn f(args: T, ctx: TaskContext)` \
                 (`_: ()` if the task takes none)",
            ))
        }
        _ => Ok(()),
    }
}

/// `T` of a `Result<T, E>` (or any `…::Result<T, …>` alias) return type.
fn result_ok_type(ret: &ReturnType, fn_span: proc_macro2::Span) -> syn::Result<&Type> {
    const MSG: &str =
        "#[task] functions must return `Result<T, E>`, where `T` is serializable and `E` converts into `TaskError`";
    let ReturnType::Type(_, ty) = ret else {
        return Err(syn::Error::new(fn_span, MSG));
    };
    let Type::Path(p) = &**ty else {
        return Err(syn::Error::new_spanned(ty, MSG));
    };
    let last = p.path.segments.last().ok_or_else(|| syn::Error::new_spanned(ty, MSG))?;
    if last.ident != "Result" {
        return Err(syn::Error::new_spanned(ty, MSG));
    }
    match &last.arguments {
        PathArguments::AngleBracketed(a) => match a.args.first() {
            Some(GenericArgument::Type(t)) => Ok(t),
            _ => Err(syn::Error::new_spanned(ty, MSG)),
        },
        _ => Err(syn::Error::new_spanned(ty, MSG)),
    }
}
