//! What auth-layer counts and times, through the [`metrics`](https://docs.rs/metrics) facade:
//! logins, the provider's latency, refreshes and the time requests wait on them, back-channel
//! logouts, sessions created and ended, JWKS refetches.
//!
//! Why `metrics` and not OpenTelemetry's metrics API: with no recorder installed, a `metrics`
//! call is a load of a global and a no-op (no allocation, no lock), which keeps the per-request
//! path as it was for apps that export nothing; a recorder is one line in the app
//! (`metrics-exporter-prometheus`, or `metrics-exporter-opentelemetry` for OTLP), and the names
//! and units here follow OpenTelemetry's conventions (`auth_layer.*`, seconds), so either
//! exporter names them as an operator expects. [`METRICS`] lists every one; no label takes an
//! unbounded value (no user, no session id, no path): each label's values are fixed here or an
//! [`AuthError::code`](crate::AuthError::code).

use std::time::Duration;

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A count that only grows.
    Counter,
    /// A distribution of values (durations, in seconds).
    Histogram,
    /// A value that goes up and down.
    Gauge,
}

/// One metric auth-layer records: its name, kind, unit, labels and meaning.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Metric {
    /// Its name (OpenTelemetry's dotted form; Prometheus exporters write `_` for `.` and add
    /// the unit and `_total` suffixes).
    pub name: &'static str,
    /// Counter, histogram or gauge.
    pub kind: MetricKind,
    /// Its unit: `s` for durations, `{login}`-style annotations for counts.
    pub unit: &'static str,
    /// Its labels and the values each takes.
    pub labels: &'static str,
    /// What it counts.
    pub description: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: &'static str,
    labels: &'static str,
    description: &'static str,
) -> Metric {
    Metric { name, kind, unit, labels, description }
}

pub(crate) const LOGINS_STARTED: &str = "auth_layer.logins.started";
pub(crate) const LOGINS_COMPLETED: &str = "auth_layer.logins.completed";
pub(crate) const LOGINS_REFUSED: &str = "auth_layer.logins.refused";
pub(crate) const CALLBACK_DURATION: &str = "auth_layer.callback.duration";
pub(crate) const PROVIDER_REQUEST_DURATION: &str = "auth_layer.provider.request.duration";
pub(crate) const REFRESHES: &str = "auth_layer.refreshes";
pub(crate) const REFRESH_WAIT: &str = "auth_layer.refresh.wait.duration";
pub(crate) const REVOCATIONS: &str = "auth_layer.revocations";
pub(crate) const BACKCHANNEL_LOGOUTS: &str = "auth_layer.backchannel_logouts";
pub(crate) const SESSIONS_CREATED: &str = "auth_layer.sessions.created";
pub(crate) const SESSIONS_RENEWED: &str = "auth_layer.sessions.renewed";
pub(crate) const SESSIONS_ENDED: &str = "auth_layer.sessions.ended";
pub(crate) const JWKS_REFETCHES: &str = "auth_layer.jwks.refetches";
pub(crate) const TENANT_LOADS: &str = "auth_layer.tenants.loads";
pub(crate) const TENANT_CACHE_HITS: &str = "auth_layer.tenants.cache_hits";
pub(crate) const STORE_OPERATION_DURATION: &str = "auth_layer.store.operation.duration";
pub(crate) const STORE_ERRORS: &str = "auth_layer.store.errors";
pub(crate) const PROVIDER_RESENDS: &str = "auth_layer.provider.resends";
pub(crate) const NOTICES_CONNECTED: &str = "auth_layer.notices.connected";
pub(crate) const NOTICES_SILENCES: &str = "auth_layer.notices.silences";

/// Every metric auth-layer records.
pub const METRICS: &[Metric] = &[
    metric(LOGINS_STARTED, MetricKind::Counter, "{login}", "", "logins sent to the provider"),
    metric(LOGINS_COMPLETED, MetricKind::Counter, "{login}", "", "logins that came back and made a session"),
    metric(
        LOGINS_REFUSED,
        MetricKind::Counter,
        "{login}",
        "`reason`: the error code (`invalid_id_token`, `missing_transaction`, `provider_refused`, ...)",
        "callbacks that made no session, by why",
    ),
    metric(
        CALLBACK_DURATION,
        MetricKind::Histogram,
        "s",
        "`outcome`: `completed`, `refused`",
        "how long the callback took: code exchange, checks, userinfo, the session saved",
    ),
    metric(
        PROVIDER_REQUEST_DURATION,
        MetricKind::Histogram,
        "s",
        "`endpoint`: `token`, `par`, `userinfo`, `jwks`, `revocation`; `outcome`: `ok`, `refused` (4xx), `error` (5xx, unreachable)",
        "requests to the provider, DPoP nonce retries included",
    ),
    metric(
        PROVIDER_RESENDS,
        MetricKind::Counter,
        "{request}",
        "`endpoint`: `token`, `par`, `userinfo`",
        "requests sent once more on a new connection, the first having failed before any answer arrived",
    ),
    metric(
        REFRESHES,
        MetricKind::Counter,
        "{refresh}",
        "`outcome`: `granted`, `refused` (`invalid_grant`: the session ends), `failed`",
        "refresh-token grants this process sent",
    ),
    metric(
        REFRESH_WAIT,
        MetricKind::Histogram,
        "s",
        "`scope`: `process` (a request waiting on its session's refresh), `fleet` (waiting for the lease)",
        "time requests waited on a refresh, their own included",
    ),
    metric(
        REVOCATIONS,
        MetricKind::Counter,
        "{revocation}",
        "`outcome`: `revoked`, `failed` (the provider refused or did not answer; the session stays ended)",
        "refresh tokens of ended sessions revoked at the provider (RFC 7009), once per session across the fleet",
    ),
    metric(
        BACKCHANNEL_LOGOUTS,
        MetricKind::Counter,
        "{logout}",
        "`outcome`: `ended`, `refused` (a bad logout token), `replayed`, `failed` (the store)",
        "back-channel logout tokens received",
    ),
    metric(SESSIONS_CREATED, MetricKind::Counter, "{session}", "", "sessions made by logins"),
    metric(
        SESSIONS_RENEWED,
        MetricKind::Counter,
        "{session}",
        "",
        "rolling renewals: a session saved again as less than `renew_below` of its idle time was left",
    ),
    metric(
        SESSIONS_ENDED,
        MetricKind::Counter,
        "{session}",
        "`cause`: `logout`, `backchannel`, `refresh_refused`, `expired` (found past a limit when read), `replaced` (a login over a session the browser held), `ended_by_user` (from the user's list), `cap` (past `max_sessions_per_user`), `ended_by_admin` (`end_all_sessions`)",
        "sessions ended (a back-channel logout counts once, whatever it ends)",
    ),
    metric(
        STORE_OPERATION_DURATION,
        MetricKind::Histogram,
        "s",
        "`backend`: `redis`, `postgres`; `operation`: `get`, `put`, `update`, `insert`, `delete`, `delete_by_tag`, `keys_by_tag`, `notify`; `outcome`: `ok`, `error`",
        "operations of the shared backends (the in-memory one answers in nanoseconds and is not timed)",
    ),
    metric(
        STORE_ERRORS,
        MetricKind::Counter,
        "{error}",
        "`backend`, `operation`: as above",
        "backend operations that failed (the request got 503)",
    ),
    metric(
        TENANT_LOADS,
        MetricKind::Counter,
        "{load}",
        "`outcome`: `tenant`, `none` (the loader knows no tenant for the key), `failed`",
        "calls of the app's tenant loader (`Tenants::load_with`)",
    ),
    metric(
        TENANT_CACHE_HITS,
        MetricKind::Counter,
        "{request}",
        "",
        "requests served by a loaded tenant kept from an earlier load",
    ),
    metric(
        JWKS_REFETCHES,
        MetricKind::Counter,
        "{fetch}",
        "`for`: `id_token`, `logout_token`",
        "JWKS refetches for an unknown key",
    ),
    metric(
        NOTICES_CONNECTED,
        MetricKind::Gauge,
        "{listener}",
        "",
        "notice listeners (Redis pub/sub, PostgreSQL `LISTEN`) connected now; one per channel a store watches",
    ),
    metric(
        NOTICES_SILENCES,
        MetricKind::Counter,
        "{silence}",
        "",
        "times a connected listener was found silent past `Notices::SILENCE_LIMIT` (reads then asked the backend)",
    ),
];

/// Whether backend operations are timed: from [`describe_metrics`] on. Until then the
/// per-request path reads no clock for them.
static STORE_TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Describes every metric of [`METRICS`] (unit and meaning) to the installed recorder, and
/// turns on the timing of the shared backends' operations (`auth_layer.store.*`), which sit on
/// the per-request path and cost nothing until then: call it once, after installing a recorder.
/// Every other metric is recorded whether it is called or not.
pub fn describe_metrics() {
    STORE_TIMING.store(true, std::sync::atomic::Ordering::Relaxed);
    for m in METRICS {
        let unit = match m.unit {
            "s" => Some(metrics::Unit::Seconds),
            _ => None,
        };
        let description = m.description;
        match (m.kind, unit) {
            (MetricKind::Counter, _) => metrics::describe_counter!(m.name, description),
            (MetricKind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, description),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(m.name, description),
            (MetricKind::Gauge, _) => metrics::describe_gauge!(m.name, description),
        }
    }
}

/// Moves the gauge `name` by `by`.
pub(crate) fn gauge_add(name: &'static str, by: f64) {
    metrics::gauge!(name).increment(by);
}

pub(crate) fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

pub(crate) fn count_by(name: &'static str, label: &'static str, value: &'static str) {
    metrics::counter!(name, label => value).increment(1);
}

pub(crate) fn time(name: &'static str, label: (&'static str, &'static str), elapsed: Duration) {
    metrics::histogram!(name, label.0 => label.1).record(elapsed.as_secs_f64());
}

/// Runs a request to the provider's `endpoint` (`method` at `url`) in a span of its own
/// (`provider_request`, with OpenTelemetry's HTTP client fields: `http.request.method`,
/// `server.address`, `server.port`, `url.full` without its query, and the answer's
/// `http.response.status_code` or `error.type`), timing it under the outcome the status
/// `status_of` finds in the answer gives (none: it did not arrive).
pub(crate) async fn provider_call<T>(
    endpoint: &'static str,
    (method, url): (&str, &url::Url),
    status_of: impl FnOnce(&T) -> Option<u16>,
    work: impl std::future::Future<Output = T>,
) -> T {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "provider_request",
        otel.kind = "client",
        http.request.method = method,
        server.address = url.host_str().unwrap_or(""),
        server.port = url.port_or_known_default(),
        url.full = &url.as_str()[..url.as_str().find(['?', '#']).unwrap_or(url.as_str().len())],
        auth_layer.provider.endpoint = endpoint,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let answer = work.instrument(span.clone()).await;
    let outcome = match status_of(&answer) {
        Some(status) => {
            span.record("http.response.status_code", status);
            if status >= 400 {
                span.record("error.type", status);
            }
            http_outcome(status)
        }
        None => {
            span.record("error.type", "unreachable");
            "error"
        }
    };
    metrics::histogram!(PROVIDER_REQUEST_DURATION, "endpoint" => endpoint, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    answer
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// The labels of one backend operation: of its duration when it succeeds, when it fails, and
/// of its failure count. Static, so that recording them allocates nothing (a backend's reads are
/// on the per-request path).
pub(crate) type StoreLabels = (&'static [metrics::Label], &'static [metrics::Label], &'static [metrics::Label]);

#[cfg(any(feature = "redis", feature = "postgres"))]
/// [`StoreLabels`] of `backend`'s `operation`, as constants.
macro_rules! store_labels {
    ($backend:literal, $operation:literal) => {{
        use metrics::Label;
        const OK: &[Label] = &[
            Label::from_static_parts("backend", $backend),
            Label::from_static_parts("operation", $operation),
            Label::from_static_parts("outcome", "ok"),
        ];
        const ERROR: &[Label] = &[
            Label::from_static_parts("backend", $backend),
            Label::from_static_parts("operation", $operation),
            Label::from_static_parts("outcome", "error"),
        ];
        const FAILED: &[Label] =
            &[Label::from_static_parts("backend", $backend), Label::from_static_parts("operation", $operation)];
        (OK, ERROR, FAILED)
    }};
}
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) use store_labels;

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Where auth-layer's metrics are registered from.
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

#[cfg(any(feature = "redis", feature = "postgres"))]
/// Runs a backend operation, timing it under `labels` ([`store_labels!`]) and counting its
/// failure, once [`describe_metrics`] has been called.
///
/// Each runs in a `DEBUG` span (`store_operation`: `db.system.name`, `db.operation.name`, and
/// `error.type` when it fails): a session read is on the per-request path, so these spans are
/// made only for a subscriber that asks for `auth_layer=debug`.
pub(crate) async fn store_op<T, E>(
    labels: StoreLabels,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;
    let span = tracing::debug_span!(
        "store_operation",
        otel.kind = "client",
        db.system.name = db_system(labels.2[0].value()),
        db.operation.name = labels.2[1].value(),
        error.type = tracing::field::Empty,
    );
    let work = async {
        let result = work.await;
        if result.is_err() {
            tracing::Span::current().record("error.type", "unavailable");
        }
        result
    }
    .instrument(span);
    if !STORE_TIMING.load(std::sync::atomic::Ordering::Relaxed) {
        return work.await;
    }
    let started = std::time::Instant::now();
    let result = work.await;
    let elapsed = started.elapsed().as_secs_f64();
    let (ok, error, failed) = labels;
    let timed = metrics::Key::from_static_parts(STORE_OPERATION_DURATION, if result.is_ok() { ok } else { error });
    metrics::with_recorder(|recorder| recorder.register_histogram(&timed, &METADATA).record(elapsed));
    if result.is_err() {
        let key = metrics::Key::from_static_parts(STORE_ERRORS, failed);
        metrics::with_recorder(|recorder| recorder.register_counter(&key, &METADATA).increment(1));
    }
    result
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// OpenTelemetry's `db.system.name` of a backend label.
fn db_system(backend: &str) -> &str {
    match backend {
        "postgres" => "postgresql",
        other => other,
    }
}

/// The `outcome` of a provider's HTTP answer.
pub(crate) fn http_outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "ok",
        400..=499 => "refused",
        _ => "error",
    }
}
