//! Serves [`hyper_server::service`] with hyper on `LISTEN_ADDR` (`host:port`), or on the host
//! and port of `APP_BASE_URL` when it is unset.

use auth_layer::{AuthConfigBuilder, AuthLayer};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = AuthConfigBuilder::from_env()?.profile_route(true).build()?;
    let base = config.base_url().clone();
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| {
        format!("{}:{}", base.host_str().unwrap_or("127.0.0.1"), base.port_or_known_default().unwrap_or(3000))
    });
    let service = hyper_server::service(AuthLayer::from_config(config).await?);
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    tracing::info!(%addr, "hyper example listening; open {base}");
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(err) = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
}
