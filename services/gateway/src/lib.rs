//! Gatehouse: one public port for HTTP/1.1, HTTP/2 and gRPC, routed to
//! upstream clusters, with an admin port for operators.
//!
//! The request path reads from the module list in order; [`stack`] composes
//! it and says why each stage stands where it does.

pub mod accept;
pub mod access_log;
pub mod admin;
pub mod admin_api;
pub mod admin_client;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod head;
pub mod headers;
pub mod hygiene;
pub mod proxy;
pub mod request_id;
pub mod router;
pub mod serve;
pub mod stack;
pub mod store;
pub mod telemetry;
pub mod upstream;
