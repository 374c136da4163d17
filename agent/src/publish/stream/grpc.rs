//! `sparkscope.v1.Monitor/Subscribe`: the stream of followed sessions for gRPC clients, with the
//! same snapshot-then-coalesced-deltas rules as the WebSocket.

use super::follow::Follower;
use super::ws::StreamConfig;
use crate::model::Store;
use sparkscope_proto::sparkscope::v1::monitor_server::{Monitor, MonitorServer};
use sparkscope_proto::sparkscope::v1::{SubscribeRequest, Update};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct MonitorService {
    store: Arc<Store>,
    cfg: StreamConfig,
}

impl MonitorService {
    pub fn server(store: Arc<Store>, cfg: StreamConfig) -> MonitorServer<Self> {
        MonitorServer::new(MonitorService { store, cfg })
    }
}

type UpdateStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Update, Status>> + Send>>;

#[tonic::async_trait]
impl Monitor for MonitorService {
    type SubscribeStream = UpdateStream;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<UpdateStream>, Status> {
        if let Some(expected) = &self.cfg.token {
            let given = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !crate::ingest::listener::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
                return Err(Status::unauthenticated("missing or wrong subscriber token"));
            }
        }
        let mut follower = Follower::new(self.cfg.max_sessions);
        follower
            .subscribe(&req.get_ref().sessions)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(feed(follower, self.store.clone(), self.cfg.clone(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn feed(
    mut follower: Follower,
    store: Arc<Store>,
    cfg: StreamConfig,
    tx: mpsc::Sender<Result<Update, Status>>,
) {
    let mut changes = store.changes();
    crate::telemetry::subscriber_connected("grpc", 1.0);
    let _gone = super::ws::Gone("grpc");
    loop {
        if let Some(update) = follower.next_update(&store) {
            match tokio::time::timeout(cfg.slow_timeout, tx.send(Ok(update))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    crate::telemetry::slow_subscriber("grpc");
                    let _ = tx.try_send(Err(Status::resource_exhausted("slow consumer")));
                    return;
                }
            }
        }
        let sent = Instant::now();
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep_until(sent + cfg.interval) => {}
            _ = tx.closed() => return,
        }
    }
}
