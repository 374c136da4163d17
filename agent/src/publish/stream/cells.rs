//! A user's work across all its notebooks: which cell each client tag belongs to (the kernels
//! say, with a `CellLabel`), and, on request, every running cell run of the user's sessions and
//! the newest finished ones (`MyWork`), for JupyterLab's sidebar and status bar.

use super::identity::Principal;
use crate::model::connect::OpState;
use crate::model::jobs::{Job, JobStatus};
use crate::model::truncate_utf8;
use crate::model::views::SessionKey;
use crate::model::{lock, AppState, Store};
use crate::publish::proto;
use crate::telemetry::{self, Limit};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

/// Longest string a label keeps (notebook path, cell id, tag), and the longest error a run shows.
pub const MAX_TEXT: usize = 1024;
/// Finished runs listed when a request names no number, and at most.
const DEFAULT_FINISHED: usize = 20;
const MAX_FINISHED: usize = 100;
/// The tag prefix of the kernel extension's per-run tags (kernel-comm's `cellrun.py`).
pub const CELL_TAG_PREFIX: &str = "sparkscope-cell-";

/// (application, session, user, tag)
type LabelKey = (String, String, String, String);

/// Which cell each client tag belongs to, as the kernels said; the oldest goes at the bound.
pub struct CellLabels {
    max: usize,
    inner: Mutex<Labels>,
}

#[derive(Default)]
struct Labels {
    by_key: HashMap<LabelKey, pb::CellLabel>,
    order: VecDeque<LabelKey>,
}

impl CellLabels {
    pub fn new(max: usize) -> Self {
        CellLabels {
            max,
            inner: Mutex::new(Labels::default()),
        }
    }

    /// Keeps a label (the caller checked the subscriber may follow its session). A label for a
    /// tag already labelled replaces it.
    pub fn put(&self, mut label: pb::CellLabel) {
        if self.max == 0 {
            telemetry::limit_hit(Limit::CellLabels, 1);
            return;
        }
        for s in [
            &mut label.app_id,
            &mut label.session_id,
            &mut label.user_id,
            &mut label.tag,
            &mut label.notebook,
            &mut label.cell_id,
        ] {
            truncate_utf8(s, MAX_TEXT);
        }
        let key = (
            label.app_id.clone(),
            label.session_id.clone(),
            label.user_id.clone(),
            label.tag.clone(),
        );
        let mut l = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if l.by_key.insert(key.clone(), label).is_none() {
            l.order.push_back(key);
        }
        let mut evicted = 0;
        while l.by_key.len() > self.max {
            match l.order.pop_front() {
                Some(old) => {
                    l.by_key.remove(&old);
                    evicted += 1;
                }
                None => break,
            }
        }
        drop(l);
        telemetry::limit_hit(Limit::CellLabels, evicted);
    }

    /// The label of a tag in a session; a label that named no application holds for any.
    fn get(&self, app_id: &str, key: &SessionKey, tag: &str) -> Option<pb::CellLabel> {
        let l = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let find = |app: &str| {
            l.by_key
                .get(&(app.to_owned(), key.0.clone(), key.1.clone(), tag.to_owned()))
                .cloned()
        };
        find(app_id).or_else(|| find(""))
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The subscriber's work: running runs first (oldest first), then the newest finished ones.
pub fn my_work(
    store: &Store,
    labels: &CellLabels,
    principal: &Principal,
    req: &pb::MyWorkRequest,
    ui_template: Option<&str>,
) -> pb::MyWork {
    let max_finished = match usize::try_from(req.max_finished) {
        Ok(0) | Err(_) => DEFAULT_FINISHED,
        Ok(n) => n.min(MAX_FINISHED),
    };
    let mut applications = Vec::new();
    let mut running = Vec::new();
    let mut finished = Vec::new();
    for shared in store.apps() {
        let app = lock(&shared);
        let keys: Vec<SessionKey> = app
            .sessions()
            .filter(|s| principal.may_follow(&s.user_id))
            .map(|s| (s.session_id.clone(), s.user_id.clone()))
            .chain(
                app.operations()
                    .filter(|o| principal.may_follow(&o.user_id))
                    .map(|o| (o.session_id.clone(), o.user_id.clone())),
            )
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if keys.is_empty() {
            continue;
        }
        applications.push(proto::application(&app, i64::MAX, ui_template));
        for run in runs_of(&app, &keys, labels) {
            if run.state == "running" {
                running.push(run);
            } else {
                finished.push(run);
            }
        }
    }
    running.sort_by_key(|r| r.start_time_ms);
    finished.sort_by_key(|r| std::cmp::Reverse(r.end_time_ms.unwrap_or(r.start_time_ms)));
    let more = finished.len().saturating_sub(max_finished);
    finished.truncate(max_finished);
    running.extend(finished);
    pb::MyWork {
        request_id: req.request_id.clone(),
        applications,
        runs: running,
        more_finished: i32::try_from(more).unwrap_or(i32::MAX),
    }
}

/// The runs of these sessions of one application: one per notebook tag (or labelled tag), one
/// per operation that carries neither.
fn runs_of(app: &AppState, keys: &[SessionKey], labels: &CellLabels) -> Vec<pb::CellRun> {
    // (session key, tag) → operation ids; tag "" stands for an untagged operation, by its id
    let mut groups: BTreeMap<(SessionKey, String, String), Vec<&str>> = BTreeMap::new();
    for op in app.operations() {
        let key = (op.session_id.clone(), op.user_id.clone());
        if keys.binary_search(&key).is_err() {
            continue;
        }
        let cell_tags: Vec<&String> = op
            .tags
            .iter()
            .filter(|t| t.starts_with(CELL_TAG_PREFIX) || labels.get(app.id(), &key, t).is_some())
            .collect();
        if cell_tags.is_empty() {
            groups
                .entry((key, String::new(), op.operation_id.clone()))
                .or_default()
                .push(&op.operation_id);
        } else {
            for t in cell_tags {
                groups
                    .entry((key.clone(), t.clone(), String::new()))
                    .or_default()
                    .push(&op.operation_id);
            }
        }
    }
    groups
        .into_iter()
        .map(|((key, tag, _), ops)| run(app, &key, tag, &ops, labels))
        .collect()
}

fn run(
    app: &AppState,
    key: &SessionKey,
    tag: String,
    op_ids: &[&str],
    labels: &CellLabels,
) -> pb::CellRun {
    let mut r = pb::CellRun {
        app_id: app.id().to_owned(),
        session_id: key.0.clone(),
        user_id: key.1.clone(),
        start_time_ms: i64::MAX,
        ..Default::default()
    };
    if let Some(l) = (!tag.is_empty())
        .then(|| labels.get(app.id(), key, &tag))
        .flatten()
    {
        r.notebook = l.notebook;
        r.cell_id = l.cell_id;
        r.execution_count = l.execution_count;
    }
    r.tag = tag;
    let (mut any_running, mut failed, mut cancelled, mut unknown) = (false, false, false, false);
    let mut end: Option<i64> = None;
    let mut jobs: Vec<&Job> = Vec::new();
    for id in op_ids {
        let Some(op) = app.operation(id) else {
            continue;
        };
        r.operation_ids.push(op.operation_id.clone());
        r.start_time_ms = r.start_time_ms.min(op.start_time);
        match op.final_state.unwrap_or(op.state) {
            OpState::Started | OpState::Analyzed | OpState::Ready => any_running = true,
            OpState::Failed => failed = true,
            OpState::Canceled => cancelled = true,
            OpState::Finished => {}
            // closed before it was seen to end: over, outcome from its jobs
            OpState::Closed => {}
        }
        if let Some(t) = op.end_time.or(op.close_time) {
            end = Some(end.map_or(t, |e| e.max(t)));
        }
        if r.error.is_none() {
            r.error.clone_from(&op.error);
        }
        jobs.extend(op.job_ids.iter().filter_map(|j| app.job(*j)));
    }
    jobs.sort_by_key(|j| j.job_id);
    jobs.dedup_by_key(|j| j.job_id);
    for j in &jobs {
        r.jobs += 1;
        match j.status {
            JobStatus::Running => {
                r.jobs_running += 1;
                any_running = true;
            }
            JobStatus::Failed => {
                r.jobs_failed += 1;
                failed = true;
            }
            JobStatus::Succeeded => {}
            JobStatus::Unknown => unknown = true,
        }
        r.tasks_total = r.tasks_total.saturating_add(j.num_tasks);
        r.tasks_completed = r.tasks_completed.saturating_add(j.completed_tasks);
        r.tasks_active = r.tasks_active.saturating_add(j.active_tasks);
        r.tasks_failed = r.tasks_failed.saturating_add(j.failed_tasks);
        if let Some(t) = j.completion_time {
            end = Some(end.map_or(t, |e| e.max(t)));
        }
        if let Some(t) = j.submission_time {
            r.start_time_ms = r.start_time_ms.min(t);
        }
        if r.error.is_none() {
            r.error.clone_from(&j.error);
        }
    }
    if r.start_time_ms == i64::MAX {
        r.start_time_ms = 0;
    }
    r.state = if any_running {
        "running"
    } else if cancelled {
        "cancelled"
    } else if failed {
        "failed"
    } else if unknown {
        "unknown"
    } else {
        "succeeded"
    }
    .to_owned();
    if !any_running {
        r.end_time_ms = end;
    }
    if let Some(e) = r.error.as_mut() {
        truncate_utf8(e, MAX_TEXT);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(tag: &str, notebook: &str) -> pb::CellLabel {
        pb::CellLabel {
            session_id: "s".into(),
            user_id: "u".into(),
            tag: tag.into(),
            notebook: notebook.into(),
            ..Default::default()
        }
    }

    #[test]
    fn labels_are_bounded_and_cut() {
        let labels = CellLabels::new(2);
        let key = ("s".to_owned(), "u".to_owned());
        labels.put(label("a", "one.ipynb"));
        labels.put(label("b", &"x".repeat(5000)));
        labels.put(label("a", "again.ipynb")); // replaces, keeps its place
        assert_eq!(labels.len(), 2);
        labels.put(label("c", "three.ipynb"));
        assert_eq!(labels.len(), 2);
        assert!(labels.get("", &key, "a").is_none(), "the oldest went");
        let cut = labels.get("any-app", &key, "b").expect("b").notebook;
        assert_eq!(cut.len(), MAX_TEXT + '…'.len_utf8());
        assert_eq!(
            labels.get("", &key, "c").expect("c").notebook,
            "three.ipynb"
        );
        let none = CellLabels::new(0);
        none.put(label("a", "x"));
        assert!(none.is_empty());
    }
}
