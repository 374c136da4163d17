//! The streams of followed Connect sessions (docs/streaming-api.md): a snapshot, then coalesced
//! deltas. The `hub` builds each followed session's changes once per tick and shares them; one
//! subscriber loop (`subscriber`) serves both transports, which differ only in how a frame is
//! written: JSON text over a WebSocket (`ws`), protobuf over gRPC (`grpc`). What a subscriber
//! follows is a `follow::Follower`.

pub mod follow;
pub mod grpc;
pub mod hub;
pub mod subscriber;
pub mod ws;

use crate::auth::{SubscriberAuth, SubscriberAuthConfig};
use crate::control::tasks::TaskLister;
use crate::control::Control;
use crate::model::Store;
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Limit};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `transport` label values.
pub const TRANSPORTS: [&str; 2] = [ws::TRANSPORT, grpc::TRANSPORT];

/// How subscribers are served.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How subscribers prove who they are.
    pub auth: SubscriberAuthConfig,
    /// At most one update per subscriber per interval.
    pub interval: Duration,
    /// A subscriber that does not take a frame within this time is disconnected.
    pub slow_timeout: Duration,
    pub max_sessions: usize,
    /// Subscribers at once, WebSocket and gRPC together.
    pub max_subscribers: usize,
    /// The operator's Spark UI address for people (`--spark-ui-link-template`).
    pub ui_link_template: Option<String>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            auth: SubscriberAuthConfig::default(),
            interval: Duration::from_millis(100),
            slow_timeout: Duration::from_secs(5),
            max_sessions: 64,
            max_subscribers: 4096,
            ui_link_template: None,
        }
    }
}

/// What every subscriber task needs.
#[derive(Clone)]
pub struct Streams {
    pub store: Arc<Store>,
    /// Where subscribers find their sessions' changes, built once for all of them.
    pub hub: Arc<hub::Hub>,
    /// Where subscribers' cancel requests go.
    pub control: Arc<Control>,
    /// Where their requests for a stage's tasks go.
    pub tasks: Arc<TaskLister>,
    pub cfg: StreamConfig,
    /// Subscribers are told when the agent shuts down, after their cancels are answered.
    pub shutdown: Shutdown,
    /// Subscribers connected now.
    pub subscribers: Arc<AtomicUsize>,
    /// Who a subscriber's credential belongs to.
    pub auth: Arc<SubscriberAuth>,
}

impl Streams {
    /// A place for one more subscriber, or `None` at the bound (counted).
    pub fn admit(&self) -> Option<Admitted> {
        let before = self.subscribers.fetch_add(1, Ordering::AcqRel);
        let slot = Admitted(self.subscribers.clone());
        if before >= self.cfg.max_subscribers {
            telemetry::limit_hit(Limit::Subscribers, 1);
            return None; // dropping the slot gives it back
        }
        Some(slot)
    }
}

/// One subscriber's place, given back when it is dropped.
pub struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
