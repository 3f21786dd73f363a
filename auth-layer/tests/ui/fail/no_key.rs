use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(ttl = "1h")]
struct A {
    id: String,
}

fn main() {}
