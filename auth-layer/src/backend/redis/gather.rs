//! Reads asked for at about the same moment, sent to Redis together ([`Gathered`]).
//!
//! On a standalone Redis, and on a cluster in the one-tag layout, a batch is one `MGET` (every
//! key shares one slot there). In the spread layout every record has a slot of its own, and an
//! `MGET` across slots is refused by Redis (redis-rs would split it into one command per slot):
//! there a batch is grouped by the node that serves each key's slot, as the cluster's last
//! `CLUSTER SLOTS` answer says ([`NodeMap`]), and each node gets one pipeline of `GET`s. Keys
//! whose slots moved meanwhile are answered `MOVED` inside the pipelines; the map is fetched
//! again and they go once more, grouped by it (a slot moved with a batch's first key sends that
//! whole pipeline elsewhere: this keeps it from becoming hundreds of single reads), and what is
//! redirected again goes alone, through redis-rs's routing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use tokio::sync::oneshot;

use super::{Connection, unavailable};
use crate::error::StoreError;

/// The most reads one `MGET` (or one node's pipeline) carries; more reads waiting at once go
/// in further ones, sent side by side.
const MAX_GATHERED: usize = 128;

/// A Redis Cluster's slots.
const SLOTS: usize = 16_384;

/// Where a gathered read's answer goes.
type Reply = oneshot::Sender<Result<Option<Bytes>, StoreError>>;

/// Reads waiting to go to Redis together.
///
/// The first read to arrive while none waits spawns the task that sends them, and that task
/// first yields to the runtime once: the other tasks that are ready at that moment (under load,
/// the other requests the server is handling) run and add their reads, and all of them leave
/// together. A lone read waits one turn of the scheduler. The sending task does not belong to
/// any caller, so a caller that gives up (a request cancelled) loses only its own answer.
#[derive(Default)]
pub(super) struct Gathered {
    waiting: Mutex<Vec<(String, Reply)>>,
    /// On a cluster in the spread layout: which node serves each slot, to send one pipeline
    /// per node.
    nodes: Option<NodeMap>,
}

impl Gathered {
    /// Reads of a cluster whose keys spread over its slots: grouped by node.
    pub(super) fn by_node() -> Self {
        Self { waiting: Mutex::default(), nodes: Some(NodeMap::default()) }
    }

    /// Queues a read of `value_key`; the answer arrives on the returned receiver.
    pub(super) fn read(
        self: &Arc<Self>,
        connection: &Connection,
        value_key: String,
    ) -> oneshot::Receiver<Result<Option<Bytes>, StoreError>> {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            waiting.push((value_key, reply));
            waiting.len() == 1
        };
        if first {
            let sender = Sender { gathered: self.clone(), taken: false };
            tokio::spawn(sender.run(connection.clone()));
        }
        answer
    }

    /// Takes every read waiting.
    fn take(&self) -> Vec<(String, Reply)> {
        std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sends `reads`: grouped by node when this is a spread cluster whose map is known, else
    /// in `MGET`s.
    async fn send(&self, connection: Connection, reads: Vec<(String, Reply)>) {
        if let (Some(nodes), Connection::Cluster(cluster)) = (&self.nodes, &connection) {
            match nodes.owners() {
                Some(owners) => return send_by_node(cluster, nodes, &owners, reads).await,
                // The first batch, or the map was dropped after a redirection: these go as
                // before while the map is fetched.
                None => nodes.refresh(cluster),
            }
        }
        send_mgets(connection, reads).await;
    }
}

/// The task that sends what waits in [`Gathered`], spawned by the first read.
struct Sender {
    gathered: Arc<Gathered>,
    taken: bool,
}

impl Sender {
    async fn run(mut self, connection: Connection) {
        tokio::task::yield_now().await;
        let reads = self.gathered.take();
        self.taken = true;
        self.gathered.send(connection, reads).await;
    }
}

impl Drop for Sender {
    /// A sender stopped before it took the queue (its runtime shut down) would leave the reads
    /// waiting with no one to send them, and every later read queued behind them: they are
    /// answered with an error instead, and the next read starts afresh.
    fn drop(&mut self) {
        if !self.taken {
            drop(self.gathered.take());
        }
    }
}

/// Sends `reads` in `MGET`s of at most [`MAX_GATHERED`] keys, side by side.
async fn send_mgets(connection: Connection, mut reads: Vec<(String, Reply)>) {
    while reads.len() > MAX_GATHERED {
        let rest = reads.split_off(MAX_GATHERED);
        tokio::spawn(mget(connection.clone(), reads));
        reads = rest;
    }
    mget(connection, reads).await;
}

/// One `MGET` for `reads`, each answer sent to its reader.
async fn mget(mut connection: Connection, reads: Vec<(String, Reply)>) {
    let mut command = redis::cmd("MGET");
    for (key, _) in &reads {
        command.arg(key);
    }
    let values: Result<Vec<Option<Vec<u8>>>, StoreError> =
        command.query_async(&mut connection).await.map_err(unavailable).and_then(|values: Vec<_>| {
            if values.len() == reads.len() {
                Ok(values)
            } else {
                tracing::warn!(asked = reads.len(), answered = values.len(), "Redis answered MGET with a wrong count");
                Err(StoreError::unavailable("Redis", "MGET answered with a wrong count"))
            }
        });
    match values {
        Ok(values) => {
            for ((_, reply), value) in reads.into_iter().zip(values) {
                // A reader that gave up no longer listens; the others still get their answers.
                let _ = reply.send(Ok(value.map(Bytes::from)));
            }
        }
        Err(err) => answer_all(reads, &err),
    }
}

fn answer_all(reads: Vec<(String, Reply)>, err: &StoreError) {
    for (_, reply) in reads {
        let _ = reply.send(Err(err.clone()));
    }
}

/// Which node serves each slot of a cluster, from `CLUSTER SLOTS`: each slot's entry is the
/// index of its master among the masters that answer named. Fetched by the first batch, and
/// again after a batch met a redirection (a failover or a slot moved).
#[derive(Default)]
struct NodeMap {
    owners: Arc<Mutex<Option<Arc<[u16]>>>>,
    fetching: Arc<AtomicBool>,
}

impl NodeMap {
    /// The current map, if one was fetched and not dropped since.
    fn owners(&self) -> Option<Arc<[u16]>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops the current map and fetches another in the background (one fetch at a time).
    fn refresh(&self, cluster: &ClusterConnection) {
        *self.owners.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        let (fetching, owners, mut cluster) = (self.fetching.clone(), self.owners.clone(), cluster.clone());
        tokio::spawn(async move {
            match fetch_owners(&mut cluster).await {
                Ok(fetched) => *owners.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched),
                Err(err) => tracing::debug!(%err, "Redis Cluster: slot map not fetched; reads go by slot meanwhile"),
            }
            fetching.store(false, Ordering::Release);
        });
    }
}

/// Asks the cluster which master serves each slot.
async fn fetch_owners(cluster: &mut ClusterConnection) -> Result<Arc<[u16]>, redis::RedisError> {
    let answer = cluster
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            redis::cluster_routing::RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    owners_from(&answer).ok_or_else(|| (redis::ErrorKind::Parse, "CLUSTER SLOTS answered in an unknown shape").into())
}

/// The slot map in a `CLUSTER SLOTS` answer: `[[first, last, [host, port, ..], replicas..], ..]`.
/// Slots no range names keep `u16::MAX` (no node: their reads go alone).
fn owners_from(answer: &Value) -> Option<Arc<[u16]>> {
    let Value::Array(ranges) = answer else { return None };
    let mut owners = vec![u16::MAX; SLOTS];
    let mut masters: Vec<(Vec<u8>, i64)> = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else { return None };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (range.first(), range.get(1), range.get(2))
        else {
            return None;
        };
        let (Some(Value::BulkString(host)), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
            return None;
        };
        let node = match masters.iter().position(|(h, p)| h == host && p == port) {
            Some(node) => node,
            None => {
                masters.push((host.clone(), *port));
                masters.len() - 1
            }
        };
        let (first, last) = (usize::try_from(*first).ok()?, usize::try_from(*last).ok()?);
        owners.get_mut(first..=last)?.fill(u16::try_from(node).ok()?);
    }
    Some(owners.into())
}

/// The slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key without one.
fn slot_of(key: &str) -> u16 {
    let key = key.as_bytes();
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// Sends `reads` as one pipeline of `GET`s per node (at most [`MAX_GATHERED`] each), side by
/// side; keys of slots the map does not name go alone. Reads a pipeline's node sent elsewhere
/// (`MOVED`: a slot moved, a failover) are sent again, grouped by a map fetched then, once;
/// what is redirected again goes alone, through redis-rs's routing.
async fn send_by_node(cluster: &ClusterConnection, nodes: &NodeMap, owners: &[u16], reads: Vec<(String, Reply)>) {
    let redirected = pipelines(cluster, owners, reads).await;
    if redirected.is_empty() {
        return;
    }
    let fresh = match fetch_owners(&mut cluster.clone()).await {
        Ok(fresh) => fresh,
        Err(err) => {
            tracing::debug!(%err, "Redis Cluster: slot map not fetched after a redirection; reads go alone");
            nodes.refresh(cluster);
            return alone(cluster, redirected).await;
        }
    };
    *nodes.owners.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
    let again = pipelines(cluster, &fresh, redirected).await;
    if !again.is_empty() {
        nodes.refresh(cluster);
        alone(cluster, again).await;
    }
}

/// Each of `reads` alone, side by side.
async fn alone(cluster: &ClusterConnection, reads: Vec<(String, Reply)>) {
    let sends: Vec<_> =
        reads.into_iter().map(|(key, reply)| tokio::spawn(get_alone(cluster.clone(), key, reply))).collect();
    for send in sends {
        let _ = send.await;
    }
}

/// One pipeline per node of `owners`' map, side by side; the reads their nodes redirected.
async fn pipelines(cluster: &ClusterConnection, owners: &[u16], reads: Vec<(String, Reply)>) -> Vec<(String, Reply)> {
    let mut by_node: HashMap<u16, Vec<(u16, String, Reply)>> = HashMap::new();
    for (key, reply) in reads {
        let slot = slot_of(&key);
        by_node.entry(owners[usize::from(slot)]).or_default().push((slot, key, reply));
    }
    let mut sends = Vec::new();
    let mut unmapped = Vec::new();
    for (node, mut reads) in by_node {
        if node == u16::MAX {
            unmapped.extend(reads.into_iter().map(|(_, key, reply)| (key, reply)));
            continue;
        }
        while !reads.is_empty() {
            let batch: Vec<_> = reads.drain(..reads.len().min(MAX_GATHERED)).collect();
            sends.push(tokio::spawn(pipeline(cluster.clone(), batch)));
        }
    }
    if !unmapped.is_empty() {
        alone(cluster, unmapped).await;
    }
    let mut redirected = Vec::new();
    for send in sends {
        if let Ok(sent_elsewhere) = send.await {
            redirected.extend(sent_elsewhere);
        }
    }
    redirected
}

/// One pipeline of `GET`s to the node serving the first read's slot; the reads it redirected
/// (answered `MOVED` or `ASK`, or all of them when the node refused the pipeline so), for the
/// caller to send again.
async fn pipeline(mut cluster: ClusterConnection, reads: Vec<(u16, String, Reply)>) -> Vec<(String, Reply)> {
    let mut pipe = redis::pipe();
    for (_, key, _) in &reads {
        pipe.cmd("GET").arg(key);
    }
    let route = SingleNodeRoutingInfo::SpecificNode(Route::new(reads[0].0, SlotAddr::Master));
    let values = match cluster.route_pipeline(pipe, 0, reads.len(), route).await {
        Ok(values) if values.len() == reads.len() => values,
        Ok(values) => {
            tracing::warn!(
                asked = reads.len(),
                answered = values.len(),
                "Redis answered a pipeline with a wrong count"
            );
            let err = StoreError::unavailable("Redis", "a pipeline answered with a wrong count");
            answer_all(reads.into_iter().map(|(_, key, reply)| (key, reply)).collect(), &err);
            return Vec::new();
        }
        // The node no longer serves the first slot: every read is sent again.
        Err(err) if err.redirect_node().is_some() => {
            return reads.into_iter().map(|(_, key, reply)| (key, reply)).collect();
        }
        Err(err) => {
            let err = unavailable(err);
            answer_all(reads.into_iter().map(|(_, key, reply)| (key, reply)).collect(), &err);
            return Vec::new();
        }
    };
    let mut redirected = Vec::new();
    for ((_, key, reply), value) in reads.into_iter().zip(values) {
        let answer = match value {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => Ok(Some(Bytes::from(bytes))),
            // `MOVED`/`ASK` (the map is out of date) or a node refusing while it changes role:
            // sent again by the caller.
            Value::ServerError(_) => {
                redirected.push((key, reply));
                continue;
            }
            other => {
                tracing::warn!(?other, "Redis answered GET with an unexpected value");
                Err(StoreError::unavailable("Redis", "GET answered with an unexpected value"))
            }
        };
        let _ = reply.send(answer);
    }
    redirected
}

/// One `GET`, routed by redis-rs.
async fn get_alone(mut cluster: ClusterConnection, key: String, reply: Reply) {
    let value: Result<Option<Vec<u8>>, _> = redis::cmd("GET").arg(key).query_async(&mut cluster).await;
    let _ = reply.send(value.map(|v| v.map(Bytes::from)).map_err(unavailable));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_as_redis_computes_them() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("auth-layer:v:{a1b2}key"), slot_of("a1b2"));
        assert_eq!(slot_of("somekey"), 11058);
        assert_eq!(slot_of("foo{hash_tag}"), 2515);
        assert_eq!(slot_of("{}foo"), 9500);
        assert_eq!(slot_of("auth-layer:v:{a1b2}key"), 9898);
    }

    #[test]
    fn the_map_names_each_ranges_master() {
        let node = |port| Value::Array(vec![Value::BulkString(b"127.0.0.1".to_vec()), Value::Int(port)]);
        let range = |first, last, port| Value::Array(vec![Value::Int(first), Value::Int(last), node(port)]);
        let answer = Value::Array(vec![range(0, 5460, 7000), range(5461, 10922, 7001), range(10923, 16383, 7000)]);
        let owners = owners_from(&answer).unwrap();
        assert_eq!((owners[0], owners[5460], owners[5461], owners[10923], owners[16383]), (0, 0, 1, 0, 0));
        let gap = Value::Array(vec![range(0, 99, 7000)]);
        assert_eq!(owners_from(&gap).unwrap()[100], u16::MAX);
        assert!(owners_from(&Value::Array(vec![Value::Int(1)])).is_none());
        assert!(owners_from(&Value::Array(vec![range(0, 16384, 7000)])).is_none());
    }
}
