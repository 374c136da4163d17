//! Commands for a listener, written on its connection: the one way the agent reaches into the
//! Spark driver (`SparkContext.cancelJob`). See docs/wire-protocol.md.

use crate::ingest::connections::{CommandError, Listeners};

/// Asks the listener of `app_id` to cancel one job; `Ok` once the command is queued on its
/// connection.
pub fn cancel_job(
    listeners: &Listeners,
    app_id: &str,
    job_id: i32,
    reason: &str,
) -> Result<(), CommandError> {
    let line = serde_json::json!({"cmd": "cancelJob", "jobId": job_id, "reason": reason});
    listeners.send(app_id, line.to_string())
}
