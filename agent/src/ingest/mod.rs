//! Where Spark events enter: live listener connections and event-log files, both read as
//! newline-delimited JSON — Spark's event-log format (`spark_json`) and, from listeners,
//! sparkscope's own lines (`protocol`) — checked (`validate`) and handed to the model; and
//! Spark's REST API, polled after gaps (`spark_poll`).

pub mod connections;
pub mod eventlog;
pub mod listener;
pub mod protocol;
pub mod replay;
pub mod spark_json;
pub mod spark_poll;
pub mod validate;

use crate::model::event::Event;
use crate::model::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no \"Event\" field")]
    NoEventName,
    #[error("the first line must be a SparkscopeHello")]
    NotHello,
    #[error(transparent)]
    OutOfRange(#[from] validate::OutOfRange),
}

/// Parses one line of either format, sparkscope's own `Sparkscope*` lines or Spark's events,
/// checks its values and cuts its free text to the kept bounds. Leading and trailing white space is ignored.
pub fn parse_line(line: &[u8]) -> Result<Event, ParseError> {
    let name = spark_json::event_name(line)?;
    let mut ev = match name.strip_prefix("Sparkscope") {
        Some(own) => protocol::parse_event(own, line)?,
        None => spark_json::parse_event(&name, line)?,
    };
    validate::check(&ev)?;
    validate::bound_text(&mut ev);
    Ok(ev)
}

/// Parses one line and applies it; a bad line is counted and skipped.
pub fn ingest_line(app: &mut AppState, line: &[u8]) {
    ingest_line_at(app, line, None);
}

/// As [`ingest_line`]; with `now_ms` (live ingest), also records how long after Spark's own
/// timestamp the event was applied (`sparkscope_ingest_lag_seconds`).
pub fn ingest_line_at(app: &mut AppState, line: &[u8], now_ms: Option<i64>) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    let parsed = parse_line(line);
    if let (Some(now), Ok(ev)) = (now_ms, &parsed) {
        if let Some(t) = ev.time_ms() {
            crate::telemetry::record_ingest_lag((now - t) as f64 / 1000.0);
        }
    }
    apply_parsed(app, parsed);
}

/// Applies a line parsed elsewhere (a replay parses on its reader threads); a bad line is
/// counted and skipped.
pub fn apply_parsed(app: &mut AppState, parsed: Result<Event, ParseError>) {
    match parsed {
        Ok(ev) => app.apply(ev),
        Err(e) => {
            let errors = app.malformed_line();
            if errors <= 10 || errors.is_power_of_two() {
                tracing::warn!(app = %app.id(), error = %e, errors, "skipped a malformed line");
            }
        }
    }
}
