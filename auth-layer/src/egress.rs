//! The HTTP client of every call to the provider, and how it survives the provider's network:
//! a pooled connection is used only while the provider (and whatever sits between) still holds
//! it, and a request that fails on a connection before any byte of its answer arrived is sent
//! once more on a new one.
//!
//! # Why a closed connection fails a request, and what is done
//!
//! The client keeps idle connections to reuse them. The provider closes idle ones after its own
//! keep-alive time (Node's default is 5 s, announced as `Keep-Alive: timeout=5`), and load
//! balancers, NAT gateways and firewalls on the way drop idle flows, often without a word: the
//! close then reaches the app only as a reset of its next request on that connection. Two
//! defences:
//!
//! - **No stale reuse.** A connection idle for longer than
//!   [`provider_idle_timeout`](crate::AuthConfigBuilder::provider_idle_timeout) (30 s by
//!   default: below the idle limits of common balancers and gateways, 60 s and more) is not
//!   reused, nor past what the provider announces in `Keep-Alive: timeout=N`, less a margin of
//!   1 s (the first announcement lowers the limit for this provider's client from then on).
//! - **One resend on a new connection.** A request whose connection failed before any byte of
//!   the answer arrived (reset, closed, broken: not a timeout, and not a connection that could
//!   not be opened) is built again (a fresh DPoP proof and client assertion: a provider may
//!   refuse a `jti` it has seen) and sent once more on a connection opened for it. A browser
//!   does the same for the same reason.
//!
//! # Why a token request may be sent twice
//!
//! A request that failed that way almost always never reached the provider: a connection the
//! provider closed, or a flow a gateway forgot, refuses the first packet. At the rare edge where
//! the provider did receive it (the connection broke after the request arrived, before the
//! answer left), the second request meets a spent grant: an authorization code used twice is
//! refused (`invalid_grant`: the callback fails, the user logs in again), and a refresh token
//! used twice under rotation may end the grant (the session ends cleanly, as any `invalid_grant`
//! ends it everywhere). Nothing is corrupted either way; each resend is logged and counted
//! (`auth_layer.provider.resends`).
//!
//! # A provider that hangs or is gone
//!
//! At most [`provider_max_calls`](crate::AuthConfigBuilder::provider_max_calls) calls are in
//! flight to a provider at once; one past it fails at once (503) instead of queueing behind a
//! provider that hangs. A call that gets no answer (a timeout, a connection refused, a resend
//! that failed too) marks the provider down: calls then fail at once with 503 and
//! `Retry-After`, except one probe every [`PROBE_INTERVAL`], which goes through; the first that
//! is answered marks it up again. So a provider that comes back is used within half a second of
//! the next request, and requests that need no provider never wait on it.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::AuthConfig;
use crate::telemetry;

/// What is taken off an idle time the provider announces, so that the client lets a connection
/// go before the provider does.
const MARGIN: Duration = Duration::from_secs(1);

/// How many times discovery asks a provider that does not answer (or answers 5xx) before the
/// client cannot be made.
pub(crate) const DISCOVERY_ATTEMPTS: u32 = 5;

/// The wait before attempt `attempt + 1`: 250 ms doubled at each attempt, at most 4 s, of
/// which a random half to all (instances started together spread out).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1 << attempt.min(4)).min(Duration::from_secs(4));
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random generator failed");
    let share = 0.5 + 0.5 * f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX);
    base.mul_f64(share)
}

/// While the provider is down, how often one call goes through to see whether it is back.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Why a call to the provider got no answer.
#[derive(Debug)]
pub(crate) enum SendError<E> {
    /// The request could not be built.
    Build(E),
    /// It was sent and got no answer.
    Failed(reqwest::Error),
    /// It was not sent: the provider is down (between probes) or has as many calls in flight
    /// as allowed.
    FailingFast(&'static str),
}

/// The provider's HTTP client: pooled connections under an idle limit, and fresh ones for a
/// resend.
pub(crate) struct ProviderHttp {
    /// Reuses connections idle for at most `idle_ms`.
    pooled: RwLock<reqwest::Client>,
    /// The pooled client's idle limit, in milliseconds.
    idle_ms: AtomicU64,
    /// Keeps no connection: every request on a new one.
    fresh: reqwest::Client,
    connect_timeout: Duration,
    timeout: Duration,
    /// Whether the endpoint policy's resolver is left out.
    allow_private: bool,
    /// Calls in flight, at most `provider_max_calls`.
    calls: tokio::sync::Semaphore,
    /// Whether the last call got no answer.
    down: std::sync::atomic::AtomicBool,
    /// While down: when (ms since `epoch`) the next probe may go.
    probe_at_ms: AtomicU64,
    epoch: std::time::Instant,
}

impl ProviderHttp {
    /// The client `config` asks for (its timeouts, its endpoint policy).
    pub(crate) fn new(config: &AuthConfig) -> Result<Self, reqwest::Error> {
        let (connect_timeout, timeout) = (config.provider_connect_timeout, config.provider_timeout);
        let allow_private = config.allow_private_endpoints;
        let idle = config.provider_idle_timeout;
        Ok(Self {
            pooled: RwLock::new(build(connect_timeout, timeout, allow_private, Some(idle))?),
            idle_ms: AtomicU64::new(idle.as_millis() as u64),
            fresh: build(connect_timeout, timeout, allow_private, None)?,
            connect_timeout,
            timeout,
            allow_private,
            calls: tokio::sync::Semaphore::new(config.provider_max_calls),
            down: std::sync::atomic::AtomicBool::new(false),
            probe_at_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a call may go now: the provider is up, or it is down and this call is the probe
    /// (the first since [`PROBE_INTERVAL`]).
    fn may_call(&self) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_ms();
        let due = self.probe_at_ms.load(Ordering::Acquire);
        let next = now + PROBE_INTERVAL.as_millis() as u64;
        now >= due && self.probe_at_ms.compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// Records whether a call was answered: the provider is up, or down until a probe is
    /// answered.
    fn answered(&self, answered: bool, endpoint: &'static str) {
        if answered {
            if self.down.swap(false, Ordering::AcqRel) {
                tracing::info!(endpoint, "the provider answers again");
            }
            return;
        }
        self.probe_at_ms.store(self.now_ms() + PROBE_INTERVAL.as_millis() as u64, Ordering::Release);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(endpoint, "the provider does not answer: failing its calls fast, probing it every 0.5 s");
        }
    }

    /// The pooled client, for calls made through another crate's client (discovery, key sets).
    pub(crate) fn client(&self) -> reqwest::Client {
        self.pooled.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The idle time after which a pooled connection is not reused now.
    #[cfg(test)]
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_ms.load(Ordering::Relaxed))
    }

    /// Sends the request `build` makes with the client it is given, on a pooled connection; if
    /// that fails before any byte of the answer arrived, builds it again and sends it once on a
    /// new connection (see the module's docs). `endpoint` names the call in logs and metrics.
    ///
    /// Fails at once, sending nothing, while the provider is down (but for a probe) or has as
    /// many calls in flight as allowed (see the module's docs).
    pub(crate) async fn send<E>(
        &self,
        endpoint: &'static str,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, E>,
    ) -> Result<reqwest::Response, SendError<E>> {
        if !self.may_call() {
            return Err(SendError::FailingFast("the provider is not answering; calls fail fast until it does"));
        }
        let Ok(_permit) = self.calls.try_acquire() else {
            tracing::warn!(endpoint, "as many calls to the provider in flight as allowed; this one is refused");
            return Err(SendError::FailingFast("too many calls to the provider are in flight"));
        };
        let first = build(&self.client()).map_err(SendError::Build)?.send().await;
        let response = match first {
            Err(err) if unanswered(&err) => {
                tracing::info!(endpoint, error = %err, "the provider's connection failed before an answer; sending once more on a new connection");
                telemetry::count_by(telemetry::PROVIDER_RESENDS, "endpoint", endpoint);
                build(&self.fresh).map_err(SendError::Build)?.send().await
            }
            other => other,
        };
        self.answered(response.is_ok(), endpoint);
        let response = response.map_err(SendError::Failed)?;
        self.learn(response.headers());
        Ok(response)
    }

    /// Lowers the pooled client's idle limit to what the provider announces
    /// (`Keep-Alive: timeout=N`), less [`MARGIN`], when that is below the current one.
    fn learn(&self, headers: &reqwest::header::HeaderMap) {
        let Some(announced) = headers.get("keep-alive").and_then(|v| v.to_str().ok()).and_then(keep_alive_timeout)
        else {
            return;
        };
        // Below a second, half of it: a margin must leave something.
        let limit = if announced > MARGIN { announced - MARGIN } else { announced / 2 };
        let limit_ms = limit.as_millis() as u64;
        if limit_ms >= self.idle_ms.load(Ordering::Relaxed) {
            return;
        }
        let mut pooled = self.pooled.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have lowered it meanwhile.
        if limit_ms >= self.idle_ms.load(Ordering::Relaxed) {
            return;
        }
        match build(self.connect_timeout, self.timeout, self.allow_private, Some(limit)) {
            Ok(client) => {
                *pooled = client;
                self.idle_ms.store(limit_ms, Ordering::Relaxed);
                tracing::info!(
                    announced_s = announced.as_secs_f64(),
                    idle_limit_s = limit.as_secs_f64(),
                    "the provider keeps idle connections shorter: reusing them for less"
                );
            }
            Err(err) => tracing::warn!(%err, "could not rebuild the provider's client for a shorter idle limit"),
        }
    }
}

/// A client with these timeouts, under the endpoint policy unless `allow_private`, pooling
/// connections idle up to `idle` (none: pooling nothing).
fn build(
    connect_timeout: Duration,
    timeout: Duration,
    allow_private: bool,
    idle: Option<Duration>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut http = reqwest::Client::builder()
        // Never follow redirects from the provider's endpoints (SSRF, token leakage).
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout);
    http = match idle {
        // Under a tenth of a second (a provider announcing `timeout=0`): no reuse at all.
        Some(idle) if idle >= Duration::from_millis(100) => http.pool_idle_timeout(idle),
        _ => http.pool_max_idle_per_host(0),
    };
    if !allow_private {
        http = http.dns_resolver(std::sync::Arc::new(crate::endpoint::PolicyResolver));
    }
    http.build()
}

/// Whether `err` is a failure of the connection before any answer arrived, which a resend on a
/// new connection may cure: not a timeout (the provider may be working on it), not a connection
/// that could not be opened (a new one would not open either).
fn unanswered(err: &reqwest::Error) -> bool {
    err.is_request() && !err.is_timeout() && !err.is_connect()
}

/// `timeout=N` of a `Keep-Alive` header value (RFC 9112's predecessor, still sent by Node and
/// others), if there is one.
fn keep_alive_timeout(value: &str) -> Option<Duration> {
    value.split(',').find_map(|part| {
        let (name, seconds) = part.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        let seconds: u64 = seconds.trim().trim_matches('"').parse().ok()?;
        Some(Duration::from_secs(seconds))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_four_seconds_and_varies_within_its_upper_half() {
        for (attempt, base) in [(0, 250), (1, 500), (2, 1000), (3, 2000), (4, 4000), (9, 4000)] {
            let waits: Vec<Duration> = (0..50).map(|_| backoff(attempt)).collect();
            let base = Duration::from_millis(base);
            assert!(waits.iter().all(|w| *w >= base / 2 && *w <= base), "attempt {attempt}: {waits:?}");
            assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        }
    }

    #[test]
    fn the_keep_alive_timeout_is_read_in_any_order_and_case() {
        assert_eq!(keep_alive_timeout("timeout=5"), Some(Duration::from_secs(5)));
        assert_eq!(keep_alive_timeout("max=100, Timeout=15"), Some(Duration::from_secs(15)));
        assert_eq!(keep_alive_timeout("timeout=\"7\""), Some(Duration::from_secs(7)));
        assert_eq!(keep_alive_timeout("max=100"), None);
        assert_eq!(keep_alive_timeout("timeout=soon"), None);
    }

    /// A loopback server answering each request by `answer` (its connection number, counting
    /// from 0): `None` resets the connection without a byte; how many connections it took.
    async fn server(answer: fn(usize) -> Option<&'static str>) -> (String, std::sync::Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let connections = std::sync::Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) as usize;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    match answer(n) {
                        Some(response) => {
                            let _ = stream.write_all(response.as_bytes()).await;
                        }
                        None => {
                            let _ = stream.set_zero_linger();
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    /// A token-like POST to `url` through a new client: what `send` gave, and how many times
    /// the request was built.
    async fn post_counting(url: &str) -> (Result<reqwest::Response, SendError<()>>, u64) {
        let config = crate::config::test_config(Default::default()).allow_private_endpoints(true).build().unwrap();
        let http = ProviderHttp::new(&config).unwrap();
        let built = AtomicU64::new(0);
        let sent = http
            .send("token", |client| {
                built.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(client.post(url).body("grant_type=refresh_token"))
            })
            .await;
        (sent, built.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_request_reset_before_an_answer_is_built_again_and_sent_once_more_on_a_new_connection() {
        let (url, connections) =
            server(|n| (n > 0).then_some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")).await;
        let (sent, built) = post_counting(&url).await;
        assert_eq!(sent.expect("the second send is answered").status(), 200);
        assert_eq!(built, 2, "built again for the second send");
        assert_eq!(connections.load(Ordering::SeqCst), 2, "on a connection of its own");
    }

    #[tokio::test]
    async fn a_request_answered_even_with_an_error_is_sent_once() {
        let (url, connections) =
            server(|_| Some("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"))
                .await;
        let (sent, built) = post_counting(&url).await;
        assert_eq!(sent.unwrap().status(), 503);
        assert_eq!((built, connections.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test]
    async fn a_provider_that_cannot_be_reached_is_not_called_twice() {
        // A port nothing listens on: the connection is refused, which a resend would not cure.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (sent, built) = post_counting(&format!("http://127.0.0.1:{port}/token")).await;
        assert!(matches!(sent, Err(SendError::Failed(_))));
        assert_eq!(built, 1);
    }

    #[tokio::test]
    async fn calls_past_the_bound_fail_at_once_and_a_provider_that_hangs_is_probed_not_waited_on() {
        // A server that takes connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = crate::config::test_config(Default::default())
            .allow_private_endpoints(true)
            .provider_max_calls(2)
            .provider_timeout(Duration::from_millis(300))
            .provider_connect_timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let http = std::sync::Arc::new(ProviderHttp::new(&config).unwrap());
        let call = |http: std::sync::Arc<ProviderHttp>, url: String| async move {
            let started = std::time::Instant::now();
            let sent = http.send("token", |client| Ok::<_, ()>(client.post(&url))).await;
            (sent, started.elapsed())
        };
        let calls: Vec<_> = (0..5).map(|_| tokio::spawn(call(http.clone(), url.clone()))).collect();
        let mut fast = 0;
        for done in calls {
            match done.await.unwrap() {
                (Err(SendError::FailingFast(_)), took) => {
                    assert!(took < Duration::from_millis(100), "{took:?}");
                    fast += 1;
                }
                (Err(SendError::Failed(err)), _) => assert!(err.is_timeout(), "{err}"),
                (other, _) => panic!("{:?}", other.map(|r| r.status())),
            }
        }
        assert_eq!(fast, 3, "two calls in flight at most");
        // Timed out: down. The next call fails at once; after the probe interval one goes.
        let (sent, took) = call(http.clone(), url.clone()).await;
        assert!(matches!(sent, Err(SendError::FailingFast(_))) && took < Duration::from_millis(100));
        tokio::time::sleep(PROBE_INTERVAL).await;
        let (sent, took) = call(http.clone(), url.clone()).await;
        assert!(matches!(sent, Err(SendError::Failed(_))) && took >= Duration::from_millis(250), "the probe went");
    }

    #[test]
    fn an_announced_idle_time_lowers_the_limit_with_a_margin_and_never_raises_it() {
        let config = crate::config::test_config(Default::default()).build().unwrap();
        let http = ProviderHttp::new(&config).unwrap();
        assert_eq!(http.idle_timeout(), Duration::from_secs(30), "the default");
        let announce = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("keep-alive", value.parse().unwrap());
            http.learn(&headers);
            http.idle_timeout()
        };
        assert_eq!(announce("timeout=5"), Duration::from_secs(4));
        assert_eq!(announce("timeout=60"), Duration::from_secs(4), "never raised");
        assert_eq!(announce("timeout=1"), Duration::from_millis(500), "half, below the margin");
    }
}
