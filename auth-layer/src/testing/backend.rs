//! The [`Backend`] rules, and [`check_backend`], which checks them.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{OrFail, Outcome, Rule, Runner, ensure, fresh_prefix, join_all};
use crate::backend::Backend;

/// Every rule [`check_backend`] checks, by name, with why it matters.
pub const BACKEND_RULES: &[Rule] = &[
    Rule {
        name: "get_returns_what_put_stored",
        rule: "`get` returns the bytes the last `put` stored, and nothing once the key is deleted; \
               deleting a missing key is not an error. Everything else is built on it.",
    },
    Rule {
        name: "a_read_right_after_a_write_sees_it",
        rule: "a `get` made the moment a `put`, `update`, `delete` or `delete_by_tag` has returned sees \
               what it did, every time: a backend that keeps copies of what it read (a client-side \
               cache) must drop the copy before the write returns, or a session this process has just \
               logged out is served again.",
    },
    Rule {
        name: "expired_values_are_never_returned_nor_listed",
        rule: "a value past its TTL is never returned by `get`, listed by `keys_by_tag` or counted by \
               `delete_by_tag`, whether or not it was purged yet: an expired session must not open.",
    },
    Rule {
        name: "put_replaces_value_ttl_and_tags",
        rule: "`put` replaces the key's value, TTL and tags at once: a tag the new value does not carry \
               no longer lists the key, or a back-channel logout by an old `sid` would end a session \
               that has moved on (or miss one that has not).",
    },
    Rule {
        name: "delete_by_tag_removes_exactly_the_tagged_keys",
        rule: "`delete_by_tag` removes every key whose value carries the tag and no other, and returns \
               how many: it is how a back-channel logout ends the sessions of a `sid` or `sub`.",
    },
    Rule {
        name: "concurrent_writes_leave_a_consistent_index",
        rule: "after `put`s, `delete`s and `delete_by_tag`s from many tasks at once, a key is listed \
               under a tag exactly while its value carries it: a value and its tags change together \
               (one transaction, one script), or an index entry outlives its record or a record \
               escapes its index.",
    },
    Rule {
        name: "update_never_creates_a_key",
        rule: "`update` replaces a live value as `put` does, and on a key that holds nothing (never \
               written, deleted, expired) writes nothing and returns false: a session saved again \
               after a logout must not come back.",
    },
    Rule {
        name: "insert_has_one_winner",
        rule: "`insert` writes only where the key holds nothing and, of many racing inserts of one \
               key, exactly one returns true: a refresh lease has one holder across the fleet.",
    },
    Rule {
        name: "deleted_keys_stay_deleted_under_racing_updates",
        rule: "`update`s racing a `delete` or `delete_by_tag` never bring the key back nor leave it \
               listed: the check that the key is live and the write are one atomic step.",
    },
    Rule {
        name: "undecodable_records_are_absent",
        rule: "bytes that are not a record (empty, garbage, another format) read through a typed \
               store as no record, not an error: a corrupt row must not take the app down.",
    },
    Rule {
        name: "sealed_records_stay_sealed",
        rule: "records of an `encrypt` store are stored sealed (no plaintext in the backend), and bytes \
               copied to another key do not open there: the backend must store bytes exactly, without \
               re-encoding them (text columns that mangle bytes break this).",
    },
    Rule {
        name: "notices_reach_every_watcher",
        rule: "a backend whose `watch` returns notices moves their version within seconds of a `notify` \
               on the channel, from this connection or another: cookie sessions of a fleet rely on it \
               to see logouts. A backend without notices (`watch` returns None) passes.",
    },
];

/// Checks every rule of [`BACKEND_RULES`] on backends from `make` (one per rule, keys under a
/// random prefix); returns the rules broken, each with what the kit saw. Every call of `make`
/// must return a backend over the same data, as another process of the app would open it (a
/// new connection to the same database and namespace; for one in memory, a clone): the
/// notices rule sends from one and listens on another.
///
/// ```no_run
/// # async fn run() {
/// use auth_layer::backend::MokaBackend;
///
/// auth_layer::testing::check_backend(|| async { MokaBackend::new() }).await.unwrap();
/// # }
/// ```
#[doc(alias = "conformance")]
pub async fn check_backend<B, F, Fut>(make: F) -> Result<(), super::Failures>
where
    B: Backend + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
{
    let mut runner = Runner::new(BACKEND_RULES);
    macro_rules! rule {
        ($name:ident) => {
            runner.run(stringify!($name), $name(make().await, fresh_prefix())).await;
        };
    }
    rule!(get_returns_what_put_stored);
    rule!(a_read_right_after_a_write_sees_it);
    rule!(expired_values_are_never_returned_nor_listed);
    rule!(put_replaces_value_ttl_and_tags);
    rule!(delete_by_tag_removes_exactly_the_tagged_keys);
    rule!(concurrent_writes_leave_a_consistent_index);
    rule!(update_never_creates_a_key);
    rule!(insert_has_one_winner);
    rule!(deleted_keys_stay_deleted_under_racing_updates);
    rule!(undecodable_records_are_absent);
    rule!(sealed_records_stay_sealed);
    runner.run("notices_reach_every_watcher", notices_reach_every_watcher(make().await, make().await)).await;
    runner.finish()
}

fn tags(p: &str, list: &[&str]) -> Vec<String> {
    list.iter().map(|t| format!("{p}{t}")).collect()
}

fn shown(value: &Option<Bytes>) -> String {
    match value {
        Some(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
        None => "nothing".into(),
    }
}

async fn get_returns_what_put_stored<B: Backend>(b: B, p: String) -> Outcome {
    let k = format!("{p}k");
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.is_none(), "a key never written returned {}", shown(&got));
    b.put(&k, Bytes::from_static(b"v1"), None, tags(&p, &["a"])).await.or_fail("put")?;
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.as_deref() == Some(b"v1"), "after put(\"v1\"), get returned {}", shown(&got));
    let binary = Bytes::from_static(b"\x00\xff\xfe\x80 \x01");
    b.put(&k, binary.clone(), None, tags(&p, &["a"])).await.or_fail("put")?;
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.as_ref() == Some(&binary), "binary bytes (NUL, invalid UTF-8) came back as {}", shown(&got));
    b.delete(&k).await.or_fail("delete")?;
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.is_none(), "after delete, get returned {}", shown(&got));
    let listed = b.keys_by_tag(&format!("{p}a")).await.or_fail("keys_by_tag")?;
    ensure!(listed.is_empty(), "a deleted key is still listed under its tag: {listed:?}");
    b.delete(&k).await.or_fail("delete (of a key already deleted)")?;
    Ok(())
}

async fn a_read_right_after_a_write_sees_it<B: Backend>(b: B, p: String) -> Outcome {
    // A stale copy shows only when the read beats the copy's invalidation: many rounds, each
    // write preceded by a read that leaves a copy to be dropped.
    const ROUNDS: usize = 100;
    let (k, tag) = (format!("{p}k"), format!("{p}a"));
    let ttl = Some(Duration::from_secs(60));
    for round in 0..ROUNDS {
        let put = Bytes::from(format!("put {round}"));
        b.put(&k, put.clone(), ttl, vec![tag.clone()]).await.or_fail("put")?;
        let got = b.get(&k).await.or_fail("get")?;
        ensure!(got.as_ref() == Some(&put), "round {round}: right after put, get returned {}", shown(&got));
        let updated = Bytes::from(format!("update {round}"));
        ensure!(b.update(&k, updated.clone(), ttl, vec![tag.clone()]).await.or_fail("update")?, "update of a live key");
        let got = b.get(&k).await.or_fail("get")?;
        ensure!(got.as_ref() == Some(&updated), "round {round}: right after update, get returned {}", shown(&got));
        b.delete(&k).await.or_fail("delete")?;
        let got = b.get(&k).await.or_fail("get")?;
        ensure!(got.is_none(), "round {round}: right after delete, get returned {}", shown(&got));
        ensure!(b.insert(&k, put.clone(), ttl, vec![tag.clone()]).await.or_fail("insert")?, "insert of a deleted key");
        let got = b.get(&k).await.or_fail("get")?;
        ensure!(got.as_ref() == Some(&put), "round {round}: right after insert, get returned {}", shown(&got));
        b.delete_by_tag(&tag).await.or_fail("delete_by_tag")?;
        let got = b.get(&k).await.or_fail("get")?;
        ensure!(got.is_none(), "round {round}: right after delete_by_tag, get returned {}", shown(&got));
    }
    Ok(())
}

async fn expired_values_are_never_returned_nor_listed<B: Backend>(b: B, p: String) -> Outcome {
    let (short, long) = (format!("{p}short"), format!("{p}long"));
    b.put(&short, Bytes::from_static(b"v"), Some(Duration::from_millis(300)), tags(&p, &["t"])).await.or_fail("put")?;
    b.put(&long, Bytes::from_static(b"v"), None, tags(&p, &["t"])).await.or_fail("put")?;
    ensure!(b.get(&short).await.or_fail("get")?.is_some(), "a value with a TTL of 300 ms was gone at once");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let got = b.get(&short).await.or_fail("get")?;
    ensure!(got.is_none(), "1.2 s after a put with a TTL of 300 ms, get returned {}", shown(&got));
    let listed = b.keys_by_tag(&format!("{p}t")).await.or_fail("keys_by_tag")?;
    ensure!(listed == [long.clone()], "keys_by_tag listed {listed:?}; only the live key {long:?} should be");
    let deleted = b.delete_by_tag(&format!("{p}t")).await.or_fail("delete_by_tag")?;
    ensure!(deleted == 1, "delete_by_tag counted {deleted}; only the one live key should count");
    ensure!(b.get(&long).await.or_fail("get")?.is_none(), "delete_by_tag left the live key");
    Ok(())
}

async fn put_replaces_value_ttl_and_tags<B: Backend>(b: B, p: String) -> Outcome {
    let k = format!("{p}k");
    b.put(&k, Bytes::from_static(b"1"), Some(Duration::from_millis(300)), tags(&p, &["a", "b"]))
        .await
        .or_fail("put")?;
    b.put(&k, Bytes::from_static(b"2"), None, tags(&p, &["b", "c"])).await.or_fail("put")?;
    let a = b.keys_by_tag(&format!("{p}a")).await.or_fail("keys_by_tag")?;
    ensure!(a.is_empty(), "a tag the new value does not carry still lists the key: {a:?}");
    for t in ["b", "c"] {
        let listed = b.keys_by_tag(&format!("{p}{t}")).await.or_fail("keys_by_tag")?;
        ensure!(listed == [k.clone()], "tag {t} of the new value lists {listed:?}, not [{k:?}]");
    }
    let deleted = b.delete_by_tag(&format!("{p}a")).await.or_fail("delete_by_tag")?;
    ensure!(deleted == 0, "delete_by_tag of a dropped tag deleted {deleted} key(s)");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(
        got.as_deref() == Some(b"2"),
        "the old TTL (300 ms) outlived a put without one: get returned {}",
        shown(&got)
    );
    Ok(())
}

async fn delete_by_tag_removes_exactly_the_tagged_keys<B: Backend>(b: B, p: String) -> Outcome {
    for i in 0..10 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        b.put(&format!("{p}k{i}"), Bytes::from_static(b"v"), Some(Duration::from_secs(60)), tags(&p, &[tag, "all"]))
            .await
            .or_fail("put")?;
    }
    let deleted = b.delete_by_tag(&format!("{p}even")).await.or_fail("delete_by_tag")?;
    ensure!(deleted == 5, "delete_by_tag of a tag on 5 keys returned {deleted}");
    for i in 0..10 {
        let present = b.get(&format!("{p}k{i}")).await.or_fail("get")?.is_some();
        ensure!(
            present == (i % 2 == 1),
            "k{i} is {} after deleting the tag `even`",
            if present { "present" } else { "gone" }
        );
    }
    let mut all = b.keys_by_tag(&format!("{p}all")).await.or_fail("keys_by_tag")?;
    all.sort();
    let expected: Vec<String> = (0..10).filter(|i| i % 2 == 1).map(|i| format!("{p}k{i}")).collect();
    ensure!(all == expected, "another tag of the deleted keys still lists {all:?}, not only {expected:?}");
    let none = b.delete_by_tag(&format!("{p}nothing")).await.or_fail("delete_by_tag")?;
    ensure!(none == 0, "delete_by_tag of a tag on no key returned {none}");
    Ok(())
}

async fn concurrent_writes_leave_a_consistent_index<B: Backend + Clone>(b: B, p: String) -> Outcome {
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let (b, p) = (b.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..40u64 {
                let key = format!("{p}k{}", (task * 7 + round) % 20);
                let tag = format!("{p}t{}", round % 3);
                match round % 5 {
                    4 => b.delete(&key).await.or_fail("delete")?,
                    3 => {
                        b.delete_by_tag(&tag).await.or_fail("delete_by_tag")?;
                    }
                    _ => b
                        .put(&key, Bytes::from(vec![task as u8]), None, vec![tag, format!("{p}all")])
                        .await
                        .or_fail("put")?,
                }
            }
            Ok::<_, String>(())
        }));
    }
    for outcome in join_all(tasks).await? {
        outcome?;
    }
    let listed = b.keys_by_tag(&format!("{p}all")).await.or_fail("keys_by_tag")?;
    let mut per_tag = 0;
    for t in 0..3 {
        per_tag += b.keys_by_tag(&format!("{p}t{t}")).await.or_fail("keys_by_tag")?.len();
    }
    let mut live = 0;
    for i in 0..20 {
        let key = format!("{p}k{i}");
        let present = b.get(&key).await.or_fail("get")?.is_some();
        live += usize::from(present);
        ensure!(
            present == listed.contains(&key),
            "{key} is {} but {} under the tag every value carries",
            if present { "present" } else { "gone" },
            if listed.contains(&key) { "listed" } else { "not listed" }
        );
    }
    ensure!(listed.len() == live, "{} keys listed for {live} live ones (duplicates?)", listed.len());
    ensure!(per_tag == live, "{per_tag} entries under t0..t2 for {live} live keys; each should be under exactly one");
    Ok(())
}

async fn update_never_creates_a_key<B: Backend>(b: B, p: String) -> Outcome {
    let (k, gone, short) = (format!("{p}k"), format!("{p}gone"), format!("{p}short"));
    let wrote = b.update(&gone, Bytes::from_static(b"v"), None, tags(&p, &["u"])).await.or_fail("update")?;
    ensure!(!wrote, "update of a key never written returned true");
    ensure!(b.get(&gone).await.or_fail("get")?.is_none(), "update of a key never written created it");
    ensure!(
        b.keys_by_tag(&format!("{p}u")).await.or_fail("keys_by_tag")?.is_empty(),
        "a refused update listed its key"
    );

    b.put(&k, Bytes::from_static(b"1"), None, tags(&p, &["a"])).await.or_fail("put")?;
    ensure!(
        b.update(&k, Bytes::from_static(b"2"), None, tags(&p, &["u"])).await.or_fail("update")?,
        "update of a live key returned false"
    );
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.as_deref() == Some(b"2"), "after update(\"2\"), get returned {}", shown(&got));
    ensure!(
        b.keys_by_tag(&format!("{p}a")).await.or_fail("keys_by_tag")?.is_empty(),
        "update kept a tag it did not carry"
    );
    let listed = b.keys_by_tag(&format!("{p}u")).await.or_fail("keys_by_tag")?;
    ensure!(listed == [k.clone()], "update's tag lists {listed:?}, not [{k:?}]");

    b.delete(&k).await.or_fail("delete")?;
    let wrote = b.update(&k, Bytes::from_static(b"3"), None, tags(&p, &["u"])).await.or_fail("update")?;
    ensure!(!wrote, "update of a deleted key returned true");
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.is_none(), "update brought a deleted key back: get returned {}", shown(&got));

    b.put(&short, Bytes::from_static(b"1"), Some(Duration::from_millis(300)), vec![]).await.or_fail("put")?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let wrote = b.update(&short, Bytes::from_static(b"2"), None, vec![]).await.or_fail("update")?;
    ensure!(!wrote, "update of an expired key returned true");
    ensure!(b.get(&short).await.or_fail("get")?.is_none(), "update brought an expired key back");
    Ok(())
}

async fn insert_has_one_winner<B: Backend + Clone>(b: B, p: String) -> Outcome {
    let (k, short) = (format!("{p}lease"), format!("{p}short-lease"));
    ensure!(
        b.insert(&k, Bytes::from_static(b"1"), None, tags(&p, &["l"])).await.or_fail("insert")?,
        "insert of a new key returned false"
    );
    let wrote = b.insert(&k, Bytes::from_static(b"2"), None, tags(&p, &["m"])).await.or_fail("insert")?;
    ensure!(!wrote, "insert over a live value returned true");
    let got = b.get(&k).await.or_fail("get")?;
    ensure!(got.as_deref() == Some(b"1"), "insert over a live value replaced it: get returned {}", shown(&got));
    ensure!(
        b.keys_by_tag(&format!("{p}m")).await.or_fail("keys_by_tag")?.is_empty(),
        "a refused insert listed its tag"
    );
    b.delete(&k).await.or_fail("delete")?;
    ensure!(
        b.insert(&k, Bytes::from_static(b"3"), None, vec![]).await.or_fail("insert")?,
        "insert of a deleted key returned false"
    );

    b.insert(&short, Bytes::from_static(b"1"), Some(Duration::from_millis(300)), vec![]).await.or_fail("insert")?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    ensure!(
        b.insert(&short, Bytes::from_static(b"2"), None, vec![]).await.or_fail("insert")?,
        "insert of an expired key returned false"
    );

    for round in 0..20u32 {
        let key = format!("{p}race{round}");
        let racers: Vec<_> = (0..8u8)
            .map(|racer| {
                let (b, key) = (b.clone(), key.clone());
                tokio::spawn(async move {
                    b.insert(&key, Bytes::from(vec![racer]), Some(Duration::from_secs(30)), vec![]).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (racer, won) in join_all(racers).await?.into_iter().enumerate() {
            if won.or_fail("insert")? {
                winners.push(racer as u8);
            }
        }
        ensure!(
            winners.len() == 1,
            "round {round}: {} of 8 racing inserts returned true ({winners:?}); exactly one may",
            winners.len()
        );
        let got = b.get(&key).await.or_fail("get")?;
        ensure!(
            got.as_deref() == Some(&winners[..]),
            "round {round}: the winner wrote {winners:?}, get returned {}",
            shown(&got)
        );
    }
    Ok(())
}

async fn deleted_keys_stay_deleted_under_racing_updates<B: Backend + Clone>(b: B, p: String) -> Outcome {
    for round in 0..40u32 {
        let key = format!("{p}s{round}");
        let tag = format!("{p}sid{round}");
        b.put(&key, Bytes::from_static(b"0"), Some(Duration::from_secs(60)), vec![tag.clone()]).await.or_fail("put")?;
        let mut writers = Vec::new();
        for writer in 0..6u8 {
            let (b, key, tag) = (b.clone(), key.clone(), tag.clone());
            writers.push(tokio::spawn(async move {
                for _ in 0..4 {
                    b.update(&key, Bytes::from(vec![writer]), Some(Duration::from_secs(60)), vec![tag.clone()])
                        .await
                        .or_fail("update")?;
                    tokio::task::yield_now().await;
                }
                Ok::<_, String>(())
            }));
        }
        let (deleter, key2, tag2) = (b.clone(), key.clone(), tag.clone());
        let by_tag = round % 2 == 0;
        let deletion = tokio::spawn(async move {
            tokio::task::yield_now().await;
            if by_tag {
                deleter.delete_by_tag(&tag2).await.map(|_| ()).or_fail("delete_by_tag")
            } else {
                deleter.delete(&key2).await.or_fail("delete")
            }
        });
        for outcome in join_all(vec![deletion]).await? {
            outcome?;
        }
        for outcome in join_all(writers).await? {
            outcome?;
        }
        let how = if by_tag { "delete_by_tag" } else { "delete" };
        let got = b.get(&key).await.or_fail("get")?;
        ensure!(
            got.is_none(),
            "round {round}: deleted by {how} while updates ran, then brought back ({})",
            shown(&got)
        );
        let listed = b.keys_by_tag(&tag).await.or_fail("keys_by_tag")?;
        ensure!(listed.is_empty(), "round {round}: deleted by {how}, yet listed under its tag: {listed:?}");
    }
    Ok(())
}

/// A typed record for the rules that go through a [`TypedStore`](crate::record::TypedStore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, auth_derive::Store)]
#[store(key = "{id}", ttl = "1h", encrypt)]
struct KitRecord {
    id: String,
    #[store(index)]
    owner: String,
}

const KIT_SECRET: &str = "the conformance kit's secret, for its records only";

async fn undecodable_records_are_absent<B: Backend + Clone>(b: B, p: String) -> Outcome {
    let store = KitRecord::store_in(b.clone(), &[KIT_SECRET]);
    let key = format!("{p}bad");
    for garbage in
        [&b""[..], b"\xff\xfe", b"{\"v\":1,\"d\":{}}", b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    {
        b.put(&key, Bytes::copy_from_slice(garbage), None, vec![]).await.or_fail("put")?;
        match store.get(&key).await {
            Ok(None) => {}
            Ok(Some(record)) => return Err(format!("the bytes {garbage:?} read as a record: {record:?}")),
            Err(err) => {
                return Err(format!(
                    "the bytes {garbage:?} made the typed store fail ({err}); they should read as no record"
                ));
            }
        }
    }
    Ok(())
}

async fn sealed_records_stay_sealed<B: Backend + Clone>(b: B, p: String) -> Outcome {
    let store = KitRecord::store_in(b.clone(), &[KIT_SECRET]);
    let record = KitRecord { id: format!("{p}one"), owner: format!("{p}ann-the-owner") };
    store.set(&record).await.or_fail("set (typed store)")?;
    let read = store.get(&record.id).await.or_fail("get (typed store)")?;
    ensure!(read.as_ref() == Some(&record), "a record read back as {read:?}, not {record:?}");
    let raw = b.get(&record.id).await.or_fail("get")?.ok_or("the record's key holds nothing")?;
    ensure!(!String::from_utf8_lossy(&raw).contains("ann-the-owner"), "the record is stored in plaintext");
    let copy = format!("{p}two");
    b.put(&copy, raw, None, vec![]).await.or_fail("put")?;
    let opened = store.get(&copy).await.or_fail("get (typed store)")?;
    ensure!(opened.is_none(), "a sealed record copied to another key opened there: {opened:?}");
    let found = store.find_by(KitRecord::OWNER, &record.owner).await.or_fail("find_by")?;
    ensure!(found == [record.clone()], "find_by its index found {found:?}");
    let deleted = store.delete_by(KitRecord::OWNER, &record.owner).await.or_fail("delete_by")?;
    ensure!(deleted == 1, "delete_by its index deleted {deleted}");
    Ok(())
}

async fn notices_reach_every_watcher<B: Backend>(watcher: B, other: B) -> Outcome {
    let channel = format!("kit{}", &fresh_prefix()[4..20]);
    let Some(notices) = watcher.watch(&channel) else { return Ok(()) };
    let live = |what: &str| {
        let notices = notices.clone();
        let what = what.to_owned();
        async move {
            for _ in 0..100 {
                if let Some(version) = notices.version() {
                    return Ok(version);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(format!("the notices had no version 10 s after {what} (never connected, or silent)"))
        }
    };
    let before = live("watch").await?;
    for (name, sender) in [("the watching backend", &watcher), ("another backend value", &other)] {
        let since = live("the last notice").await?;
        sender.notify(&channel).await.or_fail("notify")?;
        let mut moved = false;
        for _ in 0..50 {
            if notices.version().is_some_and(|v| v != since) {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ensure!(moved, "a notify from {name} did not move the watcher's version within 5 s");
    }
    ensure!(notices.version() != Some(before), "the version never moved");
    Ok(())
}
