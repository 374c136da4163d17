//! The TCP server listeners connect to: one connection per Spark application, a token-checked
//! hello, then event lines parsed straight out of the read buffer and applied to that
//! application's state. See docs/wire-protocol.md.

use super::connections::Listeners;
use super::ingest_line_at;
use super::protocol::{self, parse_command_result, parse_hello, PROTOCOL_VERSION};
use crate::auth::Secret;
use crate::clock::now_ms;
use crate::flags::{millis, seconds};
use crate::model::retention::LiveBound;
use crate::model::{lock, AppState, SharedApp, Store};
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Limit, Refusal};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Listeners")]
pub struct IngestConfig {
    /// Token listeners must prove they know (the listener's SPARKSCOPE_LISTENER_TOKEN or
    /// spark.sparkscope.tokenFile). Prefer the environment variable: a flag is visible to every
    /// local user in the process list.
    #[arg(
        long = "listener-token", value_name = "TOKEN",
        env = "SPARKSCOPE_LISTENER_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse_own
    )]
    pub token: Option<Secret>,
    /// Accept listeners without a token. Only for a machine where every local user is trusted.
    #[arg(
        long = "allow-anonymous-listeners",
        env = "SPARKSCOPE_ALLOW_ANONYMOUS_LISTENERS"
    )]
    pub allow_anonymous: bool,
    /// Lines longer than this many bytes are counted as malformed and skipped.
    #[arg(
        long = "max-line-bytes", value_name = "N",
        default_value_t = 32 << 20,
        env = "SPARKSCOPE_MAX_LINE_BYTES"
    )]
    pub max_line_bytes: usize,
    /// A connection that sends no hello within this many milliseconds is closed.
    #[arg(
        long = "listener-hello-timeout-ms",
        value_name = "MS",
        value_parser = millis,
        default_value = "5000",
        env = "SPARKSCOPE_LISTENER_HELLO_TIMEOUT_MS"
    )]
    pub hello_timeout: Duration,
    /// Listener connections past their hello (one per Spark application, normally); more are
    /// refused.
    #[arg(
        long = "max-listener-connections",
        value_name = "N",
        default_value_t = 1024,
        env = "SPARKSCOPE_MAX_LISTENER_CONNECTIONS"
    )]
    pub max_connections: usize,
    /// Connections that have not yet proven they know the token (their TLS handshake, hello and
    /// proof; at most 16 KiB each); past it, the oldest is closed, so connections that never
    /// prove anything cannot keep a real listener out.
    #[arg(
        long = "max-pending-listeners",
        value_name = "N",
        default_value_t = 64,
        env = "SPARKSCOPE_MAX_PENDING_LISTENERS"
    )]
    pub max_pending: usize,
    /// After a listener went away, how long (seconds) its application stays that driver's: a
    /// listener of another run of the driver (another `runId`) is refused meanwhile.
    #[arg(
        long = "listener-rebind-grace-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "300",
        env = "SPARKSCOPE_LISTENER_REBIND_GRACE_SECONDS"
    )]
    pub rebind_grace: Duration,
    /// A listener that sends nothing for this many seconds is taken for gone (a partitioned or
    /// frozen driver) and its connection closed; the listener sends its stats at least every
    /// 10 s. TCP keepalive probes an idle connection too. 0: no idle timeout.
    #[arg(
        long = "listener-idle-timeout-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "45",
        env = "SPARKSCOPE_LISTENER_IDLE_TIMEOUT_SECONDS"
    )]
    pub idle_timeout: Duration,
    /// TLS on this port, when the agent has a certificate.
    #[arg(skip)]
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("token", &self.token)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("hello_timeout", &self.hello_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_pending", &self.max_pending)
            .field("rebind_grace", &self.rebind_grace)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

crate::flags::default_from_flags!(IngestConfig);

/// Why a connection is closed when newer ones crowd it out of the unproven ones.
const UNPROVEN_EVICTED: &str = "too many connections that have not proven themselves";

/// The longest hello line; a connection holds no more than this before its token is checked.
const MAX_HELLO_BYTES: usize = 16 * 1024;
/// A connection's buffer for a line split across reads is shrunk back to this after a longer one.
const PARTIAL_KEPT: usize = 64 * 1024;
/// The read buffer of an accepted listener: a whole burst of lines is parsed under one lock.
const READ_BUFFER: usize = 256 * 1024;

/// What the accept loop and the connections share.
struct Shared {
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: IngestConfig,
    /// Connections past their hello.
    accepted: AtomicUsize,
    /// Connections waiting for their hello, oldest first, each with the means to close it.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    next_id: AtomicU64,
}

/// Accepts listener connections until shutdown; each connection ends at shutdown too.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: IngestConfig,
    mut shutdown: Shutdown,
) {
    let shared = Arc::new(Shared {
        store,
        listeners,
        cfg,
        accepted: AtomicUsize::new(0),
        pending: Mutex::default(),
        next_id: AtomicU64::new(0),
    });
    // Connections end on shutdown by themselves; `serve` returns once they have.
    let mut open = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.requested() => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                    let evicted = shared.unproven(id);
                    let (shared, shutdown) = (shared.clone(), shutdown.clone());
                    open.spawn(async move {
                        if let Err(e) = connection(sock, peer, id, evicted, &shared, shutdown).await {
                            tracing::debug!(%peer, error = %e, "listener connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    while open.join_next().await.is_some() {}
}

impl Shared {
    /// Registers a connection that has yet to prove it knows the token (its TLS handshake, its
    /// hello and its proof); closes the oldest such one when there are too many, so a flood of
    /// connections that never prove anything cannot keep a real listener out.
    fn unproven(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(id, tx);
        let mut evicted = 0;
        while pending.len() > self.cfg.max_pending.max(1) {
            if let Some((_, oldest)) = pending.pop_first() {
                let _ = oldest.send(());
                evicted += 1;
            }
        }
        drop(pending);
        telemetry::limit_hit(Limit::PendingListeners, evicted);
        rx
    }

    fn proven_or_gone(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused: {0}")]
    Refused(String),
}

/// Reads one handshake line with a small buffer: at most [`MAX_HELLO_BYTES`] before the token is
/// checked. `buf` holds what earlier reads brought beyond the previous line. Returns the line and
/// whatever followed it.
async fn read_small_line(
    rd: &mut ReadHalf<Box<dyn Io>>,
    mut buf: Vec<u8>,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    if let Some(pos) = memchr::memchr(b'\n', &buf) {
        let rest = buf.split_off(pos + 1);
        return Ok(Some((buf, rest)));
    }
    let mut chunk = [0u8; 1024];
    loop {
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let seen = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = memchr::memchr(b'\n', &buf[seen..]) {
            let rest = buf.split_off(seen + pos + 1);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HELLO_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "hello longer than its limit",
            ));
        }
    }
}

/// A listener's connection: plain TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connection among the unproven ones until it is dropped.
struct Unproven<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Unproven<'_> {
    fn drop(&mut self) {
        self.shared.proven_or_gone(self.id);
    }
}

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    id: u64,
    mut evicted: oneshot::Receiver<()>,
    shared: &Shared,
    mut shutdown: Shutdown,
) -> Result<(), ConnError> {
    let unproven = Unproven { shared, id };
    sock.set_nodelay(true)?;
    // A driver that vanished without a FIN (a crash of its host, a partition) is found by
    // keepalive probes even when no idle timeout is set.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    socket2::SockRef::from(&sock).set_tcp_keepalive(&keepalive)?;
    let cfg = &shared.cfg;
    // The TLS handshake, the hello and the proof, all within the hello timeout.
    let deadline = tokio::time::Instant::now() + cfg.hello_timeout;
    let stream: Box<dyn Io> = match &cfg.tls {
        None => Box::new(sock),
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(sock));
            let done = tokio::select! {
                r = handshake => Some(r),
                _ = &mut evicted => None,
                _ = shutdown.requested() => None,
            };
            match done {
                Some(Ok(Ok(tls))) => Box::new(tls),
                Some(Ok(Err(e))) => {
                    telemetry::listener_refused(Refusal::Tls);
                    return Err(ConnError::Refused(format!("TLS handshake: {e}")));
                }
                Some(Err(_)) => {
                    telemetry::listener_refused(Refusal::Timeout);
                    return Err(ConnError::Refused("no TLS handshake in time".into()));
                }
                None => return Ok(()),
            }
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, read_small_line(&mut rd, Vec::new())) => Some(r),
        _ = &mut evicted => None,
        _ = shutdown.requested() => return Ok(()),
    };
    let (first, leftover) = match read {
        None => return refuse(&mut wr, None, UNPROVEN_EVICTED).await,
        Some(Ok(Ok(Some(hello)))) => hello,
        Some(Ok(Ok(None))) => return Ok(()),
        Some(Ok(Err(e))) => {
            let why = format!("no hello line: {e}");
            return refuse(&mut wr, Some(Refusal::Hello), &why).await;
        }
        Some(Err(_)) => {
            return refuse(
                &mut wr,
                Some(Refusal::Timeout),
                "no hello within the timeout",
            )
            .await
        }
    };
    let hello = match parse_hello(first.trim_ascii()) {
        Ok(h) => h,
        Err(_) => {
            let why = "the first line must be a SparkscopeHello";
            return refuse(&mut wr, Some(Refusal::Hello), why).await;
        }
    };
    if let Some(why) = protocol::hello_problem(&hello) {
        let reason = if hello.protocol != PROTOCOL_VERSION {
            Refusal::Protocol
        } else {
            Refusal::Hello
        };
        return refuse(&mut wr, Some(reason), &why).await;
    }
    // The agent proves it knows the token first: a listener never talks to an impostor agent.
    let agent_nonce = protocol::new_nonce();
    let proof = cfg
        .token
        .as_ref()
        .map(|t| protocol::agent_proof(t, &hello, &agent_nonce));
    wr.write_all(protocol::challenge_line(&agent_nonce, proof).as_bytes())
        .await?;
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, read_small_line(&mut rd, leftover)) => Some(r),
        _ = &mut evicted => None,
        _ = shutdown.requested() => return Ok(()),
    };
    let (proof_line, leftover) = match read {
        None => return refuse(&mut wr, None, UNPROVEN_EVICTED).await,
        Some(Ok(Ok(Some(line)))) => line,
        Some(Ok(Ok(None))) => return Ok(()), // the listener did not trust us, or went away
        Some(Ok(Err(e))) => {
            let why = format!("no proof line: {e}");
            return refuse(&mut wr, Some(Refusal::Hello), &why).await;
        }
        Some(Err(_)) => {
            let why = "no proof within the timeout";
            return refuse(&mut wr, Some(Refusal::Timeout), why).await;
        }
    };
    if let Some(token) = &cfg.token {
        if !protocol::proof_holds(token, &hello, &agent_nonce, proof_line.trim_ascii()) {
            tracing::warn!(%peer, "refused a listener that does not know the token");
            return refuse(&mut wr, Some(Refusal::Token), "wrong or missing token").await;
        }
    }
    // Proven: from here on the connection counts against the listener connections' bound.
    drop(unproven);
    if shared.accepted.fetch_add(1, Ordering::AcqRel) >= cfg.max_connections {
        shared.accepted.fetch_sub(1, Ordering::AcqRel);
        telemetry::limit_hit(Limit::ListenerConnections, 1);
        return refuse(&mut wr, None, "too many listener connections").await;
    }
    let mut registration = match shared.listeners.register(&hello.app_id, &hello.run_id) {
        Ok(r) => r,
        Err(taken) => {
            shared.accepted.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, app = %hello.app_id, "refused a second driver for a connected application");
            return refuse(&mut wr, Some(Refusal::Taken), &taken.to_string()).await;
        }
    };
    let app_id = hello.app_id.clone();
    let app = shared.store.app(&app_id);
    let connection = lock(&app).listener_connected(now_ms(), hello.info(), peer.ip());
    // From here on, however the connection ends (an error, shutdown, or a panic), the guard
    // gives back what it holds.
    let _open = Open {
        shared,
        app: app.clone(),
        app_id: app_id.clone(),
        registration: registration.id,
        connection,
        peer,
    };
    tracing::info!(%peer, app = %app_id, "listener connected");
    shared.store.notify();
    wr.write_all(protocol::WELCOME.as_bytes()).await?;
    let mut lines = Lines {
        app: &app,
        store: &shared.store,
        answers: Answers {
            listeners: &shared.listeners,
            app_id: &app_id,
            registration: registration.id,
        },
        max_line: cfg.max_line_bytes,
        partial: Vec::new(),
        oversized: false,
    };
    lines.consume(&leftover);
    let mut reader = BufReader::with_capacity(READ_BUFFER, rd);
    let link = Link {
        reader: &mut reader,
        writer: &mut wr,
        commands: &mut registration.commands,
    };
    read_events(link, &mut lines, &mut shutdown, cfg.idle_timeout).await
}

/// What an accepted connection holds, given back when it ends.
struct Open<'a> {
    shared: &'a Shared,
    app: SharedApp,
    app_id: String,
    registration: u64,
    /// The application's number for this connection.
    connection: u64,
    peer: SocketAddr,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.shared
            .listeners
            .unregister(&self.app_id, self.registration);
        self.shared.accepted.fetch_sub(1, Ordering::AcqRel);
        let failed = std::thread::panicking();
        lock(&self.app).listener_disconnected(now_ms(), failed, self.connection);
        self.shared.store.notify();
        if failed {
            tracing::error!(peer = %self.peer, app = %self.app_id, "a listener connection failed; its application may be missing events");
        } else {
            tracing::info!(peer = %self.peer, app = %self.app_id, "listener disconnected");
        }
    }
}

/// Both directions of one listener connection.
struct Link<'a> {
    reader: &'a mut BufReader<ReadHalf<Box<dyn Io>>>,
    writer: &'a mut WriteHalf<Box<dyn Io>>,
    commands: &'a mut mpsc::Receiver<String>,
}

/// Reads lines until EOF or shutdown, and writes the commands queued for this listener.
async fn read_events(
    link: Link<'_>,
    lines: &mut Lines<'_>,
    shutdown: &mut Shutdown,
    idle_timeout: Duration,
) -> Result<(), ConnError> {
    let watch_idle = !idle_timeout.is_zero();
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    loop {
        let buf = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            _ = &mut idle, if watch_idle => {
                telemetry::limit_hit(Limit::SilentListeners, 1);
                tracing::warn!(app = %lock(lines.app).id(), seconds = idle_timeout.as_secs(),
                    "closed a listener connection that sent nothing within the idle timeout");
                return Ok(());
            }
            Some(cmd) = link.commands.recv() => {
                // Commands are rare and tiny; a listener that does not take one in 2 s is gone.
                let line = format!("{cmd}\n");
                let write = link.writer.write_all(line.as_bytes());
                tokio::time::timeout(Duration::from_secs(2), write)
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "command write"))??;
                continue;
            }
            r = link.reader.fill_buf() => r?,
        };
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        lines.consume(buf);
        link.reader.consume(len);
        if watch_idle {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + idle_timeout);
        }
    }
}

/// Splits what a listener sends into lines and applies them. Complete lines are parsed where
/// they lie in the read buffer, a whole buffer's worth under one lock; only a line split across
/// reads is copied, and one longer than the limit is skipped without being kept.
struct Lines<'a> {
    app: &'a SharedApp,
    store: &'a Store,
    answers: Answers<'a>,
    max_line: usize,
    partial: Vec<u8>,
    oversized: bool,
}

impl Lines<'_> {
    fn consume(&mut self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        let evictions = {
            let now = now_ms();
            let mut app = lock(self.app);
            app.seen(now);
            let mut rest = buf;
            while let Some(pos) = memchr::memchr(b'\n', rest) {
                let (line, tail) = (&rest[..pos], &rest[pos + 1..]);
                if self.oversized {
                    self.oversized = false;
                    app.malformed_line();
                    tracing::warn!(app = %app.id(), max_line = self.max_line, "skipped a line longer than the limit");
                } else if self.partial.is_empty() {
                    self.answers.or_ingest(&mut app, line, now);
                } else {
                    self.partial.extend_from_slice(line);
                    self.answers.or_ingest(&mut app, &self.partial, now);
                    self.partial.clear();
                    // One huge line does not keep its buffer for the life of the connection.
                    if self.partial.capacity() > PARTIAL_KEPT {
                        self.partial.shrink_to(PARTIAL_KEPT);
                    }
                }
                rest = tail;
            }
            if !self.oversized {
                if self.partial.len() + rest.len() > self.max_line {
                    self.oversized = true;
                    self.partial = Vec::new();
                } else {
                    self.partial.extend_from_slice(rest);
                }
            }
            (app.take_evictions(), app.take_fresh_sessions())
        };
        let (evictions, fresh) = evictions;
        for bound in LiveBound::ALL {
            telemetry::limit_hit(limit_of(bound), evictions.of(bound));
        }
        let conflicts = self.store.claim_sessions(self.answers.app_id, fresh);
        if conflicts > 0 {
            telemetry::session_conflicts(conflicts);
            tracing::warn!(app = %self.answers.app_id, sessions = conflicts,
                "ignored Connect sessions another application reported first");
        }
        self.store.notify();
    }
}

/// Where a listener's answers to commands go: back to whoever sent the command, not into the
/// model.
struct Answers<'a> {
    listeners: &'a Listeners,
    app_id: &'a str,
    registration: u64,
}

impl Answers<'_> {
    fn or_ingest(&self, app: &mut AppState, line: &[u8], now: i64) {
        if !line.starts_with(protocol::COMMAND_RESULT) {
            return ingest_line_at(app, line, Some(now));
        }
        match parse_command_result(line) {
            Ok((id, result)) => {
                self.listeners
                    .answered(self.app_id, self.registration, &id, result)
            }
            Err(_) => {
                app.malformed_line();
            }
        }
    }
}

fn limit_of(bound: LiveBound) -> Limit {
    match bound {
        LiveBound::RunningJobs => Limit::RunningJobs,
        LiveBound::LiveStages => Limit::LiveStages,
        LiveBound::OpenSessions => Limit::OpenSessions,
        LiveBound::UnclosedOperations => Limit::UnclosedOperations,
        LiveBound::Executors => Limit::Executors,
        LiveBound::PendingProgress => Limit::PendingProgress,
        LiveBound::RetiredJobs => Limit::RetiredJobs,
        LiveBound::LogLines => Limit::LogLines,
        LiveBound::SqlExecutions => Limit::SqlExecutions,
        LiveBound::PlanNodes => Limit::PlanNodes,
    }
}

async fn refuse(
    wr: &mut WriteHalf<Box<dyn Io>>,
    reason: Option<Refusal>,
    why: &str,
) -> Result<(), ConnError> {
    if let Some(r) = reason {
        telemetry::listener_refused(r);
    }
    // The peer may already be gone; the refusal is what matters.
    let _ = wr.write_all(protocol::refusal_line(why).as_bytes()).await;
    let _ = wr.shutdown().await;
    Err(ConnError::Refused(why.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing reachable from input is known to panic; if something ever does, the connection's
    /// bookkeeping is given back and its application is marked.
    #[test]
    fn a_panicking_connection_gives_back_what_it_held() {
        let shared = Shared {
            store: Arc::new(Store::default()),
            listeners: Arc::new(Listeners::new(IngestConfig::default().rebind_grace)),
            cfg: IngestConfig::default(),
            accepted: AtomicUsize::new(1),
            pending: Mutex::default(),
            next_id: AtomicU64::new(0),
        };
        let app = shared.store.app("local-p");
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let info = crate::model::event::ListenerInfo::default();
        let connection = lock(&app).listener_connected(1, info, peer.ip());
        let registration = shared
            .listeners
            .register("local-p", "run-1")
            .expect("a first driver is welcome");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _open = Open {
                shared: &shared,
                app: app.clone(),
                app_id: "local-p".into(),
                registration: registration.id,
                connection,
                peer,
            };
            let _held = lock(&app);
            panic!("a bug while applying a line");
        }));
        assert!(result.is_err());
        let a = lock(&app);
        assert!(!a.is_live());
        assert_eq!(a.stats().failed_connections, 1);
        assert_eq!(shared.accepted.load(Ordering::Relaxed), 0);
        assert!(shared
            .listeners
            .command("local-p", serde_json::json!({}))
            .is_err());
    }
}
