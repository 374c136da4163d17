//! One subscriber, whatever its transport: it follows the feeds of its sessions (so it wakes only
//! when one of them changed), sends at most one update per interval made of the pieces the hub
//! built for everyone (so a slow subscriber holds no backlog and never slows ingest or anyone
//! else), takes the client's frames, and at shutdown answers its cancels still under way before
//! it says goodbye.

use super::cells;
use super::follow::{FollowError, Follower, SessionKey};
use super::hub::{self, Piece, Snapshot};
use super::identity::Credential;
use super::runs::Refused;
use super::{Admitted, Streams};
use crate::clock::now_ms;
use crate::control::CancelOutcome;
use crate::telemetry::{self, Limit};
use futures_util::FutureExt;
use sparkscope_proto::sparkscope::v1 as pb;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{StreamExt, StreamMap};

/// How a subscriber's frames travel: the only difference between the WebSocket and the gRPC
/// stream.
pub trait Transport: Send {
    /// The `transport` metric label.
    const NAME: &'static str;

    /// Writes one message; an error means the client is gone.
    fn send(&mut self, msg: pb::ServerMessage) -> impl Future<Output = Result<(), Gone>> + Send;

    /// Writes one update; an error means the client is gone.
    fn send_update(&mut self, frame: Frame) -> impl Future<Output = Result<(), Gone>> + Send;

    /// The next client frame; `None` once the client has gone. A transport whose clients send
    /// nothing waits here until they go.
    fn recv(&mut self) -> impl Future<Output = Option<Incoming>> + Send;

    /// Ends the stream, telling the client why.
    fn close(&mut self, why: Close) -> impl Future<Output = ()> + Send;
}

/// An update as one stream sends it: its own header around a body that may be shared with
/// every other subscriber of the same session.
pub struct Frame {
    pub generation: u64,
    pub snapshot: bool,
    pub sent_at_ms: i64,
    pub body: Arc<Piece>,
}

impl Frame {
    /// `{"update": …}` as JSON text: the header written here, the body's JSON encoded once.
    pub fn json(&self) -> String {
        let body = self.body.json();
        let rest = body.strip_prefix('{').unwrap_or("}");
        let mut s = String::with_capacity(body.len() + 96);
        s.push_str("{\"update\":{\"generation\":\"");
        s.push_str(&self.generation.to_string());
        s.push('"');
        if self.snapshot {
            s.push_str(",\"snapshot\":true");
        }
        s.push_str(",\"sentAtMs\":\"");
        s.push_str(&self.sent_at_ms.to_string());
        s.push('"');
        if rest != "}" {
            s.push(',');
        }
        s.push_str(rest);
        s.push('}');
        s
    }

    /// The update as a message of its own.
    pub fn update(&self) -> pb::Update {
        pb::Update {
            generation: self.generation,
            snapshot: self.snapshot,
            sent_at_ms: self.sent_at_ms,
            ..self.body.update.clone()
        }
    }
}

/// The client is gone.
#[derive(Debug)]
pub struct Gone;

/// A frame from the client.
// One lives per client frame, moved once into `interpret`: boxing the message would only add
// an allocation per frame.
#[allow(clippy::large_enum_variant)]
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
    /// No credential, or one that did not hold, before the stream began.
    Unauthorized,
    /// The credential the stream came in with was revoked.
    Revoked,
}

enum SendError {
    Slow,
    Gone,
}

/// The feeds of the sessions a stream follows.
type Feeds = StreamMap<SessionKey, BroadcastStream<Arc<Piece>>>;

/// What a stream has to send next, and what it has sent.
#[derive(Default)]
struct Outbox {
    /// Asked of the hub: a snapshot of every followed session.
    asked: Option<oneshot::Receiver<Snapshot>>,
    /// Arrived, not sent yet.
    snapshot: Option<Snapshot>,
    /// Deltas not sent yet, oldest first.
    pending: Vec<Arc<Piece>>,
    /// The tick whose state the client holds: deltas of ticks up to it are stale.
    baseline: u64,
    generation: u64,
}

impl Outbox {
    fn ready(&self) -> bool {
        self.snapshot.is_some() || (self.asked.is_none() && !self.pending.is_empty())
    }

    /// A piece from a feed; a feed that ran ahead of this stream means starting again from a
    /// snapshot.
    fn take(
        &mut self,
        piece: Result<Arc<Piece>, BroadcastStreamRecvError>,
        feeds: &mut Feeds,
        follower: &Follower,
        streams: &Streams,
    ) {
        match piece {
            Ok(piece) => self.pending.push(piece),
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                self.snapshot = None;
                self.asked = Some(subscribe(feeds, follower, streams));
            }
        }
    }

    /// The next update to send, if any.
    fn next(&mut self, follower: &Follower) -> Option<Frame> {
        self.pending
            .retain(|p| follower.sessions().contains(&p.key));
        let (snapshot, pieces) = match self.snapshot.take() {
            Some(s) => {
                self.baseline = s.seq;
                self.pending.retain(|p| p.seq > s.seq);
                (true, s.pieces)
            }
            None if self.asked.is_none() => (false, std::mem::take(&mut self.pending)),
            None => return None,
        };
        if !snapshot && pieces.is_empty() {
            return None;
        }
        let body = match pieces.as_slice() {
            [one] => one.clone(),
            many => Arc::new(Piece::new(
                self.baseline,
                (String::new(), String::new()),
                hub::merge(many),
            )),
        };
        self.generation += 1;
        Some(Frame {
            generation: self.generation,
            snapshot,
            sent_at_ms: now_ms(),
            body,
        })
    }
}

/// Follows exactly the feeds of the sessions `follower` follows.
fn refollow(feeds: &mut Feeds, follower: &Follower, streams: &Streams) {
    let gone: Vec<SessionKey> = feeds
        .keys()
        .filter(|k| !follower.sessions().contains(*k))
        .cloned()
        .collect();
    for k in gone {
        feeds.remove(&k);
    }
    for k in follower.sessions() {
        if !feeds.contains_key(k) {
            let feed = streams.hub.follow(k, follower.app_of(k));
            feeds.insert(k.clone(), BroadcastStream::new(feed));
        }
    }
}

/// Follows the feeds of every followed session, then asks for their snapshot: in this order, no
/// tick after the snapshot's is missed.
fn subscribe(
    feeds: &mut Feeds,
    follower: &Follower,
    streams: &Streams,
) -> oneshot::Receiver<Snapshot> {
    refollow(feeds, follower, streams);
    streams
        .hub
        .snapshot(follower.sessions().iter().cloned().collect())
}

/// The hub's answer, once a snapshot was asked for (never, otherwise).
async fn answer_of(
    asked: &mut Option<oneshot::Receiver<Snapshot>>,
) -> Result<Snapshot, oneshot::error::RecvError> {
    match asked {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// Serves one subscriber until it goes, is too slow, or the agent shuts down.
pub async fn serve<T: Transport>(
    mut t: T,
    mut follower: Follower,
    streams: Streams,
    _admitted: Admitted,
    cred: Credential,
) {
    let cfg = streams.cfg.clone();
    let mut shutdown = streams.shutdown.clone();
    // The credential is checked again whenever credentials may have been revoked, and as often
    // as JupyterHub's answers are trusted.
    let mut revocations = streams.auth.revocations();
    revocations.borrow_and_update();
    let mut recheck = tokio::time::interval(
        streams
            .auth
            .recheck_every()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_secs(1)),
    );
    recheck.tick().await;
    let mut feeds = Feeds::new();
    let mut out = Outbox::default();
    // Cancels and task lists run as their own tasks so updates keep flowing; their answers come
    // back here.
    let (results_tx, mut results) = mpsc::channel::<pb::ServerMessage>(16);
    let mut in_flight = 0usize;
    // A follower may come subscribed already (gRPC subscribes in its request).
    if follower.follows_anything() {
        out.asked = Some(subscribe(&mut feeds, &follower, &streams));
    }
    tracing::debug!(transport = T::NAME, "subscriber connected");
    telemetry::subscriber_connected(T::NAME, 1.0);
    let _connected = Connected(T::NAME);
    loop {
        // The hub ticks at most once per interval: what one tick brought goes out as one
        // update, at once.
        if out.ready() {
            while let Some(Some((_, piece))) = feeds.next().now_or_never() {
                out.take(piece, &mut feeds, &follower, &streams);
            }
            if let Some(frame) = out.next(&follower) {
                if frame.snapshot && frame.generation > 1 {
                    telemetry::resync(T::NAME);
                }
                match send_update(&mut t, frame, cfg.slow_timeout).await {
                    Ok(()) => {}
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
            _ = revocations.changed() => {
                if revoked(&streams, &cred, &follower).await {
                    telemetry::subscriber_revoked(T::NAME);
                    t.close(Close::Revoked).await;
                    return;
                }
                None
            }
            _ = recheck.tick() => {
                if revoked(&streams, &cred, &follower).await {
                    telemetry::subscriber_revoked(T::NAME);
                    t.close(Close::Revoked).await;
                    return;
                }
                None
            }
            incoming = t.recv() => match incoming {
                None => return,
                Some(Incoming::Bad(why)) => Some(error("bad_request", &why)),
                Some(Incoming::Message(msg)) => match interpret(&mut follower, msg) {
                    Handled::Done => {
                        refollow(&mut feeds, &follower, &streams);
                        None
                    }
                    Handled::Subscribed => {
                        out.snapshot = None;
                        out.asked = Some(subscribe(&mut feeds, &follower, &streams));
                        None
                    }
                    Handled::Reply(msg) => Some(msg),
                    Handled::Forbidden(req, why) => {
                        let result = streams.control.refuse(&req, CancelOutcome::Forbidden, why);
                        Some(cancel_message(result))
                    }
                    Handled::Cancel(req) if revoked(&streams, &cred, &follower).await => {
                        let why = "the credential of this stream was revoked".to_owned();
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
                    Handled::Label(label) => {
                        streams.labels.put(label);
                        None
                    }
                    Handled::Fingerprint(fp) => Some(previous_run_message(remember(&streams, fp))),
                    Handled::MyWork(req) => Some(my_work_message(cells::my_work(
                        &streams.store,
                        &streams.labels,
                        follower.principal(),
                        &req,
                        streams.cfg.ui_link_template.as_deref(),
                    ))),
                    Handled::Tasks(req) => {
                        let (tasks, done) = (streams.tasks.clone(), results_tx.clone());
                        let key = (req.session_id.clone(), req.user_id.clone());
                        let pinned = follower.app_of(&key).map(str::to_owned);
                        in_flight += 1;
                        tokio::spawn(async move {
                            let list = tasks.list(&req, pinned.as_deref()).await;
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
            Some((_, piece)) = feeds.next(), if !feeds.is_empty() => {
                out.take(piece, &mut feeds, &follower, &streams);
                None
            }
            snap = answer_of(&mut out.asked), if out.asked.is_some() => {
                out.asked = None;
                match snap {
                    Ok(s) => out.snapshot = Some(s),
                    Err(_) => return, // the hub is gone: shutting down
                }
                None
            }
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

/// Whether the stream's credential no longer stands for its subscriber.
async fn revoked(streams: &Streams, cred: &Credential, follower: &Follower) -> bool {
    streams
        .auth
        .recheck(cred, follower.principal())
        .await
        .is_err()
}

/// What a client frame asks for, once checked against what the subscriber follows.
#[derive(Debug)]
pub enum Handled {
    Done,
    /// The followed sessions grew: the next update is a snapshot of all of them.
    Subscribed,
    Reply(pb::ServerMessage),
    /// Allowed: the requester follows the session. Carry it out.
    Cancel(pb::CancelRequest),
    /// Refused: the session is not one the requester follows.
    Forbidden(pb::CancelRequest, String),
    /// Allowed: list the tasks of a stage of a followed session.
    Tasks(pb::TaskListRequest),
    /// Allowed: keep which cell a tag of the subscriber's own session belongs to.
    Label(pb::CellLabel),
    /// The subscriber's own work across its sessions.
    MyWork(pb::MyWorkRequest),
    /// Allowed: keep a finished run of a cell of the subscriber's own user.
    Fingerprint(pb::RunFingerprint),
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
            Ok(()) => Handled::Subscribed,
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
        // The handshake is over before the stream begins.
        Some(Kind::Hello(_) | Kind::Proof(_)) => Handled::Reply(error(
            "bad_request",
            "the handshake is the stream's first frames only",
        )),
        Some(Kind::Label(label)) if label.session_id.is_empty() || label.tag.is_empty() => {
            Handled::Reply(error("bad_request", "a label needs a sessionId and a tag"))
        }
        Some(Kind::Label(label)) if follower.principal().may_follow(&label.user_id) => {
            Handled::Label(label)
        }
        Some(Kind::Label(label)) => Handled::Reply(error(
            "forbidden",
            &format!(
                "the sessions of user '{}' are not this subscriber's to label",
                label.user_id
            ),
        )),
        Some(Kind::MyWork(req)) => Handled::MyWork(req),
        Some(Kind::Fingerprint(fp)) if fp.session_id.is_empty() => {
            Handled::Reply(previous_run_message(refused_run(
                &fp,
                "bad_request",
                "a fingerprint needs a sessionId",
            )))
        }
        Some(Kind::Fingerprint(fp)) if follower.principal().may_follow(&fp.user_id) => {
            Handled::Fingerprint(fp)
        }
        Some(Kind::Fingerprint(fp)) => {
            let why = format!(
                "the cells of user '{}' are not this subscriber's",
                fp.user_id
            );
            Handled::Reply(previous_run_message(refused_run(&fp, "forbidden", &why)))
        }
        // A notebook may stop only the sessions it follows: the pair it knows.
        Some(Kind::Cancel(mut req)) if follower.follows(&req.session_id, &req.user_id) => {
            if req.app_id.is_empty() {
                let key = (req.session_id.clone(), req.user_id.clone());
                req.app_id = follower.app_of(&key).unwrap_or_default().to_owned();
            }
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
            "empty ClientMessage: expected subscribe, unsubscribe, cancel, tasks, label, myWork \
             or fingerprint",
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

async fn send_update<T: Transport>(
    t: &mut T,
    frame: Frame,
    timeout: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, t.send_update(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Gone)) => Err(SendError::Gone),
        Err(_) => Err(SendError::Slow),
    }
}

/// Keeps a cell run's fingerprint; the answer holds the cell's previous run.
fn remember(streams: &Streams, fp: pb::RunFingerprint) -> pb::PreviousRun {
    let (request_id, notebook, cell_id) = (
        fp.request_id.clone(),
        fp.notebook.clone(),
        fp.cell_id.clone(),
    );
    match streams.runs.remember(fp) {
        Ok(previous) => pb::PreviousRun {
            request_id,
            notebook,
            cell_id,
            previous,
            ..Default::default()
        },
        Err(Refused::BadRequest(why)) => pb::PreviousRun {
            request_id,
            notebook,
            cell_id,
            code: "bad_request".to_owned(),
            message: why.to_owned(),
            ..Default::default()
        },
    }
}

fn refused_run(fp: &pb::RunFingerprint, code: &str, message: &str) -> pb::PreviousRun {
    pb::PreviousRun {
        request_id: fp.request_id.clone(),
        notebook: fp.notebook.clone(),
        cell_id: fp.cell_id.clone(),
        code: code.to_owned(),
        message: message.to_owned(),
        previous: None,
    }
}

fn previous_run_message(answer: pb::PreviousRun) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::PreviousRun(answer)),
    }
}

fn my_work_message(work: pb::MyWork) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::MyWork(work)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        ("s".to_owned(), "u".to_owned())
    }

    #[test]
    fn a_frame_written_around_a_shared_body_is_the_update_it_stands_for() {
        let full = pb::Update {
            jobs: vec![pb::Job {
                app_id: "app".into(),
                job_id: 3,
                name: "count at <stdin>:1".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        for (snapshot, update) in [(true, full), (false, pb::Update::default())] {
            let frame = Frame {
                generation: 3,
                snapshot,
                sent_at_ms: 1_795_000_000_000,
                body: Arc::new(Piece::new(1, key(), update)),
            };
            let parsed: pb::ServerMessage = serde_json::from_str(&frame.json()).expect("JSON");
            let expected = pb::ServerMessage {
                kind: Some(pb::server_message::Kind::Update(frame.update())),
            };
            assert_eq!(parsed, expected);
        }
    }
}
