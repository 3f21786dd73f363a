//! The guide: how auth-layer works and how to use each part of it, chapter by chapter. The
//! README is the front door (what it is, the two commands, a first app); this is the rest.
//!
//! Every Rust block here is compiled by the test command (`cargo test --doc`), and those that
//! need no provider run. The chapters' text lives in `auth-layer/guide/*.md`.
//!
//! | chapter | what it covers |
//! | --- | --- |
//! | [`flow`] | a login, a request, a refresh and a logout, step by step |
//! | [`routes`] | the `/auth/*` routes, guards and extractors, errors, login parameters, silent login, step-up |
//! | [`configuration`] | every setting (environment and builder), hooks and claims |
//! | [`tokens`] | access tokens and refresh, DPoP, FAPI 2.0 |
//! | [`backchannel_logout`] | the provider ending sessions, and why a logout is final |
//! | [`stores`] | cookie, memory, Redis (and Cluster), PostgreSQL, SQLite: what each costs and keeps |
//! | [`typed_stores`] | `#[derive(Store)]`: records of the app's own |
//! | [`own_store`] | a store on the app's own database, proven by the conformance kit |
//! | [`testing`] | the app's own tests: sessions minted without a provider |
//! | [`tenants`] | several providers in one app, by host or by the app's rule |
//! | [`provider_network`] | connections the provider closed, a provider that hangs |
//! | [`sessions`] | the user's list of sessions, ending them, caps, revocation |
//! | [`fleet`] | several instances behind a load balancer |
//! | [`operating`] | metrics, logs, traces, proxies, health, rolling deploys |
//! | [`performance`] | what a request costs, and where the figures come from |
//! | [`security`] | what is checked, how it is tested, the OpenID Foundation's plans |
//! | [`migrating`] | from Auth0's Python SDKs (auth0-fastapi, auth0-server-python) |

#[doc = include_str!("../guide/flow.md")]
pub mod flow {}
#[doc = include_str!("../guide/routes.md")]
pub mod routes {}
#[doc = include_str!("../guide/configuration.md")]
pub mod configuration {}
#[doc = include_str!("../guide/tokens.md")]
pub mod tokens {}
#[doc = include_str!("../guide/backchannel_logout.md")]
pub mod backchannel_logout {}
#[doc = include_str!("../guide/stores.md")]
pub mod stores {}
#[doc = include_str!("../guide/typed_stores.md")]
pub mod typed_stores {}
#[doc = include_str!("../guide/own_store.md")]
pub mod own_store {}
#[doc = include_str!("../guide/testing.md")]
pub mod testing {}
#[doc = include_str!("../guide/tenants.md")]
pub mod tenants {}
#[doc = include_str!("../guide/provider_network.md")]
pub mod provider_network {}
#[doc = include_str!("../guide/sessions.md")]
pub mod sessions {}
#[doc = include_str!("../guide/fleet.md")]
pub mod fleet {}
#[doc = include_str!("../guide/operating.md")]
pub mod operating {}
#[doc = include_str!("../guide/performance.md")]
pub mod performance {}
#[doc = include_str!("../guide/security.md")]
pub mod security {}
#[doc = include_str!("../guide/migrating.md")]
pub mod migrating {}
