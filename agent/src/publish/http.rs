//! The agent's HTTP API: `GET /api/v1/applications` (every application with its jobs, the same
//! JSON that `sparkscope replay` prints), `GET /api/v1/applications/{id}/jobs` (Spark's path and
//! shape), and `GET /healthz`.

use super::rest;
use crate::model::{lock, Store};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    /// When set, every JSON request needs `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// The WebSocket stream, with its own (subscriber) token.
    pub stream: super::ws::StreamConfig,
}

pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/applications", get(applications))
        .route("/api/v1/applications/{id}/jobs", get(jobs))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/stream", get(super::ws::handler).with_state(state))
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
