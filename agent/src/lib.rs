//! sparkscope: follows a Spark Connect server through its listener events and attributes every
//! Spark job to the Connect session, operation and notebook-cell tag that ran it.
//!
//! The modules follow the data: [`ingest`] (listener connections, event logs, parsing) →
//! [`model`] (state and attribution) → [`publish`] (HTTP JSON, WebSocket and gRPC streams,
//! Prometheus) and [`control`] (cancel). [`agent`] assembles them; [`local`] runs one beside a
//! local Spark Connect server, with the pieces [`install`] finds; [`auth`], [`telemetry`] (the
//! metric catalog), [`clock`] and [`shutdown`] serve every layer.

pub mod agent;
pub mod auth;
pub mod clock;
pub mod control;
pub mod ingest;
pub mod install;
#[cfg(unix)]
pub mod local;
pub mod model;
pub mod publish;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
