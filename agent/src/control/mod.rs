//! Stopping work on request. A cell run (client tag) or an operation is interrupted through
//! Spark Connect's own `Interrupt` RPC, with the user and session ids the server reported; a
//! single job is cancelled through the listener's connection (`SparkContext.cancelJob`). Every
//! request is checked against the model first, so a finished, unknown or foreign target gets a
//! clear answer instead of a silent no-op.

pub mod backchannel;
pub mod interrupt;

use crate::auth::Secret;
use crate::flags::non_empty;
use crate::ingest::connections::Listeners;
use crate::model::jobs::JobStatus;
use crate::model::{lock, Store};
use crate::shutdown::Shutdown;
use crate::telemetry::{self, Limit};
use interrupt::{InterruptClient, Target};
use sparkscope_proto::sparkscope::v1 as pb;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a cancel request ended: its `CancelResult.code` on the wire, its HTTP status for
/// operators, and its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Ok,
    NotFound,
    Finished,
    Forbidden,
    Unavailable,
    Refused,
    BadRequest,
}

impl CancelOutcome {
    pub const ALL: [CancelOutcome; 7] = [
        CancelOutcome::Ok,
        CancelOutcome::NotFound,
        CancelOutcome::Finished,
        CancelOutcome::Forbidden,
        CancelOutcome::Unavailable,
        CancelOutcome::Refused,
        CancelOutcome::BadRequest,
    ];

    /// The `outcome` label of `sparkscope_cancel_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            CancelOutcome::Ok => "ok",
            CancelOutcome::NotFound => "not_found",
            CancelOutcome::Finished => "finished",
            CancelOutcome::Forbidden => "forbidden",
            CancelOutcome::Unavailable => "unavailable",
            CancelOutcome::Refused => "refused",
            CancelOutcome::BadRequest => "bad_request",
        }
    }

    /// `CancelResult.code`: empty when the request was carried out (`ok` says so).
    pub fn wire_code(self) -> &'static str {
        match self {
            CancelOutcome::Ok => "",
            other => other.label(),
        }
    }

    /// The status of `POST /api/v1/cancel`'s answer.
    pub fn http_status(self) -> u16 {
        match self {
            CancelOutcome::Ok => 200,
            CancelOutcome::NotFound => 404,
            CancelOutcome::Finished => 409,
            CancelOutcome::BadRequest => 400,
            CancelOutcome::Forbidden => 403,
            CancelOutcome::Unavailable | CancelOutcome::Refused => 502,
        }
    }

    /// The outcome a `CancelResult` reports.
    pub fn of(result: &pb::CancelResult) -> CancelOutcome {
        if result.ok {
            return CancelOutcome::Ok;
        }
        CancelOutcome::ALL
            .into_iter()
            .find(|o| o.wire_code() == result.code)
            .unwrap_or(CancelOutcome::Refused)
    }
}

/// The `target` label values of `sparkscope_cancel_requests_total`.
pub const CANCEL_TARGETS: [&str; 3] = ["tag", "operation", "job"];

/// How long a cancel already under way gets to finish once the agent shuts down.
const SHUTDOWN_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Where and how to reach the Spark Connect server for interrupts.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Cancel")]
pub struct ControlConfig {
    /// Spark Connect's gRPC address for interrupts (e.g. http://127.0.0.1:15002); by default
    /// the address the server announces to the listener.
    #[arg(
        long = "spark-connect", value_name = "URL",
        env = "SPARKSCOPE_SPARK_CONNECT",
        value_parser = non_empty
    )]
    pub spark_connect: Option<String>,
    /// Sent to Spark Connect as a bearer token when the server sets
    /// spark.connect.authenticate.token.
    #[arg(
        long = "spark-connect-token", value_name = "TOKEN",
        env = "SPARKSCOPE_SPARK_CONNECT_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse
    )]
    pub spark_connect_token: Option<Secret>,
    /// Cancel requests being carried out at once; more are answered `unavailable`.
    #[arg(
        id = "max_cancels_in_flight",
        long = "max-cancels-in-flight",
        value_name = "N",
        default_value_t = 64,
        env = "SPARKSCOPE_MAX_CANCELS_IN_FLIGHT"
    )]
    pub max_in_flight: usize,
}

crate::flags::default_from_flags!(ControlConfig);

pub struct Control {
    store: Arc<Store>,
    listeners: Arc<Listeners>,
    cfg: ControlConfig,
    interrupts: InterruptClient,
    shutdown: Shutdown,
    in_flight: AtomicUsize,
}

type Refusal = (CancelOutcome, String);

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
    /// A classic session's cell run: its job tag, through the listener.
    CancelTag {
        app_id: String,
        tag: String,
        job_ids: Vec<i32>,
    },
}

impl Control {
    pub fn new(
        store: Arc<Store>,
        listeners: Arc<Listeners>,
        cfg: ControlConfig,
        shutdown: Shutdown,
    ) -> Self {
        let interrupts = InterruptClient::new(cfg.spark_connect_token.clone());
        Control {
            store,
            listeners,
            cfg,
            interrupts,
            shutdown,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Carries out a cancel request. `user_id` must be the one the server reported for the
    /// session; pass `trusted = true` only for the admin path, where an empty user id is filled
    /// in from the session. A request still under way when the agent shuts down is answered
    /// (`unavailable`) rather than dropped.
    pub async fn cancel(&self, req: &pb::CancelRequest, trusted: bool) -> pb::CancelResult {
        let _in_flight = match InFlight::enter(&self.in_flight, self.cfg.max_in_flight) {
            Some(slot) => slot,
            None => {
                telemetry::limit_hit(Limit::CancelsInFlight, 1);
                let why = "too many cancel requests at once; try again".to_owned();
                return self.refuse(req, CancelOutcome::Unavailable, why);
            }
        };
        let mut shutdown = self.shutdown.clone();
        let result = tokio::select! {
            r = self.carry_out(req, trusted) => r,
            _ = async {
                shutdown.requested().await;
                tokio::time::sleep(SHUTDOWN_ANSWER_GRACE).await;
            } => answer(
                req,
                CancelOutcome::Unavailable,
                "the agent is shutting down; the request may not have reached Spark".to_owned(),
            ),
        };
        telemetry::cancel_request(target_kind(req), CancelOutcome::of(&result).label());
        result
    }

    /// Answers a request that is not allowed or not understood, without carrying it out.
    pub fn refuse(
        &self,
        req: &pb::CancelRequest,
        outcome: CancelOutcome,
        message: String,
    ) -> pb::CancelResult {
        telemetry::cancel_request(target_kind(req), outcome.label());
        answer(req, outcome, message)
    }

    async fn carry_out(&self, req: &pb::CancelRequest, trusted: bool) -> pb::CancelResult {
        let plan = match self.plan(req, trusted) {
            Ok(p) => p,
            Err((outcome, message)) => return answer(req, outcome, message),
        };
        let mut result = answer(req, CancelOutcome::Ok, String::new());
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
                        result.message = if ids.is_empty() {
                            "nothing was running any more".to_owned()
                        } else {
                            format!("interrupted {} operation(s)", ids.len())
                        };
                        result.interrupted_operation_ids = ids;
                    }
                    Err(e) => return answer(req, e.outcome(), e.to_string()),
                }
            }
            Plan::CancelTag {
                app_id,
                tag,
                job_ids,
            } => match backchannel::cancel_tag(&self.listeners, &app_id, &tag, reason).await {
                Ok(()) => {
                    result.message = format!("Spark cancelled the jobs tagged '{tag}'");
                    result.cancelled_job_ids = job_ids;
                }
                Err((outcome, why)) => return answer(req, outcome, why),
            },
            Plan::CancelJob { app_id, job_id } => {
                match backchannel::cancel_job(&self.listeners, &app_id, job_id, reason).await {
                    Ok(()) => {
                        result.message = format!("Spark cancelled job {job_id}");
                        result.cancelled_job_ids = vec![job_id];
                    }
                    Err((outcome, why)) => return answer(req, outcome, why),
                }
            }
        }
        result
    }

    fn plan(&self, req: &pb::CancelRequest, trusted: bool) -> Result<Plan, Refusal> {
        use pb::cancel_request::Target as T;
        if req.session_id.is_empty() {
            return Err((
                CancelOutcome::BadRequest,
                "a cancel request needs a sessionId".to_owned(),
            ));
        }
        let Some(target) = &req.target else {
            return Err((
                CancelOutcome::BadRequest,
                "say what to cancel: tag, operationId or jobId".to_owned(),
            ));
        };
        // The session's own application only: the one the request names (a notebook reads it
        // from its Connect server), else the one that reported the session first. Another
        // application announcing the same session id never gets its interrupts.
        let owner = match req.app_id.as_str() {
            "" => self.store.owner_of(&req.session_id),
            named => Some(named.to_owned()),
        };
        let candidates = match &owner {
            Some(app) => self.store.get(app).into_iter().collect(),
            None => self.store.apps(),
        };
        for shared in candidates {
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
            let endpoint = || -> Result<String, Refusal> {
                if let Some(url) = &self.cfg.spark_connect {
                    return Ok(url.clone());
                }
                // The port the server announced, on the host its listener connects from: an
                // announcement cannot send interrupts (and the Connect token) anywhere else.
                let info = app.info();
                match (&info.connect_endpoint, info.listener_ip) {
                    (Some((_, port)), Some(ip)) => Ok(match ip {
                        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
                        v4 => format!("http://{v4}:{port}"),
                    }),
                    _ => Err((
                        CancelOutcome::Unavailable,
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
                // A classic session has no operations: its cell runs are job tags.
                T::Tag(tag) if app.info().classic_session && sid == app.id() => {
                    let tagged: Vec<_> = app
                        .jobs()
                        .filter(|j| j.connect.as_ref().is_some_and(|c| c.tags.contains(tag)))
                        .collect();
                    let running: Vec<i32> = tagged
                        .iter()
                        .filter(|j| j.status == JobStatus::Running)
                        .map(|j| j.job_id)
                        .collect();
                    if tagged.is_empty() {
                        Err((
                            CancelOutcome::NotFound,
                            format!("no job of session {sid} carries the tag '{tag}'"),
                        ))
                    } else if running.is_empty() {
                        Err((
                            CancelOutcome::Finished,
                            format!("everything tagged '{tag}' has already finished"),
                        ))
                    } else {
                        Ok(Plan::CancelTag {
                            app_id: app.id().to_owned(),
                            tag: tag.clone(),
                            job_ids: running,
                        })
                    }
                }
                T::Tag(tag) => {
                    let tagged: Vec<_> = ops().filter(|o| o.tags.contains(tag)).collect();
                    if tagged.is_empty() {
                        Err((
                            CancelOutcome::NotFound,
                            format!("no operation of session {sid} carries the tag '{tag}'"),
                        ))
                    } else if tagged.iter().all(|o| o.state.is_terminal()) {
                        Err((
                            CancelOutcome::Finished,
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
                        CancelOutcome::NotFound,
                        format!("operation {op_id} is not one of session {sid}'s"),
                    )),
                    Some(o) if o.state.is_terminal() => Err((
                        CancelOutcome::Finished,
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
                            CancelOutcome::NotFound,
                            format!("job {job_id} is not one of session {sid}'s"),
                        )),
                        Some(j) if j.status != JobStatus::Running => Err((
                            CancelOutcome::Finished,
                            format!("job {job_id} has already ended ({})", j.status.as_str()),
                        )),
                        Some(_) => Ok(Plan::CancelJob {
                            app_id: app.id().to_owned(),
                            job_id: *job_id,
                        }),
                    }
                }
            };
        }
        Err((
            CancelOutcome::NotFound,
            format!(
                "unknown session {} for user '{}'",
                req.session_id, req.user_id
            ),
        ))
    }
}

/// One request being carried out, counted while it lives.
pub struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// A place among at most `max` requests at once, or `None` at the bound.
    pub fn enter(count: &'a AtomicUsize, max: usize) -> Option<InFlight<'a>> {
        let slot = InFlight(count);
        (count.fetch_add(1, Ordering::AcqRel) < max).then_some(slot)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn answer(req: &pb::CancelRequest, outcome: CancelOutcome, message: String) -> pb::CancelResult {
    pb::CancelResult {
        request_id: req.request_id.clone(),
        ok: outcome == CancelOutcome::Ok,
        code: outcome.wire_code().to_owned(),
        message,
        ..Default::default()
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
