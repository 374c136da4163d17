//! `GET /api/v1/stream`: the WebSocket stream of followed Connect sessions (docs/streaming-api.md).
//! One task per subscriber; each builds its own coalesced updates from the store's generations,
//! so a slow subscriber holds no backlog and never slows ingest or anyone else.

use super::follow::Follower;
use super::http::{bearer_matches, ApiState};
use crate::telemetry;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How subscribers are served.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Required from subscribers; `None` lets anyone subscribe.
    pub token: Option<std::sync::Arc<str>>,
    /// At most one update per subscriber per interval.
    pub interval: Duration,
    /// A subscriber that does not take a frame within this time is disconnected.
    pub slow_timeout: Duration,
    pub max_sessions: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            token: None,
            interval: Duration::from_millis(100),
            slow_timeout: Duration::from_secs(5),
            max_sessions: 64,
        }
    }
}

pub async fn handler(
    ws: WebSocketUpgrade,
    State(st): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(expected) = &st.stream.token {
        let query_ok = q.get("token").is_some_and(|t| {
            crate::ingest::listener::constant_time_eq(expected.as_bytes(), t.as_bytes())
        });
        if !query_ok && !bearer_matches(&headers, expected) {
            let body =
                axum::Json(serde_json::json!({"error": "missing or wrong subscriber token"}));
            return (StatusCode::UNAUTHORIZED, body).into_response();
        }
    }
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| subscriber(socket, st))
        .into_response()
}

async fn subscriber(socket: WebSocket, st: ApiState) {
    let cfg = st.stream.clone();
    let (mut tx, mut rx) = socket.split();
    let mut follower = Follower::new(cfg.max_sessions);
    let mut changes = st.store.changes();
    // Cancels run as their own tasks so updates keep flowing; results come back here.
    let (results_tx, mut results) = tokio::sync::mpsc::channel::<pb::CancelResult>(16);
    let mut dirty = false;
    let mut last_sent: Option<Instant> = None;
    tracing::debug!("subscriber connected");
    telemetry::subscriber_connected("websocket", 1.0);
    let _gone = Gone("websocket");
    loop {
        let due = last_sent.map_or_else(Instant::now, |t| t + cfg.interval);
        let wants = follower.follows_anything() && (dirty || follower.needs_snapshot());
        if wants && Instant::now() >= due {
            dirty = false;
            if let Some(update) = follower.next_update(&st.store) {
                if update.snapshot && update.generation > 1 {
                    telemetry::resync("websocket");
                }
                let msg = pb::ServerMessage {
                    kind: Some(pb::server_message::Kind::Update(update)),
                };
                match send(&mut tx, &msg, cfg.slow_timeout).await {
                    Ok(()) => last_sent = Some(Instant::now()),
                    Err(SendError::Slow) => {
                        tracing::info!("disconnecting a slow subscriber");
                        telemetry::slow_subscriber("websocket");
                        let close = CloseFrame {
                            code: 1008,
                            reason: Utf8Bytes::from_static("slow consumer"),
                        };
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            tx.send(Message::Close(Some(close))),
                        )
                        .await;
                        return;
                    }
                    Err(SendError::Gone) => return,
                }
            }
            continue;
        }
        tokio::select! {
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match handle_client_message(&mut follower, text.as_str()) {
                        Handled::Done => None,
                        Handled::Reply(msg) => Some(msg),
                        Handled::Cancel(req) => {
                            let (control, done) = (st.control.clone(), results_tx.clone());
                            tokio::spawn(async move {
                                let _ = done.send(control.cancel(&req, false).await).await;
                            });
                            None
                        }
                    };
                    if let Some(msg) = reply {
                        if send(&mut tx, &msg, cfg.slow_timeout).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let err = error("bad_request", "frames are JSON text");
                    if send(&mut tx, &err, cfg.slow_timeout).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {} // ping/pong are answered by the library
            },
            Some(result) = results.recv() => {
                let msg = pb::ServerMessage { kind: Some(pb::server_message::Kind::CancelResult(result)) };
                if send(&mut tx, &msg, cfg.slow_timeout).await.is_err() {
                    return;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // the store is gone: shutting down
                }
                dirty = true;
            }
            _ = tokio::time::sleep_until(due), if wants => {}
        }
    }
}

enum Handled {
    Done,
    Reply(pb::ServerMessage),
    /// Allowed: the requester follows the session. Carry it out.
    Cancel(pb::CancelRequest),
}

/// Applies a client frame.
fn handle_client_message(follower: &mut Follower, text: &str) -> Handled {
    let msg: pb::ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return Handled::Reply(error("bad_request", &format!("not a ClientMessage: {e}")))
        }
    };
    match msg.kind {
        Some(pb::client_message::Kind::Subscribe(req)) => match follower.subscribe(&req.sessions) {
            Ok(()) => Handled::Done,
            Err(e) => Handled::Reply(error("bad_request", &e.to_string())),
        },
        Some(pb::client_message::Kind::Unsubscribe(req)) => {
            follower.unsubscribe(&req.sessions);
            Handled::Done
        }
        Some(pb::client_message::Kind::Cancel(req)) => {
            if follower.follows(&req.session_id, &req.user_id) {
                Handled::Cancel(req)
            } else {
                // A notebook may stop only the sessions it follows: the pair it knows.
                telemetry::cancel_request(crate::control::target_kind(&req), "forbidden");
                let result = pb::CancelResult {
                    request_id: req.request_id,
                    code: "forbidden".to_owned(),
                    message: format!(
                        "this subscriber does not follow session {} of user '{}'",
                        req.session_id, req.user_id
                    ),
                    ..Default::default()
                };
                Handled::Reply(pb::ServerMessage {
                    kind: Some(pb::server_message::Kind::CancelResult(result)),
                })
            }
        }
        None => Handled::Reply(error(
            "bad_request",
            "empty ClientMessage: expected subscribe, unsubscribe or cancel",
        )),
    }
}

fn error(code: &str, message: &str) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Error(pb::Error {
            code: code.to_owned(),
            message: message.to_owned(),
        })),
    }
}

enum SendError {
    Slow,
    Gone,
}

async fn send<S>(tx: &mut S, msg: &pb::ServerMessage, timeout: Duration) -> Result<(), SendError>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let Ok(text) = serde_json::to_string(msg) else {
        return Err(SendError::Gone);
    };
    match tokio::time::timeout(timeout, tx.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(SendError::Gone),
        Err(_) => Err(SendError::Slow),
    }
}

/// Counts a subscriber out however its task ends.
pub(crate) struct Gone(pub &'static str);

impl Drop for Gone {
    fn drop(&mut self) {
        telemetry::subscriber_connected(self.0, -1.0);
    }
}
