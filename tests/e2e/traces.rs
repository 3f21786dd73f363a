//! The spans of a login against the real provider, sessions in Redis: the callback's route span
//! holds the token request's span and the store's write; each carries OpenTelemetry's field
//! names, and none a secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use auth_layer_tests::{Browser, CLIENT_SECRET, EnvOptions, TestEnv};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One span as it was made: its name, parent and fields.
#[derive(Debug, Clone)]
struct Recorded {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

/// Every span made while it is the subscriber's layer.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Recorded>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx.span(id).and_then(|span| span.parent()).map(|parent| parent.id().into_u64());
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = Recorded { id: id.into_u64(), name: attrs.metadata().name(), parent, fields };
        self.0.lock().unwrap().push(span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some(span) = spans.iter_mut().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_login_is_traced_callback_over_token_request_and_store_write_with_no_secret() {
    let spans = Spans::default();
    let filter = tracing_subscriber::EnvFilter::new("auth_layer=debug");
    let subscriber = tracing_subscriber::registry().with(filter).with(spans.clone());
    // The app runs on this thread (a current-thread runtime): all its spans are captured.
    let _scope = tracing::subscriber::set_default(subscriber);
    let redis = auth_layer_tests::servers::redis_url();
    let env =
        TestEnv::start_with(EnvOptions { store: quickstart::StoreChoice::Redis(redis), ..Default::default() }).await;
    let browser = Browser::new();
    let done = browser.login(&env.app_url, "ines").await;
    assert_eq!(done.status(), reqwest::StatusCode::FOUND);
    let cookie = browser.cookie_header(&env.app_url);
    let spans = spans.0.lock().unwrap().clone();

    let callback = spans
        .iter()
        .find(|s| s.name == "auth_route" && s.fields.get("auth_layer.route").map(String::as_str) == Some("callback"))
        .unwrap_or_else(|| panic!("no callback span in {spans:#?}"));
    assert_eq!(callback.fields["http.request.method"], "GET");
    assert_eq!(callback.fields["http.route"], "/auth/callback");
    assert_eq!(callback.fields["http.response.status_code"], "302");
    let descends = |span: &Recorded, ancestor: u64| {
        let mut parent = span.parent;
        while let Some(id) = parent {
            if id == ancestor {
                return true;
            }
            parent = spans.iter().find(|s| s.id == id).and_then(|s| s.parent);
        }
        false
    };

    let token = spans
        .iter()
        .find(|s| s.name == "provider_request" && s.fields["auth_layer.provider.endpoint"] == "token")
        .expect("a token request span");
    assert_eq!(token.parent, Some(callback.id), "the token request is the callback's");
    assert_eq!(token.fields["http.request.method"], "POST");
    assert_eq!(token.fields["server.address"], "127.0.0.1");
    assert_eq!(token.fields["url.full"], format!("{}/token", env.provider.issuer));
    assert_eq!(token.fields["http.response.status_code"], "200");
    assert_eq!(token.fields["otel.kind"], "client");

    let writes: Vec<&Recorded> = spans
        .iter()
        .filter(|s| s.name == "store_operation" && descends(s, callback.id))
        .filter(|s| ["put", "insert", "update"].contains(&s.fields["db.operation.name"].as_str()))
        .collect();
    assert!(!writes.is_empty(), "the session's write, within the callback: {spans:#?}");
    assert!(writes.iter().all(|w| w.fields["db.system.name"] == "redis"), "{writes:#?}");
    assert!(!descends(writes[0], token.id), "the write follows the token request, it is not inside it");

    // A span for each auth route the login went through, and nothing secret in any field.
    let routes: Vec<&str> =
        spans.iter().filter(|s| s.name == "auth_route").map(|s| s.fields["auth_layer.route"].as_str()).collect();
    assert_eq!(routes, ["login", "callback"]);
    let session_cookie = cookie.split("; ").find(|c| c.starts_with("_a0_session=")).expect("the session cookie");
    let session_id = &session_cookie["_a0_session=".len()..];
    for span in &spans {
        for (name, value) in &span.fields {
            for secret in [CLIENT_SECRET, session_id, "code=", "refresh_token", "Bearer"] {
                assert!(!value.contains(secret), "{} field {name} holds {secret}: {value}", span.name);
            }
        }
    }
}
