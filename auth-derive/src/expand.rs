//! Code generation for `#[derive(Store)]`: the `Store` impl, one `Index` constant per indexed
//! field, and the `store`/`store_in` constructors. Everything is wrapped in `const _: () = {}`
//! and names paths absolutely.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Lifetime, Type};

use crate::ast::{Input, KeyPart};

pub(crate) fn derive(input: &Input<'_>) -> syn::Result<TokenStream> {
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates: Vec<TokenStream> =
        where_clause.map(|w| w.predicates.iter().map(|p| quote!(#p)).collect()).unwrap_or_default();
    predicates.push(quote! {
        Self: ::auth_layer::__private::serde::Serialize
            + ::auth_layer::__private::serde::de::DeserializeOwned
            + ::core::marker::Send
            + ::core::marker::Sync
            + 'static
    });

    let name = &input.name;
    let ttl = match input.ttl {
        Some(d) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote!(::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)))
        }
        None => quote!(::core::option::Option::None),
    };
    let encrypt = input.encrypt;

    // The key: a format string and its fields.
    let mut format = String::new();
    let mut key_fields = Vec::new();
    for part in &input.key.parts {
        match part {
            KeyPart::Text(text) => format.push_str(&text.replace('{', "{{").replace('}', "}}")),
            KeyPart::Field(i) => {
                format.push_str("{}");
                key_fields.push(&input.fields[*i]);
            }
        }
    }
    // Read on every lookup: one allocation, sized for the text and ids of up to 64 bytes (a
    // session id is 43), where `format!` starts small and grows.
    let capacity = literal_len(&input.key.parts) + 64 * key_fields.len();
    let lifetime = Lifetime::new("'__key", Span::call_site());
    let key_types: Vec<TokenStream> = key_fields.iter().map(|f| borrowed(&f.ty, &lifetime)).collect();
    let key_type = match key_types.as_slice() {
        [single] => single.clone(),
        many => quote!((#(#many,)*)),
    };
    let key_idents: Vec<_> = key_fields.iter().map(|f| &f.ident).collect();
    let key_vars: Vec<_> = key_fields.iter().enumerate().map(|(i, _)| format_ident!("__key_{}", i)).collect();
    let destructure = match key_vars.as_slice() {
        [single] => quote!(let #single = key;),
        many => quote!(let (#(#many,)*) = key;),
    };

    let index_pushes = input.indexes.iter().map(|i| {
        let field = &input.fields[*i];
        let (field_ident, ty) = (&field.ident, &field.ty);
        let label = field_ident.to_string();
        // Spanned at the field's type: a type that cannot be indexed is reported there.
        let value = quote_spanned! {ty.span()=>
            <#ty as ::auth_layer::record::Indexable>::index_value(&self.#field_ident)
        };
        quote! {
            if let ::core::option::Option::Some(value) = #value {
                out.push(::std::format!("{}={}", #label, value));
            }
        }
    });
    let index_consts = input.indexes.iter().map(|i| {
        let field = &input.fields[*i];
        let label = field.ident.to_string();
        let constant = format_ident!("{}", label.trim_start_matches("r#").to_uppercase(), span = field.ident.span());
        let doc = format!("The index on `{label}`, for `delete_by` and `find_by`.");
        quote! {
            #[doc = #doc]
            pub const #constant: ::auth_layer::record::Index<Self> = ::auth_layer::record::Index::new(#label);
        }
    });

    let codec = input.codec.as_ref().map(|codec| {
        quote! {
            fn to_stored(&self) -> ::core::result::Result<::std::vec::Vec<u8>, ::auth_layer::StoreError> {
                #codec::encode(self)
            }

            fn from_stored(bytes: &[u8]) -> ::core::result::Result<Self, ::auth_layer::Cause> {
                #codec::decode(bytes).map_err(|err| {
                    let err: ::std::boxed::Box<dyn ::std::error::Error + ::core::marker::Send + ::core::marker::Sync> =
                        ::core::convert::Into::into(err);
                    ::std::sync::Arc::from(err)
                })
            }
        }
    });

    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::auth_layer::record::Store for #ident #ty_generics where #(#predicates,)* {
                type Key<#lifetime> = #key_type where Self: #lifetime;
                const NAME: &'static str = #name;
                const TTL: ::core::option::Option<::core::time::Duration> = #ttl;
                const ENCRYPT: bool = #encrypt;

                fn key(&self) -> ::std::string::String {
                    let mut key = ::std::string::String::with_capacity(#capacity);
                    // Writing to a String cannot fail.
                    let _ = ::core::fmt::Write::write_fmt(&mut key, ::core::format_args!(#format, #(self.#key_idents,)*));
                    key
                }

                fn key_from(key: Self::Key<'_>) -> ::std::string::String {
                    #destructure
                    let mut key = ::std::string::String::with_capacity(#capacity);
                    let _ = ::core::fmt::Write::write_fmt(&mut key, ::core::format_args!(#format, #(#key_vars,)*));
                    key
                }

                fn index_entries(&self, out: &mut ::std::vec::Vec<::std::string::String>) {
                    #(#index_pushes)*
                }

                #codec
            }

            #[automatically_derived]
            impl #impl_generics #ident #ty_generics where #(#predicates,)* {
                #(#index_consts)*

                /// A typed store of these records in this process's memory (moka), kept as they
                /// are: nothing is serialized or sealed there (sealing protects nothing in the
                /// memory of the process that holds the key). `store_in` takes the secrets that
                /// seal records in a shared backend.
                pub fn store() -> ::auth_layer::record::TypedStore<Self, ::auth_layer::backend::MokaBackend> {
                    ::auth_layer::record::TypedStore::in_memory()
                }

                /// A typed store of these records in `backend`, sealed with a key derived from
                /// the first of `secrets` when the record is `encrypt`ed.
                pub fn store_in<__B: ::auth_layer::backend::Backend, __S: ::core::convert::AsRef<[u8]>>(
                    backend: __B,
                    secrets: &[__S],
                ) -> ::auth_layer::record::TypedStore<Self, __B> {
                    ::auth_layer::record::TypedStore::new(backend, secrets)
                }
            }
        };
    })
}

/// How `get` takes a key field of type `ty`: `&str` for `String`, `&T` otherwise.
fn borrowed(ty: &Type, lifetime: &Lifetime) -> TokenStream {
    if let Type::Path(path) = ty
        && path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "String" && s.arguments.is_none())
    {
        return quote!(&#lifetime str);
    }
    quote!(&#lifetime #ty)
}

/// The bytes of a key's fixed text.
fn literal_len(parts: &[KeyPart]) -> usize {
    parts.iter().map(|part| if let KeyPart::Text(text) = part { text.len() } else { 0 }).sum()
}
