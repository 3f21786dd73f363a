//! The quickstart app: auth-layer on axum, configured by the environment.
//!
//! `/` is public and says whether one is logged in; `/private` needs a login; the layer adds
//! `/auth/login`, `/auth/callback`, `/auth/logout` and `/auth/profile`.

use auth_layer::{AuthLayer, User};
use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// The app's routes with `auth` stacked on them.
pub fn app(auth: AuthLayer) -> Router {
    Router::new().route("/", get(home)).route("/private", get(private)).layer(auth.with_profile_route(true))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>auth-layer quickstart</title></head><body>{body}</body></html>"
    ))
}

async fn home(user: Option<User>) -> Html<String> {
    match user {
        Some(user) => page(&format!(
            "<p id=\"status\">Logged in as <strong id=\"name\">{}</strong></p>\
             <p><a href=\"/private\">Private page</a> · <a id=\"logout\" href=\"/auth/logout\">Log out</a></p>",
            escape(user.name().unwrap_or(user.sub()))
        )),
        None => page("<p id=\"status\">Logged out</p><p><a id=\"login\" href=\"/auth/login\">Log in</a></p>"),
    }
}

async fn private(user: User) -> Html<String> {
    let claims = serde_json::to_string_pretty(user.claims()).unwrap_or_default();
    page(&format!(
        "<h1>Private</h1><p id=\"sub\">{}</p><pre id=\"claims\">{}</pre><p><a href=\"/auth/logout\">Log out</a></p>",
        escape(user.sub()),
        escape(&claims)
    ))
}
