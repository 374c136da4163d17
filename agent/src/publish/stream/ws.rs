//! `GET /api/v1/stream`: the stream as JSON text frames over a WebSocket, with the client's
//! frames (subscribe, unsubscribe, cancel) coming back on the same socket.

use super::follow::Follower;
use super::identity::AuthError;
use super::subscriber::{self, Close, Frame, Gone, Incoming, Transport};
use super::Streams;
use crate::auth;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::HashMap;
use std::time::Duration;

pub const TRANSPORT: &str = "websocket";

/// Client frames larger than this are refused by the WebSocket layer.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// What a connection reserves for reading client frames, which are small (subscribe, cancel):
/// the library's default (128 KiB per connection) would make a thousand idle subscribers cost
/// 128 MB. It grows when a bigger frame comes, up to `MAX_CLIENT_FRAME`.
const READ_BUFFER: usize = 4 * 1024;

pub async fn handler(
    ws: WebSocketUpgrade,
    State(streams): State<Streams>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // Browsers cannot set headers on a WebSocket: the token may come in the query instead.
    let token = auth::bearer_in(&headers).or(q.get("token").map(String::as_str));
    let principal = match streams.auth.identify(token).await {
        Ok(p) => p,
        Err(e) => {
            let status = match e {
                AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let body = axum::Json(serde_json::json!({"error": format!("subscriber: {e}")}));
            return (status, body).into_response();
        }
    };
    let Some(admitted) = streams.admit() else {
        let body =
            axum::Json(serde_json::json!({"error": "too many subscribers; try again later"}));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            let (tx, rx) = socket.split();
            let follower = Follower::new(streams.cfg.max_sessions, principal);
            subscriber::serve(WsTransport { tx, rx }, follower, streams, admitted)
        })
        .into_response()
}

struct WsTransport {
    tx: SplitSink<WebSocket, Message>,
    rx: SplitStream<WebSocket>,
}

impl Transport for WsTransport {
    const NAME: &'static str = TRANSPORT;

    async fn send(&mut self, msg: pb::ServerMessage) -> Result<(), Gone> {
        let text = serde_json::to_string(&msg).map_err(|_| Gone)?;
        self.tx
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| Gone)
    }

    async fn send_update(&mut self, frame: Frame) -> Result<(), Gone> {
        self.tx
            .send(Message::Text(frame.json().into()))
            .await
            .map_err(|_| Gone)
    }

    async fn recv(&mut self) -> Option<Incoming> {
        loop {
            return match self.rx.next().await {
                Some(Ok(Message::Text(text))) => Some(subscriber::parse_frame(text.as_str())),
                Some(Ok(Message::Binary(_))) => {
                    Some(Incoming::Bad("frames are JSON text".to_owned()))
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
                Some(Ok(_)) => continue, // ping/pong are answered by the library
            };
        }
    }

    async fn close(&mut self, why: Close) {
        let (code, reason) = match why {
            Close::SlowConsumer => (1008, "slow consumer"),
            Close::ShuttingDown => (1001, "the agent is shutting down"),
        };
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.tx.send(Message::Close(Some(frame))),
        )
        .await;
    }
}
