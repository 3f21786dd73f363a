//! The multi-tenant demo: the quickstart's pages, a provider per host name (`AUTH_TENANTS`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _telemetry = quickstart::init_logging()?;
    let lookup = |name: &str| std::env::var(name).ok();
    let tenants = multi_tenant::tenants_from(&lookup)?;
    let store = quickstart::StoreChoice::from_env()?;
    let layer = multi_tenant::layer(&tenants, lookup, store, quickstart::SharedChoice::from_env()?).await?;
    let base = layer.tenants().clients().first().ok_or("AUTH_TENANTS names no tenant")?.config().base_url().clone();
    let addr = quickstart::listen_addr(&base, lookup)?;
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    tracing::info!(%addr, tenants = tenants.len(), "listening");
    axum::serve(listener, quickstart::app(layer))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
