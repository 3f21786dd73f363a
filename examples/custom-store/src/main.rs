//! A typed store of the app's own: each user's cart, kept in memory (moka) for 30 minutes,
//! sealed at rest, and indexed by organisation so that a whole organisation's carts can be
//! cleared at once.
//!
//! In an app, the cart's `user_id` is the logged-in user's `sub` (`user.sub()` in a handler);
//! here the program plays both users itself and checks every step, exiting non-zero on failure.

use std::time::Duration;

use auth_layer::Store;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Store)]
#[store(key = "cart:{user_id}", ttl = "30m", encrypt)]
struct Cart {
    user_id: String,
    #[store(index)]
    org_id: String,
    items: Vec<Item>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In this process's memory, records kept as they are. In a shared backend
    // (`Cart::store_in(backend, &[auth_secret])`) they are sealed with a key of this store's own,
    // derived from the app's AUTH_SECRET by HKDF.
    let carts = Cart::store();

    let mut ann = Cart { user_id: "ann".into(), org_id: "acme".into(), items: vec![] };
    ann.items.push(Item { sku: "book-42".into(), quantity: 1 });
    carts.set(&ann).await?;
    carts.set(&Cart { user_id: "bob".into(), org_id: "acme".into(), items: vec![] }).await?;
    carts.set(&Cart { user_id: "cyd".into(), org_id: "globex".into(), items: vec![] }).await?;

    let mut cart = carts.get("ann").await?.ok_or("ann's cart is missing")?;
    cart.items.push(Item { sku: "pen-7".into(), quantity: 3 });
    carts.set(&cart).await?;
    println!("ann's cart: {:?}", carts.get("ann").await?.ok_or("ann's cart is missing")?.items);

    println!("acme's carts: {}", carts.find_by(Cart::ORG_ID, "acme").await?.len());
    let cleared = carts.delete_by(Cart::ORG_ID, "acme").await?;
    println!("cleared {cleared} carts of acme");
    assert_eq!(cleared, 2);
    assert!(carts.get("ann").await?.is_none() && carts.get("bob").await?.is_none());
    assert!(carts.get("cyd").await?.is_some(), "globex's cart stays");

    // A cart for a quick checkout lives 1 second instead of 30 minutes.
    let quick = Cart::store().with_ttl(Some(Duration::from_secs(1)));
    quick.set(&Cart { user_id: "dee".into(), org_id: "acme".into(), items: vec![] }).await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(quick.get("dee").await?.is_none(), "expired");
    println!("custom store example: every step checked");
    Ok(())
}
