use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "singleton")]
struct A {
    id: String,
}

fn main() {}
