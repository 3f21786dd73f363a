//! The quickstart with sessions in Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`):
//! run several of these behind one load balancer and they share sessions.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _telemetry = quickstart::init_logging()?;
    let config = quickstart::config_from_env()?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    quickstart::serve(config, quickstart::StoreChoice::Redis(url), quickstart::SharedChoice::from_env()?).await
}
