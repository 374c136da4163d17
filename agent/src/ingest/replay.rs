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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::jobs::JobStatus;
    use std::io::Write;

    const START: &str = r#"{"Event":"SparkListenerJobStart","Job ID":1,"Submission Time":5,"Stage Infos":[{"Stage ID":1,"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":20000}],"Stage IDs":[1],"Properties":{}}"#;
    const SUBMIT: &str = r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":1,"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":20000,"Submission Time":5},"Properties":{}}"#;
    const DONE: &str = r#"{"Event":"SparkListenerStageCompleted","Stage Info":{"Stage ID":1,"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":20000,"Submission Time":5,"Completion Time":9}}"#;
    const END: &str = r#"{"Event":"SparkListenerJobEnd","Job ID":1,"Completion Time":9,"Job Result":{"Result":"JobSucceeded"}}"#;

    fn task_end(i: u32) -> String {
        format!(
            r#"{{"Event":"SparkListenerTaskEnd","Stage ID":1,"Stage Attempt ID":0,"Task Type":"ResultTask","Task End Reason":{{"Reason":"Success"}},"Task Info":{{"Task ID":{i},"Index":{i},"Attempt":0,"Launch Time":6,"Executor ID":"1","Host":"h","Finish Time":8,"Failed":false,"Killed":false}},"Task Metrics":{{"Executor Run Time":2}}}}"#
        )
    }

    /// A rolling log whose parts depend on each other's order: the job starts in the first,
    /// its tasks end in the second (plain, 2.6 MB), the job ends in the third.
    fn rolling_log(dir: &Path) -> std::path::PathBuf {
        let log = dir.join("eventlog_v2_local-1");
        std::fs::create_dir(&log).expect("mkdir");
        let zstd = |name: &str, lines: &[&str]| {
            let f = std::fs::File::create(log.join(name)).expect("create");
            let mut enc = zstd::stream::write::Encoder::new(f, 3).expect("encoder");
            for l in lines {
                writeln!(enc, "{l}").expect("write");
            }
            enc.finish().expect("finish");
        };
        zstd("events_1_local-1.zstd", &[START, SUBMIT]);
        let middle: String = (0..20_000).map(|i| task_end(i) + "\n").collect();
        std::fs::write(log.join("events_2_local-1"), middle).expect("write");
        zstd("events_3_local-1.zstd", &[DONE, END]);
        log
    }

    #[test]
    fn the_parts_of_a_rolling_log_are_applied_in_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = rolling_log(dir.path());
        let (apps, stats) = replay(&log, &Retention::default()).expect("replay");
        assert_eq!(stats.lines, 20_004);
        assert_eq!(stats.parse_errors, 0);
        let job = apps[0].job(1).expect("job 1");
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.completed_tasks, 20_000);
    }

    #[test]
    fn a_part_that_cannot_be_read_is_an_error_not_a_short_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = rolling_log(dir.path());
        std::fs::write(log.join("events_4_local-1.lz4"), b"x").expect("write");
        match replay(&log, &Retention::default()) {
            Err(err) => assert!(err.to_string().contains("lz4"), "{err}"),
            Ok(_) => panic!("lz4 is not supported: the replay must fail"),
        }
    }
}
