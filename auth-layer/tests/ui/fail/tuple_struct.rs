use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Store)]
#[store(key = "a:{0}")]
struct A(String);

fn main() {}
