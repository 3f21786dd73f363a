//! The quickstart: configured only by the environment (`AUTH_*`, `APP_BASE_URL`, and
//! `SESSION_STORE=cookie|memory|redis|postgres|sqlite`, `SHARED_STATE=memory|redis|postgres`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _telemetry = quickstart::init_logging()?;
    let config = quickstart::config_from_env()?;
    quickstart::serve(config, quickstart::StoreChoice::from_env()?, quickstart::SharedChoice::from_env()?).await
}
