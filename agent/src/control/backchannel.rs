//! Commands for a listener, written on its connection: the one way the agent reaches into the
//! Spark driver (`SparkContext.cancelJob`, `cancelJobsWithTag`). A command is done when the listener says so.
//! See docs/wire-protocol.md.

use super::CancelOutcome;
use crate::ingest::connections::Listeners;
use std::time::Duration;

/// How long a listener gets to carry out a command and answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the listener of `app_id` to cancel one job and waits for its answer.
pub async fn cancel_job(
    listeners: &Listeners,
    app_id: &str,
    job_id: i32,
    reason: &str,
) -> Result<(), (CancelOutcome, String)> {
    let cmd = serde_json::json!({"cmd": "cancelJob", "jobId": job_id, "reason": reason});
    run(listeners, app_id, cmd).await
}

/// Asks the listener of `app_id` to cancel every job with a job tag (a classic session's cell
/// run, `SparkContext.cancelJobsWithTag`) and waits for its answer.
pub async fn cancel_tag(
    listeners: &Listeners,
    app_id: &str,
    tag: &str,
    reason: &str,
) -> Result<(), (CancelOutcome, String)> {
    let cmd = serde_json::json!({"cmd": "cancelJobsWithTag", "tag": tag, "reason": reason});
    run(listeners, app_id, cmd).await
}

async fn run(
    listeners: &Listeners,
    app_id: &str,
    cmd: serde_json::Value,
) -> Result<(), (CancelOutcome, String)> {
    let answer = listeners
        .command(app_id, cmd)
        .map_err(|e| (CancelOutcome::Unavailable, e.to_string()))?;
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(r)) if r.ok => Ok(()),
        // The listener checks the job with Spark's status tracker first.
        Ok(Ok(r)) if r.error.contains("not running") || r.error.contains("does not know") => {
            Err((CancelOutcome::Finished, r.error))
        }
        Ok(Ok(r)) => Err((CancelOutcome::Refused, r.error)),
        Ok(Err(_)) => Err((
            CancelOutcome::Unavailable,
            "the listener went away before answering".to_owned(),
        )),
        Err(_) => Err((
            CancelOutcome::Unavailable,
            format!(
                "the listener did not answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            ),
        )),
    }
}
