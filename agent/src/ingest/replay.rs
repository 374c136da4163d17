//! `sparkscope replay`: the same parser and model as the live agent, fed from event-log files.

use super::eventlog::{self, LogError};
use super::ingest_line;
use crate::model::{AppState, Retention};
use std::path::Path;

/// Totals over everything replayed.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub lines: u64,
    pub parse_errors: u64,
    pub unknown_events: u64,
}

/// Replays every event log found at `path` (a file, a rolling log directory, or a directory of
/// logs) into one application state each.
pub fn replay(
    path: &Path,
    retention: &Retention,
) -> Result<(Vec<AppState>, ReplayStats), LogError> {
    let mut apps = Vec::new();
    let mut stats = ReplayStats::default();
    for log in eventlog::discover(path)? {
        let mut app = AppState::new("", retention.clone());
        eventlog::for_each_line(&log, |line| ingest_line(&mut app, line))?;
        let s = app.stats();
        stats.lines += s.lines;
        stats.parse_errors += s.parse_errors;
        stats.unknown_events += s.unknown_events;
        apps.push(app);
    }
    Ok((apps, stats))
}
