//! Stopping work on request. A cell run (client tag) or an operation is interrupted through
//! Spark Connect's own `Interrupt` RPC, with the user and session ids the server reported; a
//! single job is cancelled through the listener's connection (`SparkContext.cancelJob`). Every
//! request is checked against the model first, so a finished, unknown or foreign target gets a
//! clear answer instead of a silent no-op.

pub mod backchannel;
pub mod interrupt;

use crate::model::app::JobStatus;
use crate::model::{lock, Store};
use backchannel::Listeners;
use interrupt::{InterruptClient, Target};
use sparkscope_proto::sparkscope::v1 as pb;
use std::sync::Arc;

/// Where and how to reach the Spark Connect server for interrupts.
#[derive(Debug, Clone, Default)]
pub struct ControlConfig {
    /// `http://host:port` of Spark Connect's gRPC endpoint; by default the address the server
    /// announced in its `ConnectServiceStarted` event.
    pub spark_connect: Option<String>,
    /// Sent as `Authorization: Bearer` when the server sets `spark.connect.authenticate.token`.
    pub spark_connect_token: Option<String>,
}

pub struct Control {
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: ControlConfig,
    interrupts: InterruptClient,
}

/// What the model says should happen for a request.
enum Plan {
    Interrupt {
        endpoint: String,
        session_id: String,
        user_id: String,
        target: Target,
    },
    CancelJob {
        app_id: String,
        job_id: i32,
    },
}

impl Control {
    pub fn new(store: Arc<Store>, listeners: Arc<Listeners>, cfg: ControlConfig) -> Self {
        let interrupts = InterruptClient::new(cfg.spark_connect_token.clone());
        Control {
            store,
            listeners,
            cfg,
            interrupts,
        }
    }

    /// Carries out a cancel request. `user_id` must be the one the server reported for the
    /// session; pass `trusted = true` only for the admin path, where an empty user id is filled
    /// in from the session.
    pub async fn cancel(&self, req: &pb::CancelRequest, trusted: bool) -> pb::CancelResult {
        let result = self.carry_out(req, trusted).await;
        let outcome = if result.ok {
            "ok"
        } else {
            result.code.as_str()
        };
        crate::telemetry::cancel_request(target_kind(req), outcome);
        result
    }

    async fn carry_out(&self, req: &pb::CancelRequest, trusted: bool) -> pb::CancelResult {
        let mut result = pb::CancelResult {
            request_id: req.request_id.clone(),
            ..Default::default()
        };
        let plan = match self.plan(req, trusted) {
            Ok(p) => p,
            Err((code, message)) => {
                result.code = code.to_owned();
                result.message = message;
                return result;
            }
        };
        let reason = if req.reason.is_empty() {
            "cancelled through sparkscope"
        } else {
            &req.reason
        };
        match plan {
            Plan::Interrupt {
                endpoint,
                session_id,
                user_id,
                target,
            } => {
                match self
                    .interrupts
                    .interrupt(&endpoint, &session_id, &user_id, &target)
                    .await
                {
                    Ok(ids) => {
                        result.ok = true;
                        result.message = if ids.is_empty() {
                            "nothing was running any more".to_owned()
                        } else {
                            format!("interrupted {} operation(s)", ids.len())
                        };
                        result.interrupted_operation_ids = ids;
                    }
                    Err(e) => {
                        result.code = e.code().to_owned();
                        result.message = e.to_string();
                    }
                }
            }
            Plan::CancelJob { app_id, job_id } => {
                let line =
                    serde_json::json!({"cmd": "cancelJob", "jobId": job_id, "reason": reason});
                match self.listeners.send(&app_id, line.to_string()) {
                    Ok(()) => {
                        result.ok = true;
                        result.message = format!("asked Spark to cancel job {job_id}");
                        result.cancelled_job_ids = vec![job_id];
                    }
                    Err(e) => {
                        result.code = "unavailable".to_owned();
                        result.message = e.to_string();
                    }
                }
            }
        }
        result
    }

    fn plan(&self, req: &pb::CancelRequest, trusted: bool) -> Result<Plan, (&'static str, String)> {
        use pb::cancel_request::Target as T;
        if req.session_id.is_empty() {
            return Err((
                "bad_request",
                "a cancel request needs a sessionId".to_owned(),
            ));
        }
        let Some(target) = &req.target else {
            return Err((
                "bad_request",
                "say what to cancel: tag, operationId or jobId".to_owned(),
            ));
        };
        for shared in self.store.apps() {
            let app = lock(&shared);
            let user = if trusted && req.user_id.is_empty() {
                match app.sessions().find(|s| s.session_id == req.session_id) {
                    Some(s) => s.user_id.clone(),
                    None => continue,
                }
            } else {
                req.user_id.clone()
            };
            if !app.knows_session(&req.session_id, &user) {
                continue;
            }
            let sid = &req.session_id;
            let endpoint = || -> Result<String, (&'static str, String)> {
                if let Some(url) = &self.cfg.spark_connect {
                    return Ok(url.clone());
                }
                match &app.connect_endpoint {
                    Some((host, port)) => {
                        let host = if host.is_empty() || host == "0.0.0.0" {
                            "127.0.0.1"
                        } else {
                            host
                        };
                        Ok(format!("http://{host}:{port}"))
                    }
                    None => Err((
                        "unavailable",
                        "the Spark Connect server's address is unknown; start the agent with \
                         --spark-connect"
                            .to_owned(),
                    )),
                }
            };
            let ops = || {
                app.operations()
                    .filter(|o| &o.session_id == sid && o.user_id == user)
            };
            return match target {
                T::Tag(tag) => {
                    let tagged: Vec<_> = ops().filter(|o| o.tags.contains(tag)).collect();
                    if tagged.is_empty() {
                        Err((
                            "not_found",
                            format!("no operation of session {sid} carries the tag '{tag}'"),
                        ))
                    } else if tagged.iter().all(|o| o.state.is_terminal()) {
                        Err((
                            "finished",
                            format!("everything tagged '{tag}' has already finished"),
                        ))
                    } else {
                        Ok(Plan::Interrupt {
                            endpoint: endpoint()?,
                            session_id: sid.clone(),
                            user_id: user,
                            target: Target::Tag(tag.clone()),
                        })
                    }
                }
                T::OperationId(op_id) => match ops().find(|o| &o.operation_id == op_id) {
                    None => Err((
                        "not_found",
                        format!("operation {op_id} is not one of session {sid}'s"),
                    )),
                    Some(o) if o.state.is_terminal() => Err((
                        "finished",
                        format!(
                            "operation {op_id} has already ended ({})",
                            o.final_state.unwrap_or(o.state).as_str()
                        ),
                    )),
                    Some(_) => Ok(Plan::Interrupt {
                        endpoint: endpoint()?,
                        session_id: sid.clone(),
                        user_id: user,
                        target: Target::Operation(op_id.clone()),
                    }),
                },
                T::JobId(job_id) => {
                    let mine = app.job(*job_id).filter(|j| {
                        j.connect
                            .as_ref()
                            .is_some_and(|c| &c.session_id == sid && c.user_id == user)
                    });
                    match mine {
                        None => Err((
                            "not_found",
                            format!("job {job_id} is not one of session {sid}'s"),
                        )),
                        Some(j) if j.status != JobStatus::Running => Err((
                            "finished",
                            format!("job {job_id} has already ended ({})", j.status.as_str()),
                        )),
                        Some(_) => Ok(Plan::CancelJob {
                            app_id: app.id.clone(),
                            job_id: *job_id,
                        }),
                    }
                }
            };
        }
        Err((
            "not_found",
            format!(
                "unknown session {} for user '{}'",
                req.session_id, req.user_id
            ),
        ))
    }
}

/// The metric label for what a request targets.
pub fn target_kind(req: &pb::CancelRequest) -> &'static str {
    match req.target {
        Some(pb::cancel_request::Target::Tag(_)) => "tag",
        Some(pb::cancel_request::Target::OperationId(_)) => "operation",
        Some(pb::cancel_request::Target::JobId(_)) => "job",
        None => "none",
    }
}
