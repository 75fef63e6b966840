//! `warden-gateway`: the secure inference gateway in front of OpenAI-compatible model
//! servers.
//!
//! Code map: [`server`] (listeners, request flow, upstream pool, streaming, lockdown),
//! [`pipeline`] (the [`pipeline::Check`] trait and the built-in checks), [`validate`]
//! (strict per-endpoint bodies and the parameter policy), [`json`] (parsing that notices
//! duplicate keys), [`minimize`] (response
//! minimisation, JSON and SSE), [`authz`] (Cedar), [`jwt`] (OIDC tokens), [`keys`] (API
//! keys), [`limits`], [`killswitch`], [`screening`] (input/output screening, behaviour and
//! drift monitors, alerts), [`audit`] (the [`audit::AuditSink`] seam), [`admin`]
//! (the mTLS + TOTP admin listener and its client), [`tls`], [`upstream`] (connections to model servers, plain or TLS), [`totp`], [`metrics`],
//! [`directory`] (the narrow state trait), [`config`].

pub mod admin;
pub mod audit;
pub mod authz;
pub mod config;
pub mod directory;
mod error;
pub mod json;
pub mod jwt;
pub mod keys;
pub mod killswitch;
pub mod limits;
pub mod metrics;
pub mod minimize;
pub mod pipeline;
pub mod screening;
pub mod server;
pub mod tlog_sink;
pub mod tls;
pub mod totp;
pub mod upstream;
pub mod validate;
pub mod workers;

pub use error::Error;
pub use pipeline::Refusal;
