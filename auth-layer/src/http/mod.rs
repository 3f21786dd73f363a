//! Everything that speaks HTTP: the Tower middleware ([`AuthLayer`] and its [`AuthService`],
//! [`ResponseFuture`] and [`AuthBody`]), the auth routes, the per-request [`Session`] handle,
//! the [`RequireAuthLayer`] guard, [`Tenants`] (several providers in one app), error pages, and (feature `axum`) the extractors.
//!
//! It sits at the top: it uses the [`AuthClient`](crate::AuthClient) and nothing below it
//! uses this module.

#[cfg(feature = "axum")]
pub mod axum;
mod body;
mod future;
mod guard;
mod layer;
mod response;
mod routes;
mod service;
mod session;
mod tenants;

pub use body::AuthBody;
pub use future::ResponseFuture;
pub use guard::{RequireAuth, RequireAuthLayer};
pub use layer::AuthLayer;
pub use service::AuthService;
pub use session::Session;
pub use tenants::Tenants;
