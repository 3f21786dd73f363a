use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{id}", ttl = "thirty minutes")]
struct A {
    id: String,
}

fn main() {}
