#![no_main]
//! Fuzz target: see `auth_layer::fuzz_entry::cookie_header`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = auth_layer::fuzz_entry::cookie_header(data);
});
