//! `GET /api/v1/stream`: the stream as JSON text frames over a WebSocket, with the client's
//! frames (subscribe, unsubscribe, cancel) coming back on the same socket. A notebook holding
//! one of the agent's own tokens proves it in a handshake before anything else (`handshake`);
//! other clients present a bearer token on the upgrade request.

use super::follow::Follower;
use super::handshake::Handshake;
use super::identity::{AuthError, Credential, Principal};
use super::subscriber::{self, Close, Frame, Gone, Incoming, Transport};
use super::Streams;
use crate::auth::{self, Secret};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pb::client_message::Kind;
use sparkscope_proto::sparkscope::v1 as pb;
use std::net::SocketAddr;
use std::time::Duration;

pub const TRANSPORT: &str = "websocket";

/// Client frames larger than this are refused by the WebSocket layer.
const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// What a connection reserves for reading client frames, which are small (subscribe, cancel):
/// the library's default (128 KiB per connection) would make a thousand idle subscribers cost
/// 128 MB. It grows when a bigger frame comes, up to `MAX_CLIENT_FRAME`.
const READ_BUFFER: usize = 4 * 1024;

/// How long a connection without an Authorization header gets for its first frame and, with a
/// handshake, for its proof.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handler(
    ws: WebSocketUpgrade,
    State(streams): State<Streams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // A web page may open a WebSocket to any address, with the browser's cookies but never its
    // own headers: only origins the operator lists get through (notebooks send none).
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !streams.cfg.allowed_origins.iter().any(|o| o == origin) {
            return refusal(
                StatusCode::FORBIDDEN,
                &format!("origin {origin:?} is not allowed (--allowed-origins)"),
            );
        }
    }
    // The credential only in the Authorization header: a query string ends up in logs. Without
    // one, the first frame is a handshake (or, for anonymous subscribers, the first request).
    let bearer = match auth::bearer_in(&headers).and_then(|t| Secret::new(Some(t))) {
        Some(token) => match streams
            .auth
            .identify(Some(token.expose()), Some(peer.ip()))
            .await
        {
            Ok(p) => Some((p, Credential::Token(token))),
            Err(e) => {
                let status = match e {
                    AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    AuthError::Throttled => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::UNAUTHORIZED,
                };
                return refusal(status, &format!("subscriber: {e}"));
            }
        },
        None if streams.auth.takes_handshakes() || streams.cfg.auth.anonymous => None,
        None => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                &format!("subscriber: {}", AuthError::Missing),
            )
        }
    };
    let Some(admitted) = streams.admit() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many subscribers; try again later",
        );
    };
    ws.max_message_size(MAX_CLIENT_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let (tx, rx) = socket.split();
            let mut t = WsTransport {
                tx,
                rx,
                first: None,
            };
            let (principal, cred) = match bearer {
                Some(known) => known,
                None => match handshake(&mut t, &streams).await {
                    Some(known) => known,
                    None => return,
                },
            };
            let follower = Follower::new(streams.cfg.max_sessions, principal);
            subscriber::serve(t, follower, streams, admitted, cred).await
        })
        .into_response()
}

/// The first frames of a stream that came without an Authorization header: a hello (the token
/// proven both ways), or, for anonymous subscribers, any request. `None` when it did not end in
/// a subscriber (told why, and closed).
async fn handshake(t: &mut WsTransport, streams: &Streams) -> Option<(Principal, Credential)> {
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, t.recv()).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return None,
        Err(_) => {
            deny(t, "no first frame in time").await;
            return None;
        }
    };
    let hello = match first {
        Incoming::Message(pb::ClientMessage {
            kind: Some(Kind::Hello(hello)),
        }) => hello,
        other if streams.cfg.auth.anonymous => {
            t.first = Some(other);
            return Some((Principal::Shared, Credential::Anonymous));
        }
        _ => {
            deny(t, &AuthError::Missing.to_string()).await;
            return None;
        }
    };
    let (pending, challenge) = match Handshake::start(&streams.auth, hello) {
        Ok(started) => started,
        Err(why) => {
            deny(t, &why).await;
            return None;
        }
    };
    let challenge = pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Challenge(challenge)),
    };
    t.send(challenge).await.ok()?;
    let proof = match tokio::time::timeout(HANDSHAKE_TIMEOUT, t.recv()).await {
        Ok(Some(Incoming::Message(pb::ClientMessage {
            kind: Some(Kind::Proof(p)),
        }))) => p,
        Ok(None) => return None, // the notebook did not trust us, or went away
        _ => {
            deny(t, "the second frame must be the proof").await;
            return None;
        }
    };
    let Some((principal, cred)) = pending.finish(&proof) else {
        deny(t, &AuthError::Refused.to_string()).await;
        return None;
    };
    let user_id = match &principal {
        Principal::User(u) => u.clone(),
        Principal::Shared => String::new(),
    };
    let welcome = pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Welcome(pb::StreamWelcome {
            user_id,
        })),
    };
    t.send(welcome).await.ok()?;
    Some((principal, cred))
}

/// Says why the stream ends before it began, and closes it.
async fn deny(t: &mut WsTransport, why: &str) {
    let msg = pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Error(pb::Error {
            code: "unauthorized".to_owned(),
            message: format!("subscriber: {why}"),
        })),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), t.send(msg)).await;
    t.close(Close::Unauthorized).await;
}

fn refusal(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

struct WsTransport {
    tx: SplitSink<WebSocket, Message>,
    rx: SplitStream<WebSocket>,
    /// A frame the handshake read that belongs to the stream (an anonymous one's first).
    first: Option<Incoming>,
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
        if let Some(first) = self.first.take() {
            return Some(first);
        }
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
            Close::Unauthorized => (1008, "unauthorized"),
            Close::Revoked => (1008, "the credential was revoked"),
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
