//! The driver's WARN and ERROR lines (`SparkscopeLogLine`), kept per application newest last and
//! bounded (`--max-log-lines`), each with whose it is when that can be told by identity: the
//! logging thread's job tags (a Connect operation's thread, a task's), Spark's structured-logging
//! context, or the stage the line names ("task 0.0 in stage 3.0 (TID 7)") and the job that ran
//! it. A line nothing ties to a session belongs to nobody: only operators see it. Never by
//! timing.

use super::event::{LogLine, StageKey};
use std::collections::VecDeque;

/// One kept line.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Numbered per application from 1, in arrival order: a stream sends each line once.
    pub seq: u64,
    /// The model generation it arrived in.
    pub updated: u64,
    pub line: LogLine,
    pub owner: Option<LogOwner>,
}

/// Whose a line is: the session (and, where known, the operation, job and stage) it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOwner {
    pub user_id: String,
    pub session_id: String,
    /// Empty when not known.
    pub operation_id: String,
    /// The client tags (notebook cell runs) of the operation or job.
    pub tags: Vec<String>,
    pub job_id: Option<i32>,
    pub stage: Option<StageKey>,
}

/// The kept lines of one application, oldest first. Lines are added and owned by
/// `AppState` (`log_owner`).
#[derive(Debug, Default)]
pub struct Logs {
    pub(super) lines: VecDeque<LogEntry>,
    pub(super) next_seq: u64,
}

impl Logs {
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogEntry> {
        self.lines.iter()
    }
}

/// The stage attempt a line names: its context's `stage_id` (and `stage_attempt_id`), else the
/// first "stage <id>.<attempt>" of its task name, message or thread name (Spark's
/// `TaskSetManager`, `Executor` and task threads write it so).
pub fn stage_of_line(l: &LogLine) -> Option<StageKey> {
    let c = &l.context;
    if let Some(id) = c.stage_id.as_deref().and_then(|s| s.parse::<i32>().ok()) {
        let attempt = c
            .stage_attempt_id
            .as_deref()
            .and_then(|s| s.parse::<i32>().ok())
            .unwrap_or(0);
        return Some((id, attempt));
    }
    [
        c.task_name.as_deref(),
        Some(l.message.as_str()),
        Some(l.thread.as_str()),
    ]
    .into_iter()
    .flatten()
    .find_map(stage_in_text)
}

/// The first "stage <digits>[.<digits>]" in a text.
fn stage_in_text(text: &str) -> Option<StageKey> {
    let mut rest = text;
    while let Some(at) = rest.find("stage ") {
        rest = &rest[at + "stage ".len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let n = digits(rest);
        if n == 0 || n > 9 {
            continue;
        }
        let Ok(id) = rest[..n].parse::<i32>() else {
            continue;
        };
        let after = &rest[n..];
        let attempt = after
            .strip_prefix('.')
            .map(|a| &a[..digits(a)])
            .filter(|a| !a.is_empty() && a.len() <= 9)
            .and_then(|a| a.parse::<i32>().ok())
            .unwrap_or(0);
        return Some((id, attempt));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_a_line_names() {
        assert_eq!(
            stage_in_text("Lost task 1.0 in stage 3.2 (TID 7)"),
            Some((3, 2))
        );
        assert_eq!(stage_in_text("ResultStage 4 (collect) failed"), None);
        assert_eq!(stage_in_text("stage 12 failed"), Some((12, 0)));
        assert_eq!(stage_in_text("in stage x, then stage 5.1"), Some((5, 1)));
        assert_eq!(stage_in_text("stage 99999999999.0"), None);
        assert_eq!(stage_in_text("stage 1.99999999999"), Some((1, 0)));
        assert_eq!(stage_in_text("stage ünï 2"), None);
    }
}
