//! The run history: each notebook cell's last finished run, as the fingerprint its kernel
//! computed when the cell ended, so that a rerun can say how it differs ("3.1× slower: input
//! +40%, BroadcastHashJoin became SortMergeJoin"). Kept per user, notebook and cell; the oldest
//! goes at the bound. Written to a file of its own, one fingerprint (proto3 JSON) per line, a
//! moment after it changes and at shutdown, and read at start: a comparison survives an agent
//! restart. A line of that file that is not a fingerprint is counted and skipped.

use crate::model::truncate_utf8;
use crate::telemetry::{self, Limit};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cells::MAX_TEXT;

/// Stages a fingerprint keeps (the first by id), and joins.
pub const MAX_STAGES: usize = 64;
pub const MAX_JOINS: usize = 64;
/// Longest stage or operator name kept.
const MAX_NAME: usize = 200;
/// A line of the file longer than this is not one of ours.
const MAX_LINE: usize = 64 * 1024;

/// (user, notebook, cell id)
type Key = (String, String, String);

pub struct RunHistory {
    max: usize,
    path: Option<PathBuf>,
    inner: Mutex<History>,
}

#[derive(Default)]
struct History {
    /// Each cell's fingerprint and the order it came in.
    by_key: HashMap<Key, (u64, pb::RunFingerprint)>,
    order: BTreeMap<u64, Key>,
    next: u64,
    /// Changed since the file was written.
    dirty: bool,
}

impl History {
    fn put(&mut self, key: Key, fp: pb::RunFingerprint, max: usize) -> Option<pb::RunFingerprint> {
        let seq = self.next;
        self.next += 1;
        let previous = self
            .by_key
            .insert(key.clone(), (seq, fp))
            .map(|(old, prev)| {
                self.order.remove(&old);
                prev
            });
        self.order.insert(seq, key);
        self.dirty = true;
        let mut evicted = 0;
        while self.by_key.len() > max {
            match self.order.pop_first() {
                Some((_, old)) => {
                    self.by_key.remove(&old);
                    evicted += 1;
                }
                None => break,
            }
        }
        telemetry::limit_hit(Limit::RunFingerprints, evicted);
        previous
    }
}

/// Why a fingerprint was not kept.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    BadRequest(&'static str),
}

impl RunHistory {
    /// An empty history; `path` is where it is kept across restarts (None: in memory only).
    pub fn new(max: usize, path: Option<PathBuf>) -> Self {
        RunHistory {
            max,
            path,
            inner: Mutex::new(History::default()),
        }
    }

    /// The history kept in `path`, oldest line first; a missing file is an empty history.
    pub fn load(max: usize, path: Option<PathBuf>) -> Self {
        let history = RunHistory::new(max, path);
        let Some(path) = history.path.clone() else {
            return history;
        };
        if max == 0 {
            return history;
        }
        match std::fs::File::open(&path) {
            Ok(f) => {
                let (kept, skipped) = history.read_lines(std::io::BufReader::new(f));
                telemetry::run_history_error("malformed_line", skipped);
                if skipped > 0 {
                    tracing::warn!(
                        path = %path.display(),
                        skipped,
                        "lines of the run history that are not fingerprints were skipped"
                    );
                }
                tracing::info!(path = %path.display(), kept, "run history read");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                telemetry::run_history_error("read", 1);
                tracing::warn!(path = %path.display(), error = %e, "the run history cannot be read; starting empty");
            }
        }
        let mut h = history.lock();
        h.dirty = false;
        drop(h);
        history
    }

    /// Reads fingerprints, one per line; returns (kept: the cells held after reading, skipped).
    fn read_lines(&self, reader: impl BufRead) -> (usize, u64) {
        let mut skipped = 0;
        let mut h = self.lock();
        for line in reader.split(b'\n') {
            let Ok(line) = line else {
                skipped += 1;
                break;
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let fp = (line.len() <= MAX_LINE)
                .then(|| serde_json::from_slice::<pb::RunFingerprint>(&line).ok())
                .flatten()
                .and_then(|fp| sanitized(fp).ok());
            match fp {
                Some(fp) => {
                    h.put(key_of(&fp), fp, self.max);
                }
                None => skipped += 1,
            }
        }
        (h.by_key.len(), skipped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a finished run's fingerprint (the caller checked the subscriber may act for its
    /// user) and returns the one of the cell's previous run.
    pub fn remember(&self, fp: pb::RunFingerprint) -> Result<Option<pb::RunFingerprint>, Refused> {
        let fp = sanitized(fp)?;
        if self.max == 0 {
            telemetry::limit_hit(Limit::RunFingerprints, 1);
            return Ok(None);
        }
        let key = key_of(&fp);
        Ok(self.lock().put(key, fp, self.max))
    }

    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the history to its file if it changed since the last write: to a new file beside
    /// it, then renamed over it, readable by its owner only.
    pub fn save(&self) {
        let Some(path) = self.path.as_deref() else {
            return;
        };
        let lines = {
            let mut h = self.lock();
            if !h.dirty {
                return;
            }
            h.dirty = false;
            h.order
                .values()
                .filter_map(|k| h.by_key.get(k))
                .filter_map(|(_, fp)| serde_json::to_string(fp).ok())
                .collect::<Vec<_>>()
        };
        if let Err(e) = write_atomically(path, &lines) {
            self.lock().dirty = true;
            telemetry::run_history_error("write", 1);
            tracing::warn!(path = %path.display(), error = %e, "the run history cannot be written");
        }
    }

    /// Writes the history every `every` until shutdown, then once more.
    pub async fn run(
        self: std::sync::Arc<Self>,
        every: std::time::Duration,
        mut shutdown: crate::shutdown::Shutdown,
    ) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.requested() => break,
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.save()).await;
                }
            }
        }
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.save()).await;
    }
}

fn key_of(fp: &pb::RunFingerprint) -> Key {
    (fp.user_id.clone(), fp.notebook.clone(), fp.cell_id.clone())
}

/// The fingerprint as kept: strings cut, lists bounded, no request id and no nested previous.
fn sanitized(mut fp: pb::RunFingerprint) -> Result<pb::RunFingerprint, Refused> {
    if fp.notebook.is_empty() || fp.cell_id.is_empty() {
        return Err(Refused::BadRequest(
            "a fingerprint needs the notebook and the cell id",
        ));
    }
    fp.request_id.clear();
    for s in [
        &mut fp.session_id,
        &mut fp.user_id,
        &mut fp.notebook,
        &mut fp.cell_id,
        &mut fp.tag,
        &mut fp.plan_shape,
        &mut fp.state,
    ] {
        truncate_utf8(s, MAX_TEXT);
    }
    fp.joins.truncate(MAX_JOINS);
    for j in &mut fp.joins {
        truncate_utf8(j, MAX_NAME);
    }
    fp.stages.sort_by_key(|s| s.stage_id);
    fp.stages.truncate(MAX_STAGES);
    for s in &mut fp.stages {
        truncate_utf8(&mut s.name, MAX_NAME);
    }
    Ok(fp)
}

fn write_atomically(path: &Path, lines: &[String]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = std::io::BufWriter::new(options.open(&tmp)?);
    for line in lines {
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(user: &str, cell: &str, input: i64) -> pb::RunFingerprint {
        pb::RunFingerprint {
            session_id: "s".into(),
            user_id: user.into(),
            request_id: "r".into(),
            notebook: "work/a.ipynb".into(),
            cell_id: cell.into(),
            tag: format!("t-{input}"),
            input_bytes: input,
            joins: vec!["SortMergeJoin".into()],
            stages: vec![pb::StageFingerprint {
                stage_id: 3,
                name: "count at <stdin>:1".into(),
                duration_ms: 1200,
                tasks: 4,
                input_bytes: input,
                skewed: false,
            }],
            state: "succeeded".into(),
            ..Default::default()
        }
    }

    fn keep(h: &RunHistory, fp: pb::RunFingerprint) -> Option<pb::RunFingerprint> {
        h.remember(fp).expect("a fingerprint with its cell")
    }

    #[test]
    fn a_rerun_gets_the_previous_run_of_its_own_cell_only() {
        let h = RunHistory::new(10, None);
        assert_eq!(keep(&h, fp("ann", "c1", 100)), None);
        assert_eq!(keep(&h, fp("bob", "c1", 7)), None, "another user's cell");
        assert_eq!(keep(&h, fp("ann", "c2", 5)), None, "another cell");
        let prev = keep(&h, fp("ann", "c1", 400)).expect("previous");
        assert_eq!(prev.input_bytes, 100);
        assert_eq!(prev.request_id, "", "the request id is not kept");
        let prev = keep(&h, fp("ann", "c1", 800)).expect("previous");
        assert_eq!(prev.input_bytes, 400);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn bounded_the_oldest_goes_and_a_rerun_counts_as_new() {
        let h = RunHistory::new(2, None);
        keep(&h, fp("ann", "c1", 1));
        keep(&h, fp("ann", "c2", 2));
        keep(&h, fp("ann", "c1", 3)); // c1 is now the newest
        keep(&h, fp("ann", "c3", 4)); // c2 goes
        assert_eq!(h.len(), 2);
        assert_eq!(keep(&h, fp("ann", "c2", 5)), None);
        assert_eq!(
            keep(&h, fp("ann", "c3", 6))
                .expect("a previous run")
                .input_bytes,
            4
        );
        let none = RunHistory::new(0, None);
        assert_eq!(keep(&none, fp("ann", "c1", 1)), None);
        assert_eq!(keep(&none, fp("ann", "c1", 2)), None, "nothing kept");
    }

    #[test]
    fn a_fingerprint_without_its_cell_is_refused_and_big_ones_are_cut() {
        let h = RunHistory::new(10, None);
        assert!(h.remember(fp("ann", "", 1)).is_err());
        let mut big = fp("ann", "c1", 1);
        big.notebook = "n".repeat(5000);
        big.joins = vec!["SortMergeJoin".into(); 1000];
        big.stages = (0..500)
            .rev()
            .map(|i| pb::StageFingerprint {
                stage_id: i,
                name: "x".repeat(1000),
                ..Default::default()
            })
            .collect();
        keep(&h, big.clone());
        let kept = keep(&h, big).expect("a previous run");
        assert!(
            kept.notebook.len() <= MAX_TEXT + 3,
            "cut, with its ellipsis"
        );
        assert_eq!(kept.joins.len(), MAX_JOINS);
        assert_eq!(kept.stages.len(), MAX_STAGES);
        assert_eq!(kept.stages[0].stage_id, 0, "the first stages by id");
        assert!(kept.stages[0].name.len() <= MAX_NAME + 3);
    }

    #[test]
    fn kept_across_a_restart_and_a_damaged_line_loses_nothing_else() {
        let dir = std::env::temp_dir().join(format!("sparkscope-runs-{}", std::process::id()));
        let path = dir.join("nested").join("run-history.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let h = RunHistory::load(10, Some(path.clone()));
        assert!(h.is_empty(), "no file yet: empty");
        keep(&h, fp("ann", "c1", 100));
        keep(&h, fp("ann", "c2", 200));
        h.save();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("written")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "notebook paths are the owner's to read"
            );
        }
        // damage: a line that is not JSON, one that is JSON but no cell, one far too long
        let mut text = std::fs::read_to_string(&path).expect("written");
        text.insert_str(0, "not json\n{\"notebook\":\"x\"}\n");
        text.push_str(&"y".repeat(MAX_LINE + 1));
        text.push('\n');
        std::fs::write(&path, text).expect("damaged");
        let again = RunHistory::load(10, Some(path.clone()));
        assert_eq!(again.len(), 2);
        let prev = keep(&again, fp("ann", "c1", 400)).expect("a previous run");
        assert_eq!(prev.input_bytes, 100);
        assert_eq!(prev.stages[0].name, "count at <stdin>:1");
        // a smaller bound at start keeps the newest
        again.save();
        let small = RunHistory::load(1, Some(path.clone()));
        assert_eq!(small.len(), 1);
        assert_eq!(
            keep(&small, fp("ann", "c1", 1))
                .expect("a previous run")
                .input_bytes,
            400
        );
        // a file that cannot be read (a directory) starts empty
        let odd = RunHistory::load(10, Some(dir.clone()));
        assert!(odd.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
