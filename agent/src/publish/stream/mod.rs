//! The streams of followed Connect sessions (docs/streaming-api.md): a snapshot, then coalesced
//! deltas. The `hub` builds each followed session's changes once per tick and shares them; one
//! subscriber loop (`subscriber`) serves both transports, which differ only in how a frame is
//! written: JSON text over a WebSocket (`ws`), protobuf over gRPC (`grpc`). What a subscriber
//! follows is a `follow::Follower`, checked against who it is (`identity`); a stage's tasks are
//! listed on request (`tasks`).

pub mod cells;
pub mod follow;
pub mod grpc;
pub mod handshake;
pub mod hub;
pub mod identity;
pub mod runs;
pub mod subscriber;
pub mod tasks;
pub mod ws;

use crate::control::Control;
use crate::flags::millis;
use crate::model::Store;
use crate::shutdown::Shutdown;
use crate::spark_api::http_url;
use crate::telemetry::{self, Limit};
use identity::{SubscriberAuth, SubscriberAuthConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tasks::TaskLister;

/// The `transport` label values.
pub const TRANSPORTS: [&str; 2] = [ws::TRANSPORT, grpc::TRANSPORT];

/// How subscribers are served.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Notebooks (stream subscribers)")]
pub struct StreamConfig {
    /// How subscribers prove who they are.
    #[command(flatten)]
    pub auth: SubscriberAuthConfig,
    /// At most one stream update per subscriber per this many milliseconds.
    #[arg(
        id = "stream_interval",
        long = "stream-interval-ms",
        value_name = "MS",
        value_parser = millis,
        default_value = "100",
        env = "SPARKSCOPE_STREAM_INTERVAL_MS"
    )]
    pub interval: Duration,
    /// A subscriber that does not accept an update within this many milliseconds is dropped.
    #[arg(
        long = "slow-subscriber-timeout-ms",
        value_name = "MS",
        value_parser = millis,
        default_value = "5000",
        env = "SPARKSCOPE_SLOW_SUBSCRIBER_TIMEOUT_MS"
    )]
    pub slow_timeout: Duration,
    /// Sessions one subscriber may follow.
    #[arg(
        long = "max-sessions-per-subscriber",
        value_name = "N",
        default_value_t = 64,
        env = "SPARKSCOPE_MAX_SESSIONS_PER_SUBSCRIBER"
    )]
    pub max_sessions: usize,
    /// Stream subscribers (WebSocket and gRPC together); more are refused.
    #[arg(
        long = "max-subscribers",
        value_name = "N",
        default_value_t = 4096,
        env = "SPARKSCOPE_MAX_SUBSCRIBERS"
    )]
    pub max_subscribers: usize,
    /// Spark UI address people open from the notebook, when it is not the one the driver
    /// announces (a proxy): `{host}`, `{port}` and `{app}` are filled in from the announced
    /// address, `{user}` with the Connect user of the session shown
    /// (e.g. https://hub.example/user/{user}/proxy/{port}).
    #[arg(
        long = "spark-ui-link-template",
        value_name = "TEMPLATE",
        env = "SPARKSCOPE_SPARK_UI_LINK_TEMPLATE",
        value_parser = http_url
    )]
    pub ui_link_template: Option<String>,
    /// Web origins (e.g. https://hub.example) whose pages may open the WebSocket stream;
    /// comma-separated. A connection that carries another Origin header is refused; notebooks'
    /// kernels send none.
    #[arg(
        long = "allowed-origins",
        value_name = "ORIGINS",
        value_delimiter = ',',
        env = "SPARKSCOPE_ALLOWED_ORIGINS"
    )]
    pub allowed_origins: Vec<String>,
    /// Notebook cells' labels of client tags (which notebook and cell ran a tag, as kernels
    /// say) kept for JupyterLab's sidebar; the oldest goes.
    #[arg(
        long = "max-cell-labels",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_CELL_LABELS"
    )]
    pub max_cell_labels: usize,
    /// Cells whose last run is kept for run-to-run diffs (per user, notebook and cell; the
    /// oldest goes). 0: none kept.
    #[arg(
        long = "max-run-fingerprints",
        value_name = "N",
        default_value_t = 10_000,
        env = "SPARKSCOPE_MAX_RUN_FINGERPRINTS"
    )]
    pub max_run_fingerprints: usize,
    /// Where those last runs are kept across agent restarts (one JSON fingerprint per line,
    /// readable by the agent's user only; about 1 KiB each). Default:
    /// $SPARKSCOPE_HOME/run-history.jsonl (~/.sparkscope); `none`: in memory only.
    #[arg(
        long = "run-history-file",
        value_name = "PATH",
        env = "SPARKSCOPE_RUN_HISTORY_FILE"
    )]
    pub run_history_file: Option<String>,
}

impl StreamConfig {
    /// The run history's file (by default in the user's sparkscope directory `home`), or None
    /// when it is kept in memory only.
    pub fn run_history_path(&self, home: &std::path::Path) -> Option<std::path::PathBuf> {
        match self.run_history_file.as_deref() {
            Some("none") => None,
            Some(p) if !p.is_empty() => Some(p.into()),
            _ => Some(home.join("run-history.jsonl")),
        }
    }
}

crate::flags::default_from_flags!(StreamConfig);

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
    /// Which notebook cell each client tag belongs to, as kernels said.
    pub labels: Arc<cells::CellLabels>,
    /// Each cell's last run, as its kernel fingerprinted it.
    pub runs: Arc<runs::RunHistory>,
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
