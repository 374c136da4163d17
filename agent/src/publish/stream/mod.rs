//! The streams of followed Connect sessions (docs/streaming-api.md): a snapshot, then coalesced
//! deltas. One subscriber loop (`subscriber`) serves both transports, which differ only in how a
//! frame is written: JSON text over a WebSocket (`ws`), protobuf over gRPC (`grpc`). What a
//! subscriber follows and has seen is a `follow::Follower`.

pub mod follow;
pub mod grpc;
pub mod subscriber;
pub mod ws;

use crate::auth::Secret;
use crate::control::Control;
use crate::model::Store;
use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;

/// The `transport` label values.
pub const TRANSPORTS: [&str; 2] = [ws::TRANSPORT, grpc::TRANSPORT];

/// How subscribers are served.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Required from subscribers; `None` lets anyone subscribe.
    pub token: Option<Secret>,
    /// At most one update per subscriber per interval.
    pub interval: Duration,
    /// A subscriber that does not take a frame within this time is disconnected.
    pub slow_timeout: Duration,
    pub max_sessions: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            token: None,
            interval: Duration::from_millis(100),
            slow_timeout: Duration::from_secs(5),
            max_sessions: 64,
        }
    }
}

/// What every subscriber task needs.
#[derive(Clone)]
pub struct Streams {
    pub store: Arc<Store>,
    /// Where subscribers' cancel requests go.
    pub control: Arc<Control>,
    pub cfg: StreamConfig,
    /// Subscribers are told when the agent shuts down, after their cancels are answered.
    pub shutdown: Shutdown,
}
