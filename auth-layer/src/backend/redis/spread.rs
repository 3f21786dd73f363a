//! The spread layout of a [`RedisBackend`] on a Redis Cluster: each record in a slot of its
//! own and each index in the slot of its tag, so that the cluster's shards share an app's
//! sessions instead of one shard holding them all.
//!
//! Keys, under the namespace without its braces (`auth-layer` for `{auth-layer}`):
//! `auth-layer:v:{h}key` holds the value, `auth-layer:k:{h}key` the set of its tags, where `h`
//! is four hex digits of a fixed hash of the key ([`slot_tag`]): both share a slot, and the
//! slots of an app's keys spread evenly. `auth-layer:t:{g}tag` is the index of a tag (`g` the
//! same hash of the tag): a sorted set of the keys carrying it, scored by their expiry.
//!
//! What must be atomic stays in one slot: `update` writes only over a live value and `insert`
//! only where there is none, each in one script on the value's slot with the check; a delete
//! removes the value and its tags in one script there. What crosses slots is ordered so that a
//! crash between two steps leaves nothing a logout can miss:
//!
//! 1. A write adds the key to each of its tags' indexes first, then writes the value with its
//!    tags. A crash between the two leaves an index entry without its record: listing and
//!    deleting by tag check every entry against the record's own tags, so the entry names
//!    nothing, and it expires with the score it was given. A record is never written before its
//!    index entries, so no record escapes its index.
//! 2. Nothing removes an index entry but its expiry: an entry of a record deleted, or no longer
//!    carrying the tag, names nothing (the same check), and goes once its score passes. Removing
//!    it sooner cannot be made safe across slots: a write of the same key racing the removal
//!    (its entry added just before the removal, its value just after) would leave a record its
//!    index does not name. The price: a deleted record's entries stay until the record would
//!    have expired (plus a few seconds); those of a record without expiry stay.
//! 3. A delete by tag reads the index, then ends each key still carrying the tag, each in one
//!    script on its own slot (the check and the delete together). Every record the index names
//!    is ended, whichever shard holds it; a record written after the index was read (a login
//!    after the logout) is not.
//!
//! Records of the one-tag layout (every key under `{auth-layer}`, as earlier versions wrote
//! them on a cluster) are still read, renewed and deleted where they are until they expire: a
//! read that misses here looks there, an update goes where the record is, a delete and a delete
//! by tag take both.

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::future::join_all;
use redis::Script;

use super::{RedisBackend, unavailable};
use crate::error::StoreError;

/// How long past a record's expiry its index entries are kept: the cluster's nodes keep their
/// own clocks, and an entry must not be pruned before the record it names expires elsewhere.
/// A listing checks the record anyway, so a late entry names nothing.
const INDEX_SLACK_MS: u64 = 5_000;

/// The body of the spread writes: the value and its tags, in one script on the value's slot.
/// KEYS: value, its tag set. ARGV: value, ttl in ms (0: none), then the tags. Returns the tags
/// it carried before.
macro_rules! spread_write {
    () => {
        r#"
local old = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 3, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
if ttl > 0 and #ARGV >= 3 then redis.call('PEXPIRE', KEYS[2], ttl) end
return old
"#
    };
}

/// The scripts of the spread layout, loaded once per process.
pub(super) struct Scripts {
    put: Script,
    /// [`put`](Self::put) only over a live value; `false` (nil) when there is none.
    update: Script,
    /// [`put`](Self::put) only where there is no value; `false` when there is one.
    insert: Script,
    /// Adds a key to a tag's index. KEYS: the index. ARGV: the key, its ttl in ms (0: none).
    index: Script,
    /// Deletes a value and its tags. KEYS: value, its tag set. Returns the tags.
    delete: Script,
    /// Deletes a value if it carries a tag now. KEYS: value, its tag set. ARGV: the tag.
    /// Returns false when it does not, else how many values went (`"0"` or `"1"`) followed by
    /// its tags.
    delete_if_tagged: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    put: Script::new(spread_write!()),
    update: Script::new(concat!("if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n", spread_write!())),
    insert: Script::new(concat!("if redis.call('EXISTS', KEYS[1]) == 1 then return false end\n", spread_write!())),
    index: Script::new(concat!(
        "local ttl = tonumber(ARGV[2])\n",
        "if ttl > 0 then\n",
        "  local now = redis.call('TIME')\n",
        "  local keep = ttl + tonumber(ARGV[3])\n",
        "  redis.call('ZADD', KEYS[1], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + keep, ARGV[1])\n",
        "  local left = redis.call('PTTL', KEYS[1])\n",
        "  if left >= 0 and left < keep then redis.call('PEXPIRE', KEYS[1], keep) end\n",
        "else\n",
        "  redis.call('ZADD', KEYS[1], '+inf', ARGV[1])\n",
        "  redis.call('PERSIST', KEYS[1])\n",
        "end\n",
        "return 1\n",
    )),
    delete: Script::new(
        "local tags = redis.call('SMEMBERS', KEYS[2])\nredis.call('DEL', KEYS[1], KEYS[2])\nreturn tags\n",
    ),
    delete_if_tagged: Script::new(concat!(
        "if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return false end\n",
        "local tags = redis.call('SMEMBERS', KEYS[2])\n",
        "local deleted = redis.call('DEL', KEYS[1])\n",
        "redis.call('DEL', KEYS[2])\n",
        "table.insert(tags, 1, tostring(deleted))\n",
        "return tags\n",
    )),
});

/// Which spread write: `put`, `update` or `insert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Write {
    Put,
    Update,
    Insert,
}

/// The hash tag of `name` in the spread layout: four hex digits of its FNV-1a hash. Fixed
/// forever (every process and every version computes the same), and even: Redis maps the tag
/// to one of its 16,384 slots by CRC16, so an app's keys land on every slot alike.
pub(super) fn slot_tag(name: &str) -> [u8; 4] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let folded = (hash >> 16) ^ (hash & 0xffff);
    [12, 8, 4, 0].map(|shift| HEX[((folded >> shift) & 0xf) as usize])
}

/// The namespace of the spread layout: the configured one without braces (a brace would make
/// it the key's hash tag, and every key would share a slot again).
pub(super) fn spread_namespace(namespace: &str) -> String {
    namespace.chars().filter(|c| *c != '{' && *c != '}').collect()
}

impl RedisBackend {
    /// `{spread namespace}{kind}{tag}{name}`: a key of the spread layout, in one allocation.
    fn spread_key(&self, kind: &str, name: &str) -> String {
        let tag = slot_tag(name);
        let mut key = String::with_capacity(self.spread_namespace.len() + kind.len() + 6 + name.len());
        key.push_str(&self.spread_namespace);
        key.push_str(kind);
        key.push('{');
        key.extend(tag.iter().map(|&b| char::from(b)));
        key.push('}');
        key.push_str(name);
        key
    }

    /// Where `key`'s value lives in the spread layout.
    pub(super) fn spread_value_key(&self, key: &str) -> String {
        self.spread_key(":v:", key)
    }

    /// Writes `value` under `key` in the spread layout, as `write` says; whether it was
    /// written. Index entries first, then the value with its tags (see the module's
    /// documentation).
    pub(super) async fn spread_write(
        &self,
        write: Write,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<bool, StoreError> {
        if write == Write::Insert && self.legacy_holds(key).await? {
            return Ok(false);
        }
        let ttl_ms = ttl.map_or(0, |t| t.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
        let indexed = join_all(tags.iter().map(|tag| {
            let mut connection = self.connection.clone();
            let mut invocation = SCRIPTS.index.key(self.spread_key(":t:", tag));
            invocation.arg(key).arg(ttl_ms).arg(INDEX_SLACK_MS);
            async move { invocation.invoke_async::<i64>(&mut connection).await }
        }))
        .await;
        for outcome in indexed {
            outcome.map_err(unavailable)?;
        }
        if self.stop_after_index {
            return Err(StoreError::unavailable("Redis", "stopped between the index entries and the value (a test)"));
        }
        let script = match write {
            Write::Put => &SCRIPTS.put,
            Write::Update => &SCRIPTS.update,
            Write::Insert => &SCRIPTS.insert,
        };
        let mut invocation = script.key(self.spread_value_key(key));
        invocation.key(self.spread_key(":k:", key)).arg(value).arg(ttl_ms);
        for tag in tags {
            invocation.arg(tag);
        }
        let mut connection = self.connection.clone();
        let before: Option<Vec<String>> = invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        if before.is_none() {
            // Not written here: an update may find the record in the one-tag layout.
            return match write {
                Write::Update if self.legacy => self.write(&self.update, key, value, ttl, tags).await,
                _ => Ok(false),
            };
        }
        if write == Write::Put && self.legacy {
            // A copy in the one-tag layout is stale now; the read would find this one first.
            // (That delete settles the client-side cache too.)
            self.one_tag_delete(key).await?;
        } else {
            self.settle().await?;
        }
        Ok(true)
    }

    /// Whether the one-tag layout holds a value under `key` (always `false` without it).
    async fn legacy_holds(&self, key: &str) -> Result<bool, StoreError> {
        if !self.legacy {
            return Ok(false);
        }
        let mut connection = self.connection.clone();
        redis::cmd("EXISTS").arg(self.value_key(key)).query_async::<bool>(&mut connection).await.map_err(unavailable)
    }

    /// Deletes `key` in the spread layout (and in the one-tag layout, where it may still be).
    pub(super) async fn spread_delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _tags: Vec<String> = SCRIPTS
            .delete
            .key(self.spread_value_key(key))
            .key(self.spread_key(":k:", key))
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if self.legacy {
            // Settles the client-side cache after both deletes.
            self.one_tag_delete(key).await?;
        } else {
            self.settle().await?;
        }
        Ok(())
    }

    /// The candidates of a tag's index in the spread layout: every key an entry names, some
    /// of which may no longer carry the tag.
    async fn indexed(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        self.keys_by_tag.key(self.spread_key(":t:", tag)).invoke_async(&mut connection).await.map_err(unavailable)
    }

    /// Deletes every key carrying `tag`, wherever it sits; how many.
    pub(super) async fn spread_delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        let candidates = self.indexed(tag).await?;
        let ended = join_all(candidates.iter().map(|key| {
            let mut connection = self.connection.clone();
            let mut invocation = SCRIPTS.delete_if_tagged.key(self.spread_value_key(key));
            invocation.key(self.spread_key(":k:", key)).arg(tag);
            async move { invocation.invoke_async::<Option<Vec<String>>>(&mut connection).await }
        }))
        .await;
        let mut deleted = 0;
        for outcome in ended {
            if let Some(tags) = outcome.map_err(unavailable)? {
                deleted += u64::from(tags.first().is_some_and(|count| count == "1"));
            }
        }
        if self.legacy {
            // Settles the client-side cache after both layouts' deletes.
            deleted += self.one_tag_delete_by_tag(tag).await?;
        } else {
            self.settle().await?;
        }
        Ok(deleted)
    }

    /// The keys carrying `tag` now, wherever they sit.
    pub(super) async fn spread_keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        let candidates = self.indexed(tag).await?;
        let carried = join_all(candidates.iter().map(|key| {
            let mut connection = self.connection.clone();
            let tags = self.spread_key(":k:", key);
            async move { redis::cmd("SISMEMBER").arg(tags).arg(tag).query_async::<bool>(&mut connection).await }
        }))
        .await;
        let mut keys = Vec::with_capacity(candidates.len());
        for (key, carries) in candidates.into_iter().zip(carried) {
            if carries.map_err(unavailable)? {
                keys.push(key);
            }
        }
        if self.legacy {
            for key in self.one_tag_keys_by_tag(tag).await? {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::{slot_tag, spread_namespace};

    #[test]
    fn slot_tags_are_fixed_and_spread_evenly() {
        // Fixed: the same name gives the same tag in every process and version (FNV-1a 32,
        // folded to 16 bits; the values computed independently).
        assert_eq!(&slot_tag("session:h:abc"), b"056a");
        assert_eq!(&slot_tag(""), b"1cd9");
        let mut counts = std::collections::HashMap::new();
        for i in 0..60_000 {
            *counts.entry(slot_tag(&format!("session:h:{i:043}"))).or_insert(0u32) += 1;
        }
        // 60,000 names over 65,536 tags: most tags are used, none crowds.
        assert!(counts.len() > 35_000, "{} tags used", counts.len());
        assert!(counts.values().all(|&n| n <= 10), "a tag holds {:?}", counts.values().max());
    }

    #[test]
    fn the_spread_namespace_has_no_braces() {
        assert_eq!(spread_namespace("{auth-layer}"), "auth-layer");
        assert_eq!(spread_namespace("{a{b}c}"), "abc");
    }
}
