use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{id}", expire = "1h")]
struct A {
    id: String,
}

fn main() {}
