//! Where Spark events enter: live listener connections and event-log files, both read as
//! newline-delimited event-log JSON by one parser.

pub mod event;
pub mod eventlog;
pub mod listener;

use crate::model::AppState;

/// Parses one line and applies it; a bad line is counted and skipped.
pub fn ingest_line(app: &mut AppState, line: &[u8]) {
    let line = line.trim_ascii();
    if line.is_empty() {
        return;
    }
    app.stats.lines += 1;
    match event::parse_line(line) {
        Ok(ev) => app.apply(ev),
        Err(e) => {
            app.stats.parse_errors += 1;
            if app.stats.parse_errors <= 10 || app.stats.parse_errors.is_power_of_two() {
                tracing::warn!(app = %app.id, error = %e, errors = app.stats.parse_errors, "skipped a malformed line");
            }
        }
    }
}
