//! The agent's HTTP server: the JSON API (`GET /api/v1/applications`, every application with its
//! jobs, the same JSON that `sparkscope replay` prints; `GET /api/v1/applications/{id}/jobs`,
//! Spark's path and shape; `GET /api/v1/applications/{id}/logs`, the driver's kept WARN and
//! ERROR lines with whose each is), the WebSocket stream (`GET /api/v1/stream`), operators' cancel
//! (`POST /api/v1/cancel`), the Prometheus exposition (`GET /metrics`) and `GET /healthz`.

use super::stream::ws;
use super::{rest, ApiState};
use crate::auth::{self, Secret};
use crate::control::CancelOutcome;
use crate::model::lock;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// Who may use the HTTP API's operator surfaces.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP API")]
pub struct AccessConfig {
    /// Bearer token of the HTTP JSON API, an operator's view of every application and session
    /// (the admin token works too). Required unless --allow-anonymous-api.
    #[arg(
        long = "api-token", value_name = "TOKEN",
        env = "SPARKSCOPE_API_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse_own
    )]
    pub api_token: Option<Secret>,
    /// Serve the JSON API without a token. Only for a machine where every local user is trusted.
    #[arg(long = "allow-anonymous-api", env = "SPARKSCOPE_ALLOW_ANONYMOUS_API")]
    pub allow_anonymous_api: bool,
    /// Bearer token of GET /metrics; unset leaves it open (it holds no session ids or tags).
    #[arg(
        long = "metrics-token", value_name = "TOKEN",
        env = "SPARKSCOPE_METRICS_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse_own
    )]
    pub metrics_token: Option<Secret>,
    /// Token for operators' cancel (`POST /api/v1/cancel`, `sparkscope cancel`); unset turns
    /// that endpoint off. Notebooks cancel through the stream, where only followed sessions may
    /// be cancelled.
    #[arg(
        long = "admin-token", value_name = "TOKEN",
        env = "SPARKSCOPE_ADMIN_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse_own
    )]
    pub admin_token: Option<Secret>,
}

crate::flags::default_from_flags!(AccessConfig);

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/applications", get(applications))
        .route("/api/v1/applications/{id}/jobs", get(jobs))
        .route("/api/v1/applications/{id}/logs", get(logs))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/stream",
            get(ws::handler).with_state(state.streams.clone()),
        )
        .route("/api/v1/cancel", post(cancel).with_state(state.clone()))
        .route("/metrics", get(prometheus).with_state(state))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
}

async fn applications(State(st): State<ApiState>) -> Json<rest::Applications> {
    let applications = st
        .store
        .apps()
        .iter()
        .map(|a| rest::application(&lock(a)))
        .collect();
    Json(rest::Applications { applications })
}

async fn jobs(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    match st.store.get(&id) {
        Some(app) => {
            let jobs: Vec<rest::Job> = lock(&app).jobs().rev().map(rest::job).collect();
            Json(jobs).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("unknown application '{id}'"),
        ),
    }
}

/// `?since=<seq>&limit=<n>` of the logs endpoint.
#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    since: u64,
    #[serde(default = "default_log_limit")]
    limit: usize,
}

fn default_log_limit() -> usize {
    500
}

/// The driver's kept WARN and ERROR lines of one application, every session's: an operator's
/// view, behind the JSON API's tokens.
async fn logs(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("since and limit must be counts: {e}"),
            )
        }
    };
    match st.store.get(&id) {
        Some(app) => Json(rest::log_lines(&lock(&app), q.since, q.limit)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("unknown application '{id}'"),
        ),
    }
}

/// The Prometheus exposition (text format 0.0.4). Open unless `--metrics-token` is set: it
/// carries no session ids, statement text or tags.
async fn prometheus(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    if !auth::allows(st.access.metrics_token.as_ref(), auth::bearer_in(&headers)) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong metrics token");
    }
    match &st.metrics {
        Some(m) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            m.render(&st.store),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "metrics are off"),
    }
}

/// Operators' cancel: any session, behind the admin token. The body is a `CancelRequest` (proto3
/// JSON); the answer a `CancelResult`, with an HTTP status that matches its outcome.
async fn cancel(State(st): State<ApiState>, headers: HeaderMap, body: String) -> Response {
    let Some(expected) = &st.access.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "cancel over HTTP is off: start the agent with --admin-token",
        );
    };
    if !auth::allows(Some(expected), auth::bearer_in(&headers)) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let req: sparkscope_proto::sparkscope::v1::CancelRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a CancelRequest: {e}"),
            )
        }
    };
    let result = st.control.cancel(&req, true).await;
    let status = StatusCode::from_u16(CancelOutcome::of(&result).http_status())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    (status, Json(result)).into_response()
}

/// The JSON API is an operator's view: the API token or the admin token.
async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let given = auth::bearer_in(req.headers());
    let (api, admin) = (&st.access.api_token, &st.access.admin_token);
    let open = api.is_none() && admin.is_none();
    let known = [api, admin].iter().any(|t| {
        t.as_ref()
            .is_some_and(|s| given.is_some_and(|g| s.matches(g)))
    });
    if !open && !known {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (the JSON API takes the API or the admin token)",
        );
    }
    next.run(req).await
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, Json(serde_json::json!({ "error": msg }))).into_response()
}
