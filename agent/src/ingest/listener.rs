//! The TCP server listeners connect to: one connection per Spark application, a token-checked
//! hello, then event lines parsed straight out of the read buffer and applied to that
//! application's state. See docs/wire-protocol.md.

use super::connections::Listeners;
use super::ingest_line_at;
use super::parse::parse_hello;
use crate::auth::{self, Secret};
use crate::clock::now_ms;
use crate::model::{lock, SharedApp, Store};
use crate::shutdown::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The token listeners must present; `None` accepts any listener.
    pub token: Option<Secret>,
    /// Longer lines are counted as malformed and skipped.
    pub max_line_bytes: usize,
    pub hello_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            token: None,
            max_line_bytes: 32 << 20,
            hello_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts listener connections until shutdown; each connection ends at shutdown too.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: Arc<IngestConfig>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.requested() => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let (store, cfg, shutdown) = (store.clone(), cfg.clone(), shutdown.clone());
                    let listeners = listeners.clone();
                    tokio::spawn(async move {
                        if let Err(e) =
                            connection(sock, peer, store, listeners, cfg, shutdown).await {
                            tracing::info!(%peer, error = %e, "listener connection ended");
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
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused: {0}")]
    Refused(String),
}

async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: Arc<IngestConfig>,
    mut shutdown: Shutdown,
) -> Result<(), ConnError> {
    sock.set_nodelay(true)?;
    let (rd, mut wr) = sock.into_split();
    let mut reader = BufReader::with_capacity(256 * 1024, rd);

    let mut first = Vec::new();
    let read = tokio::time::timeout(cfg.hello_timeout, async {
        let mut limited = (&mut reader).take(64 * 1024);
        limited.read_until(b'\n', &mut first).await
    })
    .await;
    let hello = match read {
        Ok(Ok(n)) if n > 0 => match parse_hello(first.trim_ascii()) {
            Ok(h) => h,
            Err(_) => return refuse(&mut wr, "the first line must be a SparkscopeHello").await,
        },
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return refuse(&mut wr, "no hello within the timeout").await,
    };
    if hello.protocol != PROTOCOL_VERSION {
        let msg = format!(
            "protocol {} is not supported (this agent speaks {PROTOCOL_VERSION})",
            hello.protocol
        );
        return refuse(&mut wr, &msg).await;
    }
    if !auth::allows(cfg.token.as_ref(), Some(&hello.token)) {
        tracing::warn!(%peer, app = %hello.app_id, "refused a listener with a wrong token");
        return refuse(&mut wr, "wrong or missing token").await;
    }
    if hello.app_id.is_empty() {
        return refuse(&mut wr, "the hello names no appId").await;
    }
    let ack = format!(
        "{{\"ok\":true,\"agent\":\"sparkscope {}\"}}\n",
        env!("CARGO_PKG_VERSION")
    );
    wr.write_all(ack.as_bytes()).await?;

    let app_id = hello.app_id.clone();
    let shared = store.app(&app_id);
    lock(&shared).listener_connected(now_ms(), hello.info());
    tracing::info!(%peer, app = %app_id, "listener connected");
    store.notify();
    let mut registration = listeners.register(&app_id);
    let link = Link {
        reader: &mut reader,
        writer: &mut wr,
        commands: &mut registration.commands,
    };
    let result = read_events(link, &shared, &store, cfg.max_line_bytes, &mut shutdown).await;
    listeners.unregister(&app_id, registration.id);
    lock(&shared).listener_disconnected(now_ms());
    store.notify();
    tracing::info!(%peer, app = %app_id, "listener disconnected");
    result
}

/// Both directions of one listener connection.
struct Link<'a> {
    reader: &'a mut BufReader<OwnedReadHalf>,
    writer: &'a mut OwnedWriteHalf,
    commands: &'a mut mpsc::Receiver<String>,
}

/// Reads lines until EOF or shutdown, and writes the commands queued for this listener.
/// Complete lines are parsed where they lie in the read buffer, a whole buffer's worth under one
/// lock; only a line split across reads is copied.
async fn read_events(
    link: Link<'_>,
    shared: &SharedApp,
    store: &Store,
    max_line: usize,
    shutdown: &mut Shutdown,
) -> Result<(), ConnError> {
    let mut partial: Vec<u8> = Vec::new();
    let mut oversized = false;
    loop {
        let buf = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
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
        {
            let now = now_ms();
            let mut app = lock(shared);
            app.seen(now);
            let mut rest = buf;
            while let Some(pos) = memchr::memchr(b'\n', rest) {
                let (line, tail) = (&rest[..pos], &rest[pos + 1..]);
                if oversized {
                    oversized = false;
                    app.malformed_line();
                    tracing::warn!(app = %app.id(), max_line, "skipped a line longer than the limit");
                } else if partial.is_empty() {
                    ingest_line_at(&mut app, line, Some(now));
                } else {
                    partial.extend_from_slice(line);
                    ingest_line_at(&mut app, &partial, Some(now));
                    partial.clear();
                }
                rest = tail;
            }
            if !oversized {
                if partial.len() + rest.len() > max_line {
                    oversized = true;
                    partial = Vec::new();
                } else {
                    partial.extend_from_slice(rest);
                }
            }
        }
        link.reader.consume(len);
        store.notify();
    }
}

async fn refuse(wr: &mut OwnedWriteHalf, why: &str) -> Result<(), ConnError> {
    let line = serde_json::json!({ "ok": false, "error": why }).to_string() + "\n";
    // The peer may already be gone; the refusal is what matters.
    let _ = wr.write_all(line.as_bytes()).await;
    let _ = wr.shutdown().await;
    Err(ConnError::Refused(why.to_owned()))
}
