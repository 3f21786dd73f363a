//! `#[derive(Store)]`: every generated method, on the moka backend.

use std::time::Duration;

use auth_layer::Store;
use auth_layer::backend::{Backend, MokaBackend};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

const SECRET: &str = "a-secret-of-at-least-32-characters!!";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Store)]
#[store(key = "cart:{user_id}", ttl = "30m", encrypt)]
struct Cart {
    user_id: String,
    #[store(index)]
    org_id: String,
    items: Vec<String>,
}

/// Records as a shared backend (Redis, PostgreSQL) keeps them: bytes, serialized and sealed.
/// (In memory, `MokaBackend` keeps typed records as they are.)
#[derive(Clone, Default)]
struct AtRest(MokaBackend);

#[async_trait::async_trait]
impl Backend for AtRest {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, auth_layer::store::StoreError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<(), auth_layer::store::StoreError> {
        self.0.put(key, value, ttl, tags).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, auth_layer::store::StoreError> {
        self.0.update(key, value, ttl, tags).await
    }
    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, auth_layer::store::StoreError> {
        self.0.insert(key, value, ttl, tags).await
    }
    async fn delete(&self, key: &str) -> Result<(), auth_layer::store::StoreError> {
        self.0.delete(key).await
    }
    async fn delete_by_tag(&self, tag: &str) -> Result<u64, auth_layer::store::StoreError> {
        self.0.delete_by_tag(tag).await
    }
    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, auth_layer::store::StoreError> {
        self.0.keys_by_tag(tag).await
    }
}

fn cart(user: &str, org: &str) -> Cart {
    Cart { user_id: user.into(), org_id: org.into(), items: vec![format!("{user}'s book")] }
}

#[tokio::test]
async fn set_get_delete_by_key() {
    let carts = Cart::store();
    carts.set(&cart("u-1", "acme")).await.unwrap();
    assert_eq!(carts.get("u-1").await.unwrap(), Some(cart("u-1", "acme")));
    assert_eq!(carts.get("u-2").await.unwrap(), None);
    carts.delete("u-1").await.unwrap();
    assert_eq!(carts.get("u-1").await.unwrap(), None);
}

#[tokio::test]
async fn key_template_and_ttl_come_from_the_attributes() {
    assert_eq!(cart("u-1", "o").key(), "cart:u-1");
    assert_eq!(Cart::key_from("u-9"), "cart:u-9");
    assert_eq!(Cart::TTL, Some(Duration::from_secs(1800)));
    const { assert!(Cart::ENCRYPT) };
    assert_eq!(Cart::NAME, "Cart");
    assert_eq!(Cart::ORG_ID.field(), "org_id");
}

#[tokio::test]
async fn ttl_can_be_overridden_at_run_time() {
    let carts = Cart::store().with_ttl(Some(Duration::from_millis(50)));
    assert_eq!(carts.ttl(), Some(Duration::from_millis(50)));
    carts.set(&cart("u-1", "acme")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(carts.get("u-1").await.unwrap(), None);
    let forever = Cart::store().with_ttl(None);
    forever.set(&cart("u-2", "acme")).await.unwrap();
    assert!(forever.get("u-2").await.unwrap().is_some());
}

#[tokio::test]
async fn index_finds_and_deletes_exactly_the_matching_records() {
    let carts = Cart::store();
    for (user, org) in [("u-1", "acme"), ("u-2", "acme"), ("u-3", "globex")] {
        carts.set(&cart(user, org)).await.unwrap();
    }
    let mut found: Vec<String> =
        carts.find_by(Cart::ORG_ID, "acme").await.unwrap().into_iter().map(|c| c.user_id).collect();
    found.sort();
    assert_eq!(found, ["u-1", "u-2"]);
    assert_eq!(carts.delete_by(Cart::ORG_ID, "acme").await.unwrap(), 2);
    assert_eq!(carts.get("u-1").await.unwrap(), None);
    assert_eq!(carts.get("u-2").await.unwrap(), None);
    assert!(carts.get("u-3").await.unwrap().is_some());
}

#[tokio::test]
async fn moving_an_index_value_moves_the_record_between_index_entries() {
    let carts = Cart::store();
    carts.set(&cart("u-1", "acme")).await.unwrap();
    carts.set(&cart("u-1", "globex")).await.unwrap();
    assert_eq!(carts.delete_by(Cart::ORG_ID, "acme").await.unwrap(), 0);
    assert_eq!(carts.find_by(Cart::ORG_ID, "globex").await.unwrap().len(), 1);
}

#[tokio::test]
async fn encrypted_records_are_sealed_at_rest_and_do_not_open_under_another_key() {
    let backend = AtRest::default();
    let carts = Cart::store_in(backend.clone(), &[SECRET]);
    carts.set(&cart("u-1", "acme")).await.unwrap();
    let raw = backend.get("cart:u-1").await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("acme"), "sealed at rest");
    // Copy the sealed record under another user's key: it must not open.
    backend.put("cart:u-2", raw.clone(), None, vec![]).await.unwrap();
    assert_eq!(carts.get("u-2").await.unwrap(), None);
    // Another secret does not open it either; rotation (new first, old second) does.
    assert_eq!(
        Cart::store_in(backend.clone(), &["another-secret-another-secret-00000"]).get("u-1").await.unwrap(),
        None
    );
    let rotated = Cart::store_in(backend.clone(), &["another-secret-another-secret-00000", SECRET]);
    assert!(rotated.get("u-1").await.unwrap().is_some());
}

#[tokio::test]
async fn records_that_do_not_decode_are_absent() {
    let backend = AtRest::default();
    let carts = Cart::store_in(backend.clone(), &[SECRET]);
    for garbage in [&b""[..], b"\xff\xfe", b"not sealed", b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        backend.put("cart:bad", Bytes::copy_from_slice(garbage), None, vec![]).await.unwrap();
        assert_eq!(carts.get("bad").await.unwrap(), None);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Store)]
#[store(key = "note:{owner}/{number}")]
struct Note {
    owner: String,
    number: u32,
    #[store(index)]
    #[serde(rename = "tagName")]
    tag: Option<String>,
    text: String,
}

#[tokio::test]
async fn plain_records_keep_a_versioned_envelope_and_older_versions_are_absent() {
    let backend = AtRest::default();
    let notes = Note::store_in(backend.clone(), &[SECRET]);
    assert_eq!(Note::TTL, None);
    let note = Note { owner: "ann".into(), number: 7, tag: Some("x".into()), text: "hi".into() };
    notes.set(&note).await.unwrap();
    let raw = backend.get("note:ann/7").await.unwrap().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["d"]["tagName"], "x", "serde renames apply to what is stored");
    assert_eq!(notes.get(("ann", &7)).await.unwrap(), Some(note.clone()));
    let older = serde_json::json!({"v": 0, "d": json["d"]}).to_string();
    backend.put("note:ann/7", Bytes::from(older), None, vec![]).await.unwrap();
    assert_eq!(notes.get(("ann", &7)).await.unwrap(), None);
}

#[tokio::test]
async fn several_key_fields_and_optional_indexes() {
    let notes = Note::store();
    let tagged = Note { owner: "ann".into(), number: 1, tag: Some("x".into()), text: "a".into() };
    let untagged = Note { owner: "ann".into(), number: 2, tag: None, text: "b".into() };
    notes.set(&tagged).await.unwrap();
    notes.set(&untagged).await.unwrap();
    assert_eq!(tagged.key(), "note:ann/1");
    assert_eq!(notes.find_by(Note::TAG, "x").await.unwrap(), vec![tagged]);
    assert_eq!(notes.delete_by(Note::TAG, &None::<String>).await.unwrap(), 0, "None is not indexed");
    notes.delete(("ann", &2)).await.unwrap();
    assert_eq!(notes.get(("ann", &2)).await.unwrap(), None);
}

mod private {
    use super::*;

    /// Private fields, a generic parameter, a field marked as the key.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Store)]
    #[store(ttl = "7d")]
    pub struct Labelled<T> {
        #[store(key)]
        id: u64,
        #[store(index)]
        owner: String,
        value: T,
    }

    impl<T> Labelled<T> {
        pub fn new(id: u64, owner: &str, value: T) -> Self {
            Self { id, owner: owner.into(), value }
        }
    }
}

#[tokio::test]
async fn generic_structs_with_private_fields_and_a_key_field() {
    use private::Labelled;
    let store = Labelled::<Vec<u8>>::store();
    assert_eq!(Labelled::<Vec<u8>>::TTL, Some(Duration::from_secs(7 * 86_400)));
    let record = Labelled::new(42, "ann", vec![1u8, 2, 3]);
    assert_eq!(record.key(), "Labelled:42");
    store.set(&record).await.unwrap();
    assert_eq!(store.get(&42).await.unwrap(), Some(record));
    assert_eq!(store.delete_by(Labelled::<Vec<u8>>::OWNER, "ann").await.unwrap(), 1);
}

#[test]
fn misuse_is_a_compile_error_with_a_clear_message() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
