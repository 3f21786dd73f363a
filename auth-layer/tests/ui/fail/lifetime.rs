use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{id}")]
struct A<'a> {
    id: &'a str,
}

fn main() {}
