// The generated code must not depend on, or clash with, names the user's module defines.
#![allow(dead_code)]
use serde::{Deserialize, Serialize};

struct Option;
struct String;
struct Vec;
struct TypedStore;
mod core {}
mod std {}

#[derive(Serialize, Deserialize, auth_layer::Store)]
#[store(key = "a:{id}", ttl = "90s", encrypt)]
struct A {
    id: ::std::string::String,
    #[store(index)]
    group: u32,
}

fn main() {
    let _store = A::store();
    let _index = A::GROUP;
}
