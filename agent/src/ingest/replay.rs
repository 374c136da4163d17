//! `sparkscope replay`: the same parser and model as the live agent, fed from event-log files.
//!
//! A log is read in parallel and applied in order: worker threads (one per core) each take the
//! next file of the log (a rolling log has one per 128 MB of events), decompress it in blocks of
//! whole lines and parse each block, while the calling thread applies the parsed blocks to the
//! model file by file, in the log's order. What the workers may read ahead is bounded
//! (`ReadConfig::read_ahead`, `--read-ahead-mb`).

use super::eventlog::{self, EventLog, LogError};
use super::{apply_parsed, parse_line, ParseError};
use crate::model::event::Event;
use crate::model::{AppState, Retention};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// Bytes of whole lines in a block.
const BLOCK: usize = 256 << 10;

/// Totals over everything replayed.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub lines: u64,
    pub parse_errors: u64,
    pub unknown_events: u64,
}

/// How a replay reads.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReadConfig {
    /// Threads decompressing files (at most one per file).
    #[arg(skip = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    pub workers: usize,
    /// Megabytes of the log that may be read ahead of the model: the files of a rolling log are
    /// decompressed and parsed in parallel (one thread per core), applied in order. Parsed, they
    /// take about a tenth of that in memory.
    #[arg(
        id = "read_ahead_mb",
        long = "read-ahead-mb",
        value_name = "MB",
        value_parser = megabytes,
        default_value = "256",
        env = "SPARKSCOPE_REPLAY_READ_AHEAD_MB"
    )]
    pub read_ahead: usize,
}

crate::flags::default_from_flags!(ReadConfig);

/// Megabytes, as bytes.
fn megabytes(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map(|mb| mb.saturating_mul(1 << 20))
        .map_err(|e| format!("{e} (a whole number of megabytes)"))
}

/// Replays every event log found at `path` (a file, a rolling log directory, or a directory of
/// logs) into one application state each.
pub fn replay(
    path: &Path,
    retention: &Retention,
) -> Result<(Vec<AppState>, ReplayStats), LogError> {
    replay_with(path, retention, ReadConfig::default())
}

/// As [`replay`], reading as `read` says.
pub fn replay_with(
    path: &Path,
    retention: &Retention,
    read: ReadConfig,
) -> Result<(Vec<AppState>, ReplayStats), LogError> {
    let mut apps = Vec::new();
    let mut stats = ReplayStats::default();
    for log in eventlog::discover(path)? {
        let mut app = AppState::new("", retention.clone());
        replay_log(&log, &mut app, read)?;
        let s = app.stats();
        stats.lines += s.lines;
        stats.parse_errors += s.parse_errors;
        stats.unknown_events += s.unknown_events;
        apps.push(app);
    }
    Ok((apps, stats))
}

/// One block of a file, parsed line by line.
type Block = Result<Vec<Result<Event, ParseError>>, LogError>;

fn parse_block(block: &[u8]) -> Vec<Result<Event, ParseError>> {
    let mut out = Vec::with_capacity(block.len() / 512);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', block).chain(std::iter::once(block.len()));
    for end in ends {
        let line = block[start..end].trim_ascii();
        start = end + 1;
        if !line.is_empty() {
            out.push(parse_line(line));
        }
    }
    out
}

fn replay_log(log: &EventLog, app: &mut AppState, read: ReadConfig) -> Result<(), LogError> {
    let files = log.files.len();
    let workers = read.workers.clamp(1, files.max(1));
    // Each file's channel holds its share of the read-ahead.
    let depth = (read.read_ahead / BLOCK / workers).max(2);
    let (senders, receivers): (Vec<SyncSender<Block>>, Vec<Receiver<Block>>) =
        (0..files).map(|_| sync_channel::<Block>(depth)).unzip();
    let senders: Mutex<Vec<Option<SyncSender<Block>>>> =
        Mutex::new(senders.into_iter().map(Some).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for w in 0..workers {
            let (senders, next) = (&senders, &next);
            let spawned = std::thread::Builder::new()
                .name(format!("replay-read-{w}"))
                .spawn_scoped(s, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(tx) = senders
                        .lock()
                        .ok()
                        .and_then(|mut v| v.get_mut(i).and_then(Option::take))
                    else {
                        return;
                    };
                    let read = eventlog::for_each_block(&log.files[i], BLOCK, |b| {
                        tx.send(Ok(parse_block(&b))).is_ok() // the model gave up: stop
                    });
                    if let Err(e) = read {
                        let _ = tx.send(Err(e));
                    }
                });
            if let Err(source) = spawned {
                return Err(LogError::Io {
                    path: log.files.first().cloned().unwrap_or_default(),
                    source,
                });
            }
        }
        // In the log's order: a file's blocks as they come, then the next file's.
        for rx in receivers {
            for block in rx {
                for parsed in block? {
                    apply_parsed(app, parsed);
                }
            }
        }
        Ok(())
    })
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
        assert!(middle.len() > 4 * BLOCK, "the middle part spans blocks");
        std::fs::write(log.join("events_2_local-1"), middle).expect("write");
        zstd("events_3_local-1.zstd", &[DONE, END]);
        log
    }

    #[test]
    fn the_parts_of_a_rolling_log_are_applied_in_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = rolling_log(dir.path());
        // One worker, one per file, and the default; read-ahead at its least (2 blocks a file).
        for read in [
            ReadConfig {
                workers: 1,
                read_ahead: 0,
            },
            ReadConfig {
                workers: 3,
                read_ahead: 0,
            },
            ReadConfig::default(),
        ] {
            let (apps, stats) = replay_with(&log, &Retention::default(), read).expect("replay");
            assert_eq!(stats.lines, 20_004, "{read:?}");
            assert_eq!(stats.parse_errors, 0, "{read:?}");
            let job = apps[0].job(1).expect("job 1");
            assert_eq!(job.status, JobStatus::Succeeded, "{read:?}");
            assert_eq!(job.completed_tasks, 20_000, "{read:?}");
        }
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
