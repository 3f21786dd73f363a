//! Back-channel logout's cost: deleting the one session of a `sid` while 1,000 or 1,000,000
//! other sessions are stored, in moka, Redis and PostgreSQL. The cost must not grow with the
//! number of sessions stored.
//!
//! `cargo bench -p auth-layer-benches --bench delete_by_sid` (Redis and PostgreSQL at `REDIS_URL`
//! and `DATABASE_URL`, the loopback defaults otherwise). `STORED=1000,100000` changes the crowd
//! sizes, `BACKENDS=moka,redis` the backends.

use std::time::{Duration, Instant};

use auth_layer::SessionData;
use auth_layer::User;
use auth_layer::backend::{Backend, MokaBackend, PostgresBackend, RedisBackend};
use auth_layer::record::TypedStore;
use auth_layer_tests::servers::{database_url, redis_url};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const SECRET: &str = "bench-secret-bench-secret-bench-secret-00";

fn session(sub: &str, sid: &str) -> SessionData {
    let claims = serde_json::json!({"sub": sub, "sid": sid});
    SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "id.token.here".into(), 1)
}

/// Stores `count` sessions of distinct users (the crowd the deletion must not scan).
async fn fill<B: Backend + Clone>(sessions: &TypedStore<SessionData, B>, count: usize) {
    let mut batch = Vec::new();
    for i in 0..count {
        let sessions = sessions.clone();
        batch.push(tokio::spawn(async move {
            sessions
                .set_with_ttl(&session(&format!("user-{i}"), &format!("sid-{i}")), Some(Duration::from_secs(3600)))
                .await
                .unwrap();
        }));
        if batch.len() == 256 {
            for task in batch.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in batch {
        task.await.unwrap();
    }
}

/// Deletes the crowd [`fill`] stored, 256 users at a time.
async fn empty<B: Backend + Clone>(sessions: &TypedStore<SessionData, B>, count: usize) {
    let mut batch = Vec::new();
    for i in 0..count {
        let sessions = sessions.clone();
        batch.push(tokio::spawn(async move {
            sessions.delete_by(SessionData::SUB, format!("user-{i}").as_str()).await.unwrap();
        }));
        if batch.len() == 256 {
            for task in batch.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in batch {
        task.await.unwrap();
    }
}

fn bench_backend<B: Backend + Clone>(c: &mut Criterion, rt: &Runtime, name: &str, make: impl Fn() -> B) {
    let mut group = c.benchmark_group(format!("delete_by_sid/{name}"));
    group.sample_size(30).measurement_time(Duration::from_secs(5));
    for stored in crowd_sizes() {
        let sessions = rt.block_on(async {
            let sessions = SessionData::store_in(make(), &[SECRET]);
            fill(&sessions, stored).await;
            sessions
        });
        group.bench_with_input(BenchmarkId::from_parameter(stored), &stored, |b, _| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut spent = Duration::ZERO;
                    for i in 0..iterations {
                        let sid = format!("target-{i}");
                        sessions.set(&session("target-user", &sid)).await.unwrap();
                        let start = Instant::now();
                        let deleted = sessions.delete_by(SessionData::SID, sid.as_str()).await.unwrap();
                        spent += start.elapsed();
                        assert_eq!(deleted, 1);
                    }
                    spent
                })
            });
        });
        rt.block_on(empty(&sessions, stored));
    }
    group.finish();
}

fn crowd_sizes() -> Vec<usize> {
    let sizes = std::env::var("STORED").unwrap_or_else(|_| "1000,1000000".into());
    sizes.split(',').map(|n| n.trim().parse().expect("STORED: comma-separated counts")).collect()
}

fn wanted(backend: &str) -> bool {
    std::env::var("BACKENDS").ok().is_none_or(|list| list.split(',').any(|b| b.trim() == backend))
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    if wanted("moka") {
        bench_backend(c, &rt, "moka", MokaBackend::new);
    }
    if wanted("redis") {
        let redis = rt.block_on(RedisBackend::connect(&redis_url())).expect("Redis at REDIS_URL");
        let namespace = format!("bench-{}", std::process::id());
        bench_backend(c, &rt, "redis", || redis.clone().with_namespace(&namespace));
    }
    if wanted("postgres") {
        let postgres = rt.block_on(PostgresBackend::connect(&database_url())).expect("PostgreSQL at DATABASE_URL");
        bench_backend(c, &rt, "postgres", || postgres.clone());
    }
}

criterion_group!(delete_by_sid, benches);
criterion_main!(delete_by_sid);
