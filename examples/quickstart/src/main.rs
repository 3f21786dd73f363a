//! Runs the quickstart app on the host and port of `APP_BASE_URL`.

use auth_layer::AuthConfig;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = AuthConfig::from_env()?;
    let base = config.base_url().clone();
    let host = base.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_owned();
    let port = base.port_or_known_default().unwrap_or(3000);
    let store = quickstart::SessionStore::from_env()?;
    let auth = quickstart::auth_layer(config, store.clone()).await?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    tracing::info!(?store, "quickstart listening; open {base}");
    axum::serve(listener, quickstart::app(auth))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
