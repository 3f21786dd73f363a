//! The quickstart with sessions in PostgreSQL at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the schema is created at start.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _telemetry = quickstart::init_logging()?;
    let config = quickstart::config_from_env()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    quickstart::serve(config, quickstart::StoreChoice::Postgres(url), quickstart::SharedChoice::from_env()?).await
}
