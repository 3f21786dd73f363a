#![no_main]
//! Fuzz target: see `auth_layer::fuzz_entry::stored_record`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = auth_layer::fuzz_entry::stored_record(data);
});
