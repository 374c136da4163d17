//! The real agent inside a test process, started the way `sparkscope serve` starts it.

#![allow(dead_code)] // each test file uses a part

use sparkscope::agent::{Agent, Config, RunningAgent};
use sparkscope::auth::Secret;
use sparkscope::control::ControlConfig;
use std::time::Duration;

pub const LISTENER_TOKEN: &str = "lt";
pub const SUBSCRIBER_TOKEN: &str = "sub";
pub const ADMIN_TOKEN: &str = "admin";
pub const API_TOKEN: &str = "api";

/// Loopback, ports chosen by the system, test tokens, a quick stream, and interrupts sent to
/// port 9 of loopback, where nothing listens: they must fail clearly, not hang.
pub fn config() -> Config {
    let any = "127.0.0.1:0".parse().expect("address");
    let mut cfg = Config {
        ingest_addr: any,
        http_addr: any,
        grpc_addr: any,
        admin_token: Secret::new(Some(ADMIN_TOKEN)),
        control: ControlConfig {
            spark_connect: Some("http://127.0.0.1:9".into()),
            ..ControlConfig::default()
        },
        ..Config::default()
    };
    cfg.ingest.token = Secret::new(Some(LISTENER_TOKEN));
    cfg.stream.auth.shared = Secret::new(Some(SUBSCRIBER_TOKEN));
    cfg.api_token = Secret::new(Some(API_TOKEN));
    cfg.stream.interval = Duration::from_millis(20);
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

/// A listener's side of the handshake (protocol 2) with `token`, as application `app`: returns
/// the connection, ready for event lines, or why it ended (the agent's refusal, or the agent's
/// failure to prove it knows the token, after which a real listener says nothing more).
pub async fn listener(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    handshake(addr, app, run_id, token, true).await
}

/// As [`listener`], but sends its proof whatever the agent proved: the agent's side of the
/// check is what is tested.
pub async fn listener_unchecked(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    handshake(addr, app, run_id, token, false).await
}

async fn handshake(
    addr: std::net::SocketAddr,
    app: &str,
    run_id: &str,
    token: &str,
    check_agent: bool,
) -> Result<tokio::io::BufReader<tokio::net::TcpStream>, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let nonce = "0123456789abcdef0123456789abcdef";
    let mut s = tokio::io::BufReader::new(
        tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?,
    );
    let hello = format!(
        "{{\"Event\":\"SparkscopeHello\",\"protocol\":2,\"appId\":\"{app}\",\"runId\":\"{run_id}\",\
         \"nonce\":\"{nonce}\",\"appName\":\"Spark Connect server\",\"sparkVersion\":\"4.3.0\",\
         \"startTime\":1,\"sparkUser\":\"spark\",\"taskEvents\":\"coalesced\"}}\n"
    );
    let mut line = String::new();
    async fn read(s: &mut tokio::io::BufReader<tokio::net::TcpStream>, line: &mut String) {
        line.clear();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_line(line)).await;
    }
    s.get_mut()
        .write_all(hello.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    read(&mut s, &mut line).await;
    let challenge: serde_json::Value = serde_json::from_str(&line).map_err(|_| line.clone())?;
    if challenge["ok"] != true {
        return Err(line);
    }
    let secret = Secret::new(Some(token)).expect("a token");
    let agent_nonce = challenge["nonce"].as_str().unwrap_or_default();
    let expected = sparkscope::auth::hmac_hex(
        &secret,
        &["sparkscope-agent", app, run_id, nonce, agent_nonce],
    );
    let proof = sparkscope::auth::hmac_hex(
        &secret,
        &["sparkscope-listener", app, run_id, agent_nonce, nonce],
    );
    if check_agent && challenge["proof"].as_str().unwrap_or_default() != expected {
        return Err("the agent did not prove it knows the token".to_owned());
    }
    let proof_line = format!("{{\"Event\":\"SparkscopeProof\",\"proof\":\"{proof}\"}}\n");
    s.get_mut()
        .write_all(proof_line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    read(&mut s, &mut line).await;
    if !line.contains("\"welcome\":true") {
        return Err(line);
    }
    Ok(s)
}
