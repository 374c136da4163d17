//! sparkscope: follows a Spark Connect server through its listener events and attributes every
//! Spark job to the Connect session, operation and notebook-cell tag that ran it.
//!
//! The modules follow the data: [`ingest`] (listener connections, event logs, parsing, Spark's
//! REST API after gaps) → [`model`] (state and attribution) → [`publish`] (HTTP JSON, WebSocket
//! and gRPC streams, Prometheus) and [`control`] (cancel). [`spark_api`] is Spark's REST API,
//! read by ingest and the stream, written by the JSON API. [`agent`] assembles them from their
//! [`config`] and runs the [`upkeep`] timers over the store; [`auth`], [`telemetry`] (the metric
//! catalog), [`tls`], [`clock`] and [`shutdown`] serve every layer. The command line is the
//! binary's (`src/cli/`).

pub mod agent;
pub mod auth;
pub mod clock;
pub mod config;
pub mod control;
pub mod flags;
pub mod ingest;
pub mod model;
pub mod publish;
pub mod shutdown;
pub mod spark_api;
pub mod telemetry;
pub mod tls;
pub mod upkeep;
