//! The agent assembled from its [`Config`]: its sockets bound, its tasks started, and its
//! graceful shutdown. `sparkscope serve` and every integration test start it the same way:
//! `Agent::build(config)`, then `spawn()`, then `shutdown()`.

pub use crate::config::Config;
use crate::control::Control;
use crate::ingest::connections::Listeners;
use crate::ingest::listener::{self, IngestConfig};
use crate::ingest::spark_poll;
use crate::model::Store;
use crate::publish::metrics::{MetricsExport, UserLabels};
use crate::publish::stream::cells::CellLabels;
use crate::publish::stream::grpc::MonitorService;
use crate::publish::stream::hub::{self, Hub};
use crate::publish::stream::identity::{IdentityError, SubscriberAuth};
use crate::publish::stream::runs::RunHistory;
use crate::publish::stream::tasks::TaskLister;
use crate::publish::stream::Streams;
use crate::publish::{http, ApiState};
use crate::shutdown::{Shutdown, Trigger};
use crate::spark_api::SparkApi;
use crate::tls::{Loaded, TlsError, TlsListener};
use crate::upkeep;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "no listener token: set --listener-token (or SPARKSCOPE_LISTENER_TOKEN) to the \
         listener's spark.sparkscope.token, or pass --allow-anonymous-listeners"
    )]
    NoListenerToken,
    #[error(
        "no way for notebooks to authenticate: set --subscriber-tokens-file (a token per user), \
         --jupyterhub-api-url (JupyterHub users), or --subscriber-token (one token for a \
         one-user machine), or pass --allow-anonymous-subscribers"
    )]
    NoSubscriberToken,
    #[error(
        "no API token: set --api-token (or SPARKSCOPE_API_TOKEN) for the JSON API, or pass \
         --allow-anonymous-api"
    )]
    NoApiToken,
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("Spark's REST API client: {0}")]
    SparkApi(String),
    #[error(transparent)]
    Subscribers(#[from] IdentityError),
    #[error("cannot serve {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How often the subscriber token file is read again: a revoked user's streams end within it.
const TOKEN_FILE_POLL: Duration = Duration::from_millis(250);
/// How soon a changed run history is written to its file.
const RUN_HISTORY_WRITE: Duration = Duration::from_secs(2);

/// The addresses the agent serves on (with the ports the system chose for port 0).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub ingest: SocketAddr,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// An agent whose sockets are bound and whose tasks are not yet running.
pub struct Agent {
    cfg: Config,
    store: Arc<Store>,
    sockets: [TcpListener; 3],
    addrs: Addrs,
    tls: Option<Loaded>,
    subscribers: Arc<SubscriberAuth>,
    trigger: Trigger,
    shutdown: Shutdown,
}

impl Agent {
    /// Checks the configuration and binds the three sockets.
    pub async fn build(mut cfg: Config) -> Result<Agent, BuildError> {
        crate::tls::install_crypto_provider();
        if cfg.ingest.token.is_none() && !cfg.ingest.allow_anonymous {
            return Err(BuildError::NoListenerToken);
        }
        // A header or CA file that cannot be read stops the agent here, not on its first fault.
        crate::spark_api::check(&cfg.spark_api).map_err(BuildError::SparkApi)?;
        if !cfg.stream.auth.any() {
            return Err(BuildError::NoSubscriberToken);
        }
        let access = &cfg.access;
        if access.api_token.is_none() && access.admin_token.is_none() && !access.allow_anonymous_api
        {
            return Err(BuildError::NoApiToken);
        }
        let bind = |what: &'static str, addr: SocketAddr| async move {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "{what} is bound beyond loopback: make sure tokens are set");
            }
            TcpListener::bind(addr)
                .await
                .map_err(|source| BuildError::Bind { what, addr, source })
        };
        let tls = cfg.tls.files().map(|f| f.load()).transpose()?;
        let subscribers = Arc::new(SubscriberAuth::new(cfg.stream.auth.clone())?);
        cfg.ingest.tls = tls.as_ref().map(|t| t.acceptor.clone());
        let ingest = bind("listeners", cfg.ingest_addr).await?;
        let web = bind("HTTP", cfg.http_addr).await?;
        let grpc = bind("gRPC", cfg.grpc_addr).await?;
        let local = |s: &TcpListener, what, addr| {
            s.local_addr()
                .map_err(|source| BuildError::Bind { what, addr, source })
        };
        let addrs = Addrs {
            ingest: local(&ingest, "listeners", cfg.ingest_addr)?,
            http: local(&web, "HTTP", cfg.http_addr)?,
            grpc: local(&grpc, "gRPC", cfg.grpc_addr)?,
        };
        let (trigger, shutdown) = Trigger::new();
        Ok(Agent {
            store: Arc::new(Store::new(cfg.retention.clone())),
            cfg,
            sockets: [ingest, web, grpc],
            addrs,
            tls,
            subscribers,
            trigger,
            shutdown,
        })
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Starts serving. Dropping the returned handle shuts the agent down without waiting.
    pub fn spawn(self) -> RunningAgent {
        let Agent {
            cfg,
            store,
            sockets: [ingest, web, grpc],
            addrs,
            tls,
            subscribers,
            trigger,
            shutdown,
        } = self;
        let metrics = Arc::new(MetricsExport {
            handle: crate::telemetry::install(),
            users: UserLabels::new(cfg.metrics.max_users),
        });
        let spark = Arc::new(SparkApi::new(cfg.spark_api.clone()));
        let listeners = Arc::new(Listeners::new(cfg.ingest.rebind_grace));
        let control = Arc::new(Control::new(
            store.clone(),
            listeners.clone(),
            cfg.control.clone(),
            shutdown.clone(),
        ));
        let (hub, hub_inbox) = Hub::new();
        let run_history = Arc::new(RunHistory::load(
            cfg.stream.max_run_fingerprints,
            cfg.stream.run_history_path(&crate::config::user_dir()),
        ));
        let streams = Streams {
            store: store.clone(),
            hub: hub.clone(),
            control: control.clone(),
            tasks: Arc::new(TaskLister::new(
                store.clone(),
                spark.clone(),
                cfg.tasks.clone(),
            )),
            cfg: cfg.stream.clone(),
            shutdown: shutdown.clone(),
            subscribers: Arc::default(),
            auth: subscribers.clone(),
            labels: Arc::new(CellLabels::new(cfg.stream.max_cell_labels)),
            runs: run_history.clone(),
        };
        let mut tasks = vec![
            ingest_thread(
                ingest,
                store.clone(),
                listeners,
                cfg.ingest.clone(),
                shutdown.clone(),
            ),
            tokio::spawn(spark_poll::run(
                store.clone(),
                spark,
                cfg.spark_poll.clone(),
                shutdown.clone(),
            )),
            // Builds every followed session's changes once per tick for all its subscribers.
            tokio::spawn(hub::run(
                hub,
                hub_inbox,
                store.clone(),
                cfg.stream.interval,
                cfg.stream.ui_link_template.clone(),
                shutdown.clone(),
            )),
            // The subscriber token file, read again as it changes; revocations end streams.
            tokio::spawn({
                let stop = shutdown.clone();
                async move { subscribers.watch(TOKEN_FILE_POLL, stop).await }
            }),
            // Cells' last runs, written to their file a moment after they change.
            tokio::spawn(run_history.run(RUN_HISTORY_WRITE, shutdown.clone())),
            // Samples, the age limit and the recorder's upkeep.
            tokio::spawn(upkeep::run(
                store.clone(),
                cfg.upkeep.clone(),
                cfg.stream.interval,
                Some(metrics.handle.clone()),
                shutdown.clone(),
            )),
        ];

        let mut grpc_stop = shutdown.clone();
        let service = MonitorService::server(streams.clone());
        let grpc_acceptor = tls.as_ref().map(|t| t.grpc.clone());
        tasks.push(tokio::spawn(async move {
            let stop = async move { grpc_stop.requested().await };
            let server = tonic::transport::Server::builder().add_service(service);
            // With a certificate, gRPC goes through the same TLS as every other socket: there is
            // no way for it to end up in plain text.
            let served = match grpc_acceptor {
                None => {
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
                    server.serve_with_incoming_shutdown(incoming, stop).await
                }
                Some(acceptor) => match TlsListener::new(grpc, acceptor) {
                    Ok(l) => {
                        server
                            .serve_with_incoming_shutdown(l.into_stream(), stop)
                            .await
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the gRPC stream is not served");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::warn!(error = %e, "the gRPC server stopped");
            }
        }));

        let api = http::router(ApiState {
            store: store.clone(),
            access: cfg.access.clone(),
            control,
            streams,
            metrics: Some(metrics),
        });
        let mut http_stop = shutdown.clone();
        let https = tls.as_ref().map(|t| t.acceptor.clone());
        tasks.push(tokio::spawn(async move {
            let stop = async move { http_stop.requested().await };
            let api = api.into_make_service_with_connect_info::<SocketAddr>();
            let served = match https {
                None => axum::serve(web, api).with_graceful_shutdown(stop).await,
                Some(acceptor) => match TlsListener::new(web, acceptor) {
                    // Tapped only so that handlers learn the peer's address, as over plain TCP.
                    Ok(l) => {
                        axum::serve(l.tap_io(|_| ()), api)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                tracing::warn!(error = %e, "the HTTP server stopped");
            }
        }));

        tracing::info!(
            ingest = %addrs.ingest,
            http = %addrs.http,
            grpc = %addrs.grpc,
            "sparkscope agent listening"
        );
        // Every task holds its own handle now; the drain waits for exactly those.
        drop(shutdown);
        RunningAgent {
            store,
            addrs,
            trigger,
            tasks,
            grace: cfg.shutdown_grace,
        }
    }
}

/// Serves listener connections on a thread of their own, so that applying Spark's events never
/// waits behind subscribers (a thousand of them woken by one tick) on the shared runtime. The
/// handle ends when every connection has.
fn ingest_thread(
    socket: TcpListener,
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: IngestConfig,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
    let run = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let (runtime, socket) = match (runtime, socket.into_std()) {
            (Ok(r), Ok(s)) => (r, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot start ingest; no listener can connect");
                return;
            }
        };
        runtime.block_on(async move {
            match TcpListener::from_std(socket) {
                Ok(l) => listener::serve(l, store, listeners, cfg, shutdown).await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start ingest; no listener can connect")
                }
            }
        });
        drop(done_tx);
    };
    if let Err(e) = std::thread::Builder::new()
        .name("sparkscope-ingest".into())
        .spawn(run)
    {
        tracing::error!(error = %e, "cannot start the ingest thread; no listener can connect");
    }
    tokio::spawn(async move {
        let _ = done.await;
    })
}

/// A running agent.
pub struct RunningAgent {
    store: Arc<Store>,
    addrs: Addrs,
    trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection, subscriber and cancel finished within the grace period.
    Clean,
    /// The grace period ran out first.
    TimedOut,
}

impl RunningAgent {
    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops accepting, closes listener connections, answers cancels under way, tells
    /// subscribers, and waits for all of it up to the grace period.
    pub async fn shutdown(self) -> Drained {
        let started = tokio::time::Instant::now();
        if !self.trigger.drain(self.grace).await {
            return Drained::TimedOut;
        }
        let left = self.grace.saturating_sub(started.elapsed());
        let servers = futures_util::future::join_all(self.tasks);
        match tokio::time::timeout(left, servers).await {
            Ok(_) => Drained::Clean,
            Err(_) => Drained::TimedOut,
        }
    }
}
