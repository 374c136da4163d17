//! The real agent inside a test process, started the way `sparkscope serve` starts it.

#![allow(dead_code)] // each test file uses a part

pub mod spark_lines;

use sparkscope::agent::{Agent, Config, RunningAgent};
use sparkscope::auth::Secret;
use sparkscope::ingest::protocol::{connect_listener, AgentCheck, Hello};
use std::time::Duration;

pub const LISTENER_TOKEN: &str = "lt";
pub const SUBSCRIBER_TOKEN: &str = "sub";
pub const ADMIN_TOKEN: &str = "admin";
pub const API_TOKEN: &str = "api";

/// What `sparkscope serve` starts with (its flags' defaults), with loopback ports chosen by the
/// system, test tokens, a quick stream, and interrupts sent to port 9 of loopback, where nothing
/// listens: they must fail clearly, not hang.
pub fn config() -> Config {
    let mut cfg = Config::from_flags([
        "--ingest",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--grpc",
        "127.0.0.1:0",
        "--stream-interval-ms",
        "20",
        "--spark-connect",
        "http://127.0.0.1:9",
        // a test's run history is its own, never the user's
        "--run-history-file",
        "none",
    ])
    .expect("test flags parse");
    cfg.ingest.token = Secret::new(Some(LISTENER_TOKEN));
    cfg.stream.auth.shared = Secret::new(Some(SUBSCRIBER_TOKEN));
    cfg.access.api_token = Secret::new(Some(API_TOKEN));
    cfg.access.admin_token = Secret::new(Some(ADMIN_TOKEN));
    cfg
}

pub async fn start(cfg: Config) -> RunningAgent {
    Agent::build(cfg).await.expect("agent builds").spawn()
}

/// The next text frame of a WebSocket, within 3 s.
pub async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .expect("a frame within 3 s")
            .expect("stream open")
            .expect("frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

/// A listener's side of the handshake with `token`, as application `app`: returns the
/// connection, ready for event lines, or why it ended (the agent's refusal, or the agent's
/// failure to prove it knows the token, after which a real listener says nothing more).
pub async fn listener(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    handshake(addr, app, run_id, token, AgentCheck::Verify).await
}

/// As [`listener`], but sends its proof whatever the agent proved: the agent's side of the
/// check is what is tested.
pub async fn listener_unchecked(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    handshake(addr, app, run_id, token, AgentCheck::Skip).await
}

async fn handshake(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
    check: AgentCheck,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    let hello = Hello {
        app_id: app.to_owned(),
        run_id: run_id.to_owned(),
        app_name: "Spark Connect server".to_owned(),
        spark_version: "4.3.0".to_owned(),
        start_time: 1,
        spark_user: "spark".to_owned(),
        task_events: "coalesced".to_owned(),
        ..Hello::default()
    };
    let token = Secret::new(Some(token)).expect("a token");
    connect_listener(addr, hello, &token, check, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())
}
