//! Where the state leaves the agent: the JSON API (shaped like Spark's monitoring REST API), the
//! WebSocket and gRPC streams of followed sessions, the Prometheus exposition, and the views of
//! the model they are built from (`rest`, `proto`).

pub mod http;
pub mod metrics;
pub mod proto;
pub mod rest;
pub mod stream;

use crate::control::Control;
use crate::model::Store;
use std::sync::Arc;

/// What the HTTP server's handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// The JSON API (every application and session: an operator's view) needs the API or the
    /// admin token, unless neither is set (`--allow-anonymous-api`); `POST /api/v1/cancel` needs
    /// the admin token; `GET /metrics` the metrics token when one is set.
    pub access: http::AccessConfig,
    pub control: Arc<Control>,
    /// The WebSocket stream, with its own (subscriber) token.
    pub streams: stream::Streams,
    /// `GET /metrics`, when the Prometheus recorder is installed.
    pub metrics: Option<Arc<metrics::MetricsExport>>,
}
