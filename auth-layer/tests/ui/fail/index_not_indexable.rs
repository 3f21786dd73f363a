use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{id}")]
struct A {
    id: String,
    #[store(index)]
    tags: Vec<String>,
}

fn main() {}
