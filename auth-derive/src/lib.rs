//! Derive macros for auth-layer; use them through `auth_layer` (which re-exports them).
//!
//! `#[derive(Store)]` turns a struct into a typed store record: see `auth_layer::record`.

mod ast;
mod expand;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `auth_layer::record::Record` and the constructors `store` and `store_in`.
///
/// Container attributes, in `#[store(...)]`: `key = "prefix:{field}"` (or mark one field
/// `#[store(key)]`), `ttl = "30m"` (a human duration; none means no expiry), `encrypt`,
/// `name = "..."` (the store's name, the struct's name by default). Field attributes: `key`,
/// `index`.
#[proc_macro_derive(Store, attributes(store))]
pub fn derive_store(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    ast::Input::from_syn(&input)
        .and_then(|model| expand::derive(&model))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
