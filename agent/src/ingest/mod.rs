//! Where Spark events enter: live listener connections and event-log files, both read as
//! newline-delimited event-log JSON by one parser and handed to the model.

pub mod connections;
pub mod eventlog;
pub mod listener;
pub mod parse;
pub mod reconcile;
pub mod replay;
pub mod sampler;
pub mod validate;

use crate::model::event::Event;
use crate::model::AppState;

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
    let parsed = parse::parse_line(line);
    if let (Some(now), Ok(ev)) = (now_ms, &parsed) {
        if let Some(t) = ev.time_ms() {
            crate::telemetry::record_ingest_lag((now - t) as f64 / 1000.0);
        }
    }
    apply_parsed(app, parsed);
}

/// Applies a line parsed elsewhere (a replay parses on its reader threads); a bad line is
/// counted and skipped.
pub fn apply_parsed(app: &mut AppState, parsed: Result<Event, parse::ParseError>) {
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
