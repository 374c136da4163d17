//! `sparkscope.v1.Monitor/Subscribe`: the stream for gRPC clients, server streaming, with the
//! same snapshot-then-coalesced-deltas rules as the WebSocket. Its clients send nothing after the
//! request.

use super::follow::{FollowError, Follower};
use super::identity::{AuthError, Credential, Principal};
use super::subscriber::{self, Close, Frame, Gone, Incoming, Transport};
use super::Streams;
use crate::auth::{self, Secret};
use sparkscope_proto::sparkscope::v1 as pb;
use sparkscope_proto::sparkscope::v1::monitor_server::{Monitor, MonitorServer};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub const TRANSPORT: &str = "grpc";

pub struct MonitorService {
    streams: Streams,
}

impl MonitorService {
    pub fn server(streams: Streams) -> MonitorServer<Self> {
        MonitorServer::new(MonitorService { streams })
    }
}

type UpdateStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Update, Status>> + Send>>;

#[tonic::async_trait]
impl Monitor for MonitorService {
    type SubscribeStream = UpdateStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        let (principal, cred) = self.identify(&req).await?;
        let mut follower = Follower::new(self.streams.cfg.max_sessions, principal);
        follower
            .subscribe(&req.get_ref().sessions)
            .map_err(|e| match e {
                FollowError::Forbidden(_) => Status::permission_denied(e.to_string()),
                _ => Status::invalid_argument(e.to_string()),
            })?;
        let admitted = self
            .streams
            .admit()
            .ok_or_else(|| Status::resource_exhausted("too many subscribers; try again later"))?;
        // Room for one update: the subscriber loop coalesces the rest.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(subscriber::serve(
            GrpcTransport { tx },
            follower,
            self.streams.clone(),
            admitted,
            cred,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn tasks(
        &self,
        req: Request<pb::TaskListRequest>,
    ) -> Result<Response<pb::TaskList>, Status> {
        let (principal, _) = self.identify(&req).await?;
        let req = req.into_inner();
        if !principal.may_follow(&req.user_id) {
            return Err(Status::permission_denied(format!(
                "the sessions of user '{}' are not this subscriber's to see",
                req.user_id
            )));
        }
        Ok(Response::new(self.streams.tasks.list(&req, None).await))
    }
}

impl MonitorService {
    /// Who the call's `authorization` metadata says the caller is, and the credential to check
    /// again while its stream is open.
    async fn identify<R>(&self, req: &Request<R>) -> Result<(Principal, Credential), Status> {
        let metadata = req.metadata();
        let given = auth::bearer(metadata.get("authorization").and_then(|v| v.to_str().ok()));
        let source = req.remote_addr().map(|a| a.ip());
        match self.streams.auth.identify(given, source).await {
            Ok(p) => {
                let cred = match given.and_then(|t| Secret::new(Some(t))) {
                    Some(token) => Credential::Token(token),
                    None => Credential::Anonymous,
                };
                Ok((p, cred))
            }
            Err(e @ AuthError::Unavailable(_)) => {
                Err(Status::unavailable(format!("subscriber: {e}")))
            }
            Err(e @ AuthError::Throttled) => {
                Err(Status::resource_exhausted(format!("subscriber: {e}")))
            }
            Err(e) => Err(Status::unauthenticated(format!("subscriber: {e}"))),
        }
    }
}

struct GrpcTransport {
    tx: mpsc::Sender<Result<pb::Update, Status>>,
}

impl Transport for GrpcTransport {
    const NAME: &'static str = TRANSPORT;

    async fn send(&mut self, msg: pb::ServerMessage) -> Result<(), Gone> {
        use pb::server_message::Kind;
        let item = match msg.kind {
            Some(Kind::Update(u)) => Ok(u),
            Some(Kind::Error(e)) => Err(Status::invalid_argument(e.message)),
            // Nothing a gRPC client sends on the stream leads to these.
            Some(
                Kind::CancelResult(_)
                | Kind::Tasks(_)
                | Kind::Challenge(_)
                | Kind::Welcome(_)
                | Kind::MyWork(_)
                | Kind::PreviousRun(_),
            )
            | None => return Ok(()),
        };
        self.tx.send(item).await.map_err(|_| Gone)
    }

    async fn send_update(&mut self, frame: Frame) -> Result<(), Gone> {
        self.tx.send(Ok(frame.update())).await.map_err(|_| Gone)
    }

    async fn recv(&mut self) -> Option<Incoming> {
        self.tx.closed().await;
        None
    }

    async fn close(&mut self, why: Close) {
        match why {
            // The client is not reading: its buffer is full, so this goes only if room is left.
            Close::SlowConsumer => {
                let _ = self
                    .tx
                    .try_send(Err(Status::resource_exhausted("slow consumer")));
            }
            Close::Unauthorized | Close::Revoked => {
                let status = Status::unauthenticated("the credential was revoked");
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.tx.send(Err(status))).await;
            }
            Close::ShuttingDown => {
                let status = Status::unavailable("the agent is shutting down");
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.tx.send(Err(status))).await;
            }
        }
    }
}
