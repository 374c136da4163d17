//! sparkscope: follows a Spark Connect server through its listener events and attributes every
//! Spark job to the Connect session, operation and notebook-cell tag that ran it.
//!
//! The modules follow the data: [`ingest`] (listener connections, event logs, parsing) →
//! [`model`] (state and attribution) → [`publish`] (HTTP JSON, protobuf views).

pub mod control;
pub mod ingest;
pub mod model;
pub mod publish;
pub mod replay;
pub mod telemetry;
