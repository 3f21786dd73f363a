use proc_macro::TokenStream;
#[proc_macro_derive(Store, attributes(store))]
pub fn derive_store(_i: TokenStream) -> TokenStream {
    TokenStream::new()
}
