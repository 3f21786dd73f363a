//! Everything that speaks HTTP: the Tower middleware ([`AuthLayer`] and its [`AuthService`],
//! [`ResponseFuture`] and [`AuthBody`]), the auth routes, the per-request [`Session`] handle,
//! the [`RequireAuthLayer`] guard, several providers in one app ([`Tenants`], and the
//! [`TenantLayer`] in front of one provider's service), error pages, and (feature `axum`) the
//! extractors.
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
mod tenancy;
mod tenants;

pub use body::AuthBody;
pub use future::ResponseFuture;
pub use guard::{RequireAuth, RequireAuthLayer};
pub use layer::AuthLayer;
pub use service::AuthService;
pub use session::Session;
pub use tenancy::{TenantFuture, TenantLayer, TenantService};
pub use tenants::Tenants;
