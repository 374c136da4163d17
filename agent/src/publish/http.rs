//! The agent's HTTP API: `GET /api/v1/applications` (every application with its jobs, the same
//! JSON that `sparkscope replay` prints), `GET /api/v1/applications/{id}/jobs` (Spark's path and
//! shape), and `GET /healthz`.

use super::rest;
use crate::model::{lock, Store};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// When set, every JSON request needs `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// The WebSocket stream, with its own (subscriber) token.
    pub stream: super::ws::StreamConfig,
    pub control: Arc<crate::control::Control>,
    /// Required by `POST /api/v1/cancel` (operators); unset disables that endpoint.
    pub admin_token: Option<Arc<str>>,
    /// `GET /metrics`, when the Prometheus recorder is installed.
    pub metrics: Option<Arc<MetricsExport>>,
}

pub struct MetricsExport {
    pub handle: metrics_exporter_prometheus::PrometheusHandle,
    pub users: crate::telemetry::UserLabels,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/applications", get(applications))
        .route("/api/v1/applications/{id}/jobs", get(jobs))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/stream",
            get(super::ws::handler).with_state(state.clone()),
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
            let jobs: Vec<rest::JobData> = lock(&app).jobs().rev().map(rest::job).collect();
            Json(jobs).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            &format!("unknown application '{id}'"),
        ),
    }
}

/// The Prometheus exposition (text format 0.0.4). Needs no token, like /healthz: it carries no
/// session ids, statement text or tags.
async fn prometheus(State(st): State<ApiState>) -> Response {
    match &st.metrics {
        Some(m) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::telemetry::render(&st.store, &m.users, &m.handle),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "metrics are off"),
    }
}

/// Operators' cancel: any session, behind the admin token. The body is a `CancelRequest` (proto3
/// JSON); the answer a `CancelResult`, with an HTTP status that matches its code.
async fn cancel(
    State(st): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let Some(expected) = &st.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "cancel over HTTP is off: start the agent with --admin-token",
        );
    };
    if !bearer_matches(&headers, expected) {
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
    let code = match result.code.as_str() {
        "" => StatusCode::OK,
        "not_found" => StatusCode::NOT_FOUND,
        "finished" => StatusCode::CONFLICT,
        "bad_request" => StatusCode::BAD_REQUEST,
        "forbidden" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_GATEWAY,
    };
    (code, Json(result)).into_response()
}

async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(expected) = &st.token {
        if !bearer_matches(req.headers(), expected) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    next.run(req).await
}

/// `Authorization: Bearer <expected>`, compared in constant time.
pub fn bearer_matches(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    crate::ingest::listener::constant_time_eq(expected.as_bytes(), given.as_bytes())
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, Json(serde_json::json!({ "error": msg }))).into_response()
}
