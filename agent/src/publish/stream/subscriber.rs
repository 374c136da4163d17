//! One subscriber, whatever its transport: it waits for changes, sends at most one update per
//! interval built from the newest state (so a slow subscriber holds no backlog and never slows
//! ingest or anyone else), takes the client's frames, and at shutdown answers its cancels still
//! under way before it says goodbye.

use super::follow::{FollowError, Follower};
use super::{Admitted, Streams};
use crate::control::CancelOutcome;
use crate::telemetry::{self, Limit};
use sparkscope_proto::sparkscope::v1 as pb;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a subscriber's frames travel: the only difference between the WebSocket and the gRPC
/// stream.
pub trait Transport: Send {
    /// The `transport` metric label.
    const NAME: &'static str;

    /// Writes one message; an error means the client is gone.
    fn send(&mut self, msg: pb::ServerMessage) -> impl Future<Output = Result<(), Gone>> + Send;

    /// The next client frame; `None` once the client has gone. A transport whose clients send
    /// nothing waits here until they go.
    fn recv(&mut self) -> impl Future<Output = Option<Incoming>> + Send;

    /// Ends the stream, telling the client why.
    fn close(&mut self, why: Close) -> impl Future<Output = ()> + Send;
}

/// The client is gone.
#[derive(Debug)]
pub struct Gone;

/// A frame from the client.
pub enum Incoming {
    Message(pb::ClientMessage),
    /// Not a `ClientMessage`: answered with an error, the stream stays open.
    Bad(String),
}

/// Why the agent ends a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    SlowConsumer,
    ShuttingDown,
}

enum SendError {
    Slow,
    Gone,
}

/// Serves one subscriber until it goes, is too slow, or the agent shuts down.
pub async fn serve<T: Transport>(
    mut t: T,
    mut follower: Follower,
    streams: Streams,
    _admitted: Admitted,
) {
    let cfg = streams.cfg.clone();
    let mut shutdown = streams.shutdown.clone();
    let mut changes = streams.store.changes();
    // Cancels and task lists run as their own tasks so updates keep flowing; their answers come
    // back here.
    let (results_tx, mut results) = mpsc::channel::<pb::ServerMessage>(16);
    let mut in_flight = 0usize;
    let mut dirty = false;
    let mut last_sent: Option<Instant> = None;
    tracing::debug!(transport = T::NAME, "subscriber connected");
    telemetry::subscriber_connected(T::NAME, 1.0);
    let _connected = Connected(T::NAME);
    loop {
        let due = last_sent.map_or_else(Instant::now, |t| t + cfg.interval);
        let wants = follower.follows_anything() && (dirty || follower.needs_snapshot());
        if wants && Instant::now() >= due {
            dirty = false;
            if let Some(update) =
                follower.next_update(&streams.store, cfg.ui_link_template.as_deref())
            {
                if update.snapshot && update.generation > 1 {
                    telemetry::resync(T::NAME);
                }
                match send(&mut t, update_message(update), cfg.slow_timeout).await {
                    Ok(()) => last_sent = Some(Instant::now()),
                    Err(SendError::Slow) => {
                        tracing::info!(transport = T::NAME, "disconnecting a slow subscriber");
                        telemetry::slow_subscriber(T::NAME);
                        t.close(Close::SlowConsumer).await;
                        return;
                    }
                    Err(SendError::Gone) => return,
                }
            }
            continue;
        }
        let reply = tokio::select! {
            _ = shutdown.requested() => break,
            incoming = t.recv() => match incoming {
                None => return,
                Some(Incoming::Bad(why)) => Some(error("bad_request", &why)),
                Some(Incoming::Message(msg)) => match interpret(&mut follower, msg) {
                    Handled::Done => None,
                    Handled::Reply(msg) => Some(msg),
                    Handled::Forbidden(req, why) => {
                        let result = streams.control.refuse(&req, CancelOutcome::Forbidden, why);
                        Some(cancel_message(result))
                    }
                    Handled::Cancel(req) => {
                        let (control, done) = (streams.control.clone(), results_tx.clone());
                        in_flight += 1;
                        tokio::spawn(async move {
                            let result = control.cancel(&req, false).await;
                            let _ = done.send(cancel_message(result)).await;
                        });
                        None
                    }
                    Handled::Tasks(req) => {
                        let (tasks, done) = (streams.tasks.clone(), results_tx.clone());
                        in_flight += 1;
                        tokio::spawn(async move {
                            let list = tasks.list(&req).await;
                            let _ = done.send(tasks_message(list)).await;
                        });
                        None
                    }
                },
            },
            Some(answer) = results.recv() => {
                in_flight -= 1;
                Some(answer)
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return; // the store is gone: shutting down
                }
                dirty = true;
                None
            }
            _ = tokio::time::sleep_until(due), if wants => None,
        };
        if let Some(msg) = reply {
            if send(&mut t, msg, cfg.slow_timeout).await.is_err() {
                return;
            }
        }
    }
    // Shutting down: every cancel under way is answered (`Control` answers within its own
    // grace), then the client is told.
    while in_flight > 0 {
        match tokio::time::timeout(cfg.slow_timeout, results.recv()).await {
            Ok(Some(answer)) => {
                in_flight -= 1;
                if send(&mut t, answer, cfg.slow_timeout).await.is_err() {
                    return;
                }
            }
            _ => break,
        }
    }
    t.close(Close::ShuttingDown).await;
}

/// What a client frame asks for, once checked against what the subscriber follows.
#[derive(Debug)]
pub enum Handled {
    Done,
    Reply(pb::ServerMessage),
    /// Allowed: the requester follows the session. Carry it out.
    Cancel(pb::CancelRequest),
    /// Refused: the session is not one the requester follows.
    Forbidden(pb::CancelRequest, String),
    /// Allowed: list the tasks of a stage of a followed session.
    Tasks(pb::TaskListRequest),
}

/// A text frame, read as a `ClientMessage`.
pub fn parse_frame(text: &str) -> Incoming {
    match serde_json::from_str(text) {
        Ok(msg) => Incoming::Message(msg),
        Err(e) => Incoming::Bad(format!("not a ClientMessage: {e}")),
    }
}

/// Applies a client message to what the subscriber follows, and says what else it needs.
pub fn interpret(follower: &mut Follower, msg: pb::ClientMessage) -> Handled {
    use pb::client_message::Kind;
    match msg.kind {
        Some(Kind::Subscribe(req)) => match follower.subscribe(&req.sessions) {
            Ok(()) => Handled::Done,
            Err(e) => {
                let code = match e {
                    FollowError::TooManySessions(_) => {
                        telemetry::limit_hit(Limit::SessionsPerSubscriber, 1);
                        "bad_request"
                    }
                    FollowError::Forbidden(_) => "forbidden",
                    FollowError::MissingSessionId => "bad_request",
                };
                Handled::Reply(error(code, &e.to_string()))
            }
        },
        Some(Kind::Unsubscribe(req)) => {
            follower.unsubscribe(&req.sessions);
            Handled::Done
        }
        // A notebook may stop only the sessions it follows: the pair it knows.
        Some(Kind::Cancel(req)) if follower.follows(&req.session_id, &req.user_id) => {
            Handled::Cancel(req)
        }
        Some(Kind::Cancel(req)) => {
            let message = format!(
                "this subscriber does not follow session {} of user '{}'",
                req.session_id, req.user_id
            );
            Handled::Forbidden(req, message)
        }
        Some(Kind::Tasks(req)) if follower.follows(&req.session_id, &req.user_id) => {
            Handled::Tasks(req)
        }
        Some(Kind::Tasks(req)) => {
            let message = format!(
                "this subscriber does not follow session {} of user '{}'",
                req.session_id, req.user_id
            );
            Handled::Reply(tasks_message(pb::TaskList {
                request_id: req.request_id,
                app_id: req.app_id,
                stage_id: req.stage_id,
                attempt_id: req.attempt_id,
                code: "forbidden".to_owned(),
                message,
                ..Default::default()
            }))
        }
        None => Handled::Reply(error(
            "bad_request",
            "empty ClientMessage: expected subscribe, unsubscribe, cancel or tasks",
        )),
    }
}

async fn send<T: Transport>(
    t: &mut T,
    msg: pb::ServerMessage,
    timeout: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, t.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Gone)) => Err(SendError::Gone),
        Err(_) => Err(SendError::Slow),
    }
}

fn update_message(update: pb::Update) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Update(update)),
    }
}

fn tasks_message(list: pb::TaskList) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Tasks(list)),
    }
}

fn cancel_message(result: pb::CancelResult) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::CancelResult(result)),
    }
}

pub fn error(code: &str, message: &str) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Error(pb::Error {
            code: code.to_owned(),
            message: message.to_owned(),
        })),
    }
}

/// Counts a subscriber out however its task ends.
struct Connected(&'static str);

impl Drop for Connected {
    fn drop(&mut self) {
        telemetry::subscriber_connected(self.0, -1.0);
    }
}
