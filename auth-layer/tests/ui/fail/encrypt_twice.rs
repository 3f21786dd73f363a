use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{id}", encrypt, encrypt)]
struct A {
    id: String,
}

fn main() {}
