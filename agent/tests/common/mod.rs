//! The real agent inside a test process, started the way `sparkscope serve` starts it.

#![allow(dead_code)] // each test file uses a part

use sparkscope::agent::{Agent, Config, RunningAgent};
use sparkscope::auth::Secret;
use sparkscope::control::ControlConfig;
use std::time::Duration;

pub const LISTENER_TOKEN: &str = "lt";
pub const SUBSCRIBER_TOKEN: &str = "sub";
pub const ADMIN_TOKEN: &str = "admin";

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
    cfg.stream.token = Secret::new(Some(SUBSCRIBER_TOKEN));
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
