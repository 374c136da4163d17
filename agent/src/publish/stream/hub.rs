//! The streams' one builder. Once per interval at most, and only after a change, it walks each
//! changed application once under its lock, copies out what changed for every followed session
//! (one pass over the application's operations, however many sessions are followed), and
//! publishes one [`Piece`] per changed session on that session's feed. Every subscriber that
//! follows the session shares the piece and its JSON, encoded once. Subscribers are woken only
//! by the feeds of the sessions they follow, and nothing they do holds a lock ingest needs.
//!
//! Snapshots are built by the same pass, for the sessions whose subscribers asked for one since
//! the last tick: a snapshot and the deltas of the later ticks then never overlap or leave a gap.

use super::follow::SessionKey;
use crate::model::{lock, views::SessionSlice, AppState, Store};
use crate::publish::proto;
use crate::shutdown::Shutdown;
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// Deltas a session's feed keeps for a subscriber that has not taken them yet; one that falls
/// further behind gets a fresh snapshot instead.
const FEED_DEPTH: usize = 16;

/// What one tick says about one followed session: the entities that changed (all of them, in
/// a snapshot) and the applications they run in. `update`'s generation, snapshot flag and time
/// are left unset: each subscriber's stream sets its own.
#[derive(Debug)]
pub struct Piece {
    /// The tick that built it.
    pub seq: u64,
    pub key: SessionKey,
    pub update: pb::Update,
    json: OnceLock<String>,
}

impl Piece {
    pub fn new(seq: u64, key: SessionKey, update: pb::Update) -> Self {
        Piece {
            seq,
            key,
            update,
            json: OnceLock::new(),
        }
    }

    /// The update's JSON object without its header fields, encoded by the first subscriber that
    /// needs it and shared by the others.
    pub fn json(&self) -> &str {
        self.json
            .get_or_init(|| serde_json::to_string(&self.update).unwrap_or_else(|_| "{}".to_owned()))
    }
}

/// A snapshot of some sessions, as of tick `seq`: the deltas of later ticks follow it.
#[derive(Debug)]
pub struct Snapshot {
    pub seq: u64,
    pub pieces: Vec<Arc<Piece>>,
}

struct SnapshotRequest {
    keys: Vec<SessionKey>,
    reply: oneshot::Sender<Snapshot>,
}

/// Where subscribers find the feeds of the sessions they follow and ask for snapshots.
pub struct Hub {
    feeds: Mutex<Feeds>,
    requests: mpsc::UnboundedSender<SnapshotRequest>,
}

/// Each followed session's feed, and their keys in order (made again only when sessions are
/// followed or left, not on every tick).
#[derive(Default)]
struct Feeds {
    by_key: HashMap<SessionKey, broadcast::Sender<Arc<Piece>>>,
    /// The application a follower named for a session (the kernel reads it from its Connect
    /// server); a session nobody pinned is the application's that reported it first.
    pins: HashMap<SessionKey, String>,
    keys: Arc<Vec<SessionKey>>,
    stale: bool,
}

impl Hub {
    /// The hub, and the receiver its builder ([`run`]) takes requests from.
    pub fn new() -> (Arc<Hub>, HubInbox) {
        let (requests, inbox) = mpsc::unbounded_channel();
        let hub = Hub {
            feeds: Mutex::default(),
            requests,
        };
        (Arc::new(hub), HubInbox(inbox))
    }

    /// The feed of one session's deltas from the next tick on; `app` pins the session to that
    /// application.
    pub fn follow(&self, key: &SessionKey, app: Option<&str>) -> broadcast::Receiver<Arc<Piece>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let feeds = &mut *feeds;
        if let Some(app) = app.filter(|a| !a.is_empty()) {
            feeds.pins.insert(key.clone(), app.to_owned());
        }
        feeds
            .by_key
            .entry(key.clone())
            .or_insert_with(|| {
                feeds.stale = true;
                broadcast::channel(FEED_DEPTH).0
            })
            .subscribe()
    }

    /// Asks for a snapshot of these sessions; it is built by the next tick. The subscriber must
    /// follow their feeds first, so that no tick after the snapshot's is missed.
    pub fn snapshot(&self, keys: Vec<SessionKey>) -> oneshot::Receiver<Snapshot> {
        let (reply, rx) = oneshot::channel();
        // The builder is gone only at shutdown; the subscriber then sees its reply dropped.
        let _ = self.requests.send(SnapshotRequest { keys, reply });
        rx
    }

    /// Sessions someone follows now, in order; feeds nobody listens to any more are dropped.
    fn followed(&self) -> Arc<Vec<SessionKey>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let before = feeds.by_key.len();
        feeds.by_key.retain(|_, f| f.receiver_count() > 0);
        if feeds.pins.len() > feeds.by_key.len() {
            let Feeds { by_key, pins, .. } = &mut *feeds;
            pins.retain(|k, _| by_key.contains_key(k));
        }
        if feeds.stale || feeds.by_key.len() != before {
            let mut keys: Vec<SessionKey> = feeds.by_key.keys().cloned().collect();
            keys.sort_unstable();
            feeds.keys = Arc::new(keys);
            feeds.stale = false;
        }
        feeds.keys.clone()
    }

    /// The application each of `keys` belongs to: the one its follower pinned, else the one
    /// that reported the session first; `None` when no application has a record of it.
    fn owners(&self, keys: &[SessionKey], store: &Store) -> Vec<Option<String>> {
        let pins = {
            let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
            keys.iter()
                .map(|k| feeds.pins.get(k).cloned())
                .collect::<Vec<_>>()
        };
        keys.iter()
            .zip(pins)
            .map(|(k, pin)| pin.or_else(|| store.owner_of(&k.0)))
            .collect()
    }

    fn publish(&self, piece: Arc<Piece>) {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = feeds.by_key.get(&piece.key) {
            let _ = f.send(piece); // nobody listening any more: nothing to do
        }
    }
}

/// The builder's end of the snapshot requests.
pub struct HubInbox(mpsc::UnboundedReceiver<SnapshotRequest>);

/// The builder: ticks after changes (at most once per `interval`; the first change after a
/// quiet spell goes out at once) and when snapshots are asked for.
pub async fn run(
    hub: Arc<Hub>,
    mut inbox: HubInbox,
    store: Arc<Store>,
    interval: Duration,
    ui_template: Option<String>,
    mut shutdown: Shutdown,
) {
    let mut changes = store.changes();
    let mut builder = Builder {
        seq: 0,
        seen: HashMap::new(),
        ui_template,
    };
    let mut requests: Vec<SnapshotRequest> = Vec::new();
    let mut dirty = true;
    let mut last: Option<Instant> = None;
    loop {
        let due = last.map_or_else(Instant::now, |t| t + interval);
        let wants = dirty || !requests.is_empty();
        tokio::select! {
            _ = shutdown.requested() => return,
            // Once dirty, the next tick takes every change up to it: the store's signals in
            // between (one per batch of events) need not wake the builder.
            changed = changes.changed(), if !dirty => {
                if changed.is_err() {
                    return;
                }
                dirty = true;
            }
            req = inbox.0.recv() => match req {
                Some(r) => requests.push(r),
                None => return,
            },
            _ = tokio::time::sleep_until(due), if wants => {
                last = Some(Instant::now());
                dirty = false;
                builder.tick(&hub, &store, std::mem::take(&mut requests));
            }
        }
    }
}

struct Builder {
    seq: u64,
    /// Per application: the generation up to which deltas were published, and the time of the
    /// newest busy-slots sample sent.
    seen: HashMap<String, (u64, i64)>,
    ui_template: Option<String>,
}

/// What one application contributes to one session's piece.
#[derive(Default)]
struct Parts {
    applications: Vec<pb::Application>,
    sessions: Vec<pb::Session>,
    operations: Vec<pb::Operation>,
    jobs: Vec<pb::Job>,
    stages: Vec<pb::Stage>,
    tag_groups: Vec<pb::TagGroup>,
    log_lines: Vec<pb::LogLine>,
    sql_executions: Vec<pb::SqlExecution>,
}

impl Parts {
    fn add_slice(&mut self, app_id: &str, session_id: &str, slice: &SessionSlice<'_>) {
        let id = app_id;
        self.sessions
            .extend(slice.session.map(|s| proto::session(id, s)));
        self.operations
            .extend(slice.operations.iter().map(|o| proto::operation(id, o)));
        self.jobs
            .extend(slice.jobs.iter().map(|j| proto::job(id, j)));
        self.stages
            .extend(slice.stages.iter().map(|s| proto::stage(id, s)));
        self.tag_groups.extend(
            slice
                .tag_groups
                .iter()
                .map(|g| proto::tag_group(id, session_id, g)),
        );
        self.log_lines
            .extend(slice.log_lines.iter().map(|e| proto::log_line(id, e)));
        self.sql_executions.extend(
            slice
                .sql_executions
                .iter()
                .map(|(op, e)| proto::sql_execution(id, op, e, slice.since)),
        );
    }

    fn into_update(self) -> pb::Update {
        pb::Update {
            applications: self.applications,
            sessions: self.sessions,
            operations: self.operations,
            jobs: self.jobs,
            stages: self.stages,
            tag_groups: self.tag_groups,
            log_lines: self.log_lines,
            sql_executions: self.sql_executions,
            ..pb::Update::default()
        }
    }
}

impl Builder {
    fn tick(&mut self, hub: &Hub, store: &Store, requests: Vec<SnapshotRequest>) {
        self.seq += 1;
        let followed = hub.followed();
        let wanted: Vec<SessionKey> = requests
            .iter()
            .flat_map(|r| r.keys.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut deltas: BTreeMap<usize, Parts> = BTreeMap::new();
        let mut snapshots: BTreeMap<usize, Parts> = BTreeMap::new();
        let mut present = Vec::new();
        // Looked up before any application is locked.
        let followed_owners = hub.owners(&followed, store);
        let wanted_owners = hub.owners(&wanted, store);
        for shared in store.apps() {
            let app = lock(&shared);
            let id = app.id().to_owned();
            let (since, samples_after) = self.seen.get(&id).copied().unwrap_or((0, i64::MIN));
            if app.generation() > since && !followed.is_empty() {
                let mine = owned_by(&id, &followed, &followed_owners);
                self.deltas(&app, &followed, &mine, since, samples_after, &mut deltas);
            }
            if !wanted.is_empty() {
                let mine = owned_by(&id, &wanted, &wanted_owners);
                self.snapshots(&app, &wanted, &mine, &mut snapshots);
            }
            let newest_sample = app.samples().next_back().map_or(samples_after, |s| s.at_ms);
            self.seen
                .insert(id.clone(), (app.generation(), newest_sample));
            present.push(id);
        }
        // Applications dropped by retention are forgotten here too.
        if self.seen.len() > present.len() {
            let present: BTreeSet<String> = present.into_iter().collect();
            self.seen.retain(|id, _| present.contains(id));
        }
        for (i, parts) in deltas {
            let piece = Piece::new(self.seq, followed[i].clone(), parts.into_update());
            hub.publish(Arc::new(piece));
        }
        let mut built: HashMap<usize, Arc<Piece>> = snapshots
            .into_iter()
            .map(|(i, parts)| {
                let piece = Piece::new(self.seq, wanted[i].clone(), parts.into_update());
                (i, Arc::new(piece))
            })
            .collect();
        for r in requests {
            let pieces = r
                .keys
                .iter()
                .filter_map(|k| wanted.binary_search(k).ok())
                .map(|i| {
                    built
                        .entry(i)
                        .or_insert_with(|| {
                            Arc::new(Piece::new(
                                self.seq,
                                wanted[i].clone(),
                                pb::Update::default(),
                            ))
                        })
                        .clone()
                })
                .collect();
            let _ = r.reply.send(Snapshot {
                seq: self.seq,
                pieces,
            });
        }
    }

    /// What changed after `since` for each followed session, plus the application record for
    /// every session it knows when the record, its notices or its samples changed.
    fn deltas(
        &self,
        app: &AppState,
        followed: &[SessionKey],
        mine: &[usize],
        since: u64,
        samples_after: i64,
        out: &mut BTreeMap<usize, Parts>,
    ) {
        let record_changed = app.record_updated() > since;
        // Unless the record changed (it goes to every session the application knows), only the
        // followed sessions that changed are sliced: idle ones cost a set lookup.
        let (index, keys): (Vec<usize>, Vec<SessionKey>) = if record_changed {
            mine.iter().map(|&i| (i, followed[i].clone())).unzip()
        } else {
            let changed = app.sessions_changed_since(since);
            mine.iter()
                .filter(|&&i| changed.contains(followed[i].0.as_str()))
                .map(|&i| (i, followed[i].clone()))
                .unzip()
        };
        if keys.is_empty() {
            return;
        }
        let mut record: Option<pb::Application> = None;
        for (j, slice) in app.session_slices(&keys, since).iter().enumerate() {
            if slice.is_empty() && !(record_changed && slice.known) {
                continue;
            }
            let i = index[j];
            let parts = out.entry(i).or_default();
            parts.add_slice(app.id(), &followed[i].0, slice);
            let r = record.get_or_insert_with(|| {
                proto::application(app, samples_after, self.ui_template.as_deref())
            });
            parts.applications.push(r.clone());
        }
    }

    /// Everything of each wanted session this application knows, of those it owns.
    fn snapshots(
        &self,
        app: &AppState,
        wanted: &[SessionKey],
        mine: &[usize],
        out: &mut BTreeMap<usize, Parts>,
    ) {
        let mut record: Option<pb::Application> = None;
        let keys: Vec<SessionKey> = mine.iter().map(|&i| wanted[i].clone()).collect();
        for (j, slice) in app.session_slices(&keys, 0).iter().enumerate() {
            if !slice.known && slice.is_empty() {
                continue;
            }
            let i = mine[j];
            let parts = out.entry(i).or_default();
            parts.add_slice(app.id(), &wanted[i].0, slice);
            let r = record.get_or_insert_with(|| {
                proto::application(app, i64::MIN, self.ui_template.as_deref())
            });
            parts.applications.push(r.clone());
        }
    }
}

/// The indices of the keys application `app` may answer for: those it owns, and those nobody
/// owns (no application has a record of the session, only jobs tagged with it).
fn owned_by(app: &str, keys: &[SessionKey], owners: &[Option<String>]) -> Vec<usize> {
    (0..keys.len())
        .filter(|&i| owners[i].as_deref().is_none_or(|o| o == app))
        .collect()
}

/// One update out of several pieces (a subscriber following more than one session, or one that
/// missed a tick), in the order they were built: an entity in a later piece replaces the same
/// entity from an earlier one, and an application's busy-slots samples from different ticks are
/// joined.
pub fn merge(pieces: &[Arc<Piece>]) -> pb::Update {
    let mut u = pb::Update::default();
    let mut app_seq: HashMap<String, u64> = HashMap::new();
    for p in pieces {
        let n = &p.update;
        for a in &n.applications {
            match u.applications.iter_mut().find(|x| x.id == a.id) {
                None => u.applications.push(a.clone()),
                // The same tick's record of an application is the same in every piece.
                Some(_) if app_seq.get(&a.id) == Some(&p.seq) => {}
                Some(x) => {
                    let earlier = x.task_samples.take();
                    *x = a.clone();
                    x.task_samples = join_samples(earlier, a.task_samples.clone());
                }
            }
            app_seq.insert(a.id.clone(), p.seq);
        }
        upsert(&mut u.sessions, &n.sessions, |s| {
            (s.app_id.clone(), s.session_id.clone())
        });
        upsert(&mut u.operations, &n.operations, |o| {
            (o.app_id.clone(), o.operation_id.clone())
        });
        upsert(&mut u.jobs, &n.jobs, |j| (j.app_id.clone(), j.job_id));
        upsert(&mut u.stages, &n.stages, |s| {
            (s.app_id.clone(), s.stage_id, s.attempt_id)
        });
        upsert(&mut u.tag_groups, &n.tag_groups, |g| {
            (g.app_id.clone(), g.session_id.clone(), g.tag.clone())
        });
        upsert(&mut u.log_lines, &n.log_lines, |l| {
            (l.app_id.clone(), l.seq)
        });
        for x in &n.sql_executions {
            match u
                .sql_executions
                .iter_mut()
                .find(|y| y.app_id == x.app_id && y.execution_id == x.execution_id)
            {
                None => u.sql_executions.push(x.clone()),
                Some(y) => merge_sql(y, x),
            }
        }
    }
    u
}

/// A later delta of an SQL execution over an earlier one: its record replaces the earlier's, a
/// plan it carries replaces the earlier plan, and its metric values join the earlier ones.
fn merge_sql(into: &mut pb::SqlExecution, later: &pb::SqlExecution) {
    let nodes = if later.nodes.is_empty() {
        std::mem::take(&mut into.nodes)
    } else {
        later.nodes.clone()
    };
    let mut values = std::mem::take(&mut into.metric_values);
    for v in &later.metric_values {
        match values
            .iter_mut()
            .find(|w| w.accumulator_id == v.accumulator_id)
        {
            Some(w) => w.value = v.value,
            None => values.push(*v),
        }
    }
    *into = pb::SqlExecution {
        nodes,
        metric_values: values,
        ..later.clone()
    };
}

fn upsert<T: Clone, K: Eq + std::hash::Hash>(
    into: &mut Vec<T>,
    items: &[T],
    key: impl Fn(&T) -> K,
) {
    if items.is_empty() {
        return;
    }
    let mut at: HashMap<K, usize> = into.iter().enumerate().map(|(i, x)| (key(x), i)).collect();
    for item in items {
        match at.get(&key(item)) {
            Some(&i) => into[i] = item.clone(),
            None => {
                at.insert(key(item), into.len());
                into.push(item.clone());
            }
        }
    }
}

/// Samples of an earlier tick followed by a later one's, as one column set.
fn join_samples(a: Option<pb::TaskSamples>, b: Option<pb::TaskSamples>) -> Option<pb::TaskSamples> {
    let (mut a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (a, b) => return a.or(b),
    };
    for (k, off) in b.offset_ms.iter().enumerate() {
        let at = b.start_ms.saturating_add(i64::from(*off));
        a.offset_ms
            .push(u32::try_from(at.saturating_sub(a.start_ms)).unwrap_or(u32::MAX));
        a.active_tasks
            .push(b.active_tasks.get(k).copied().unwrap_or(0));
        a.total_cores
            .push(b.total_cores.get(k).copied().unwrap_or(0));
        a.executors.push(b.executors.get(k).copied().unwrap_or(0));
        a.busy_sessions
            .push(b.busy_sessions.get(k).copied().unwrap_or(0));
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn merged_sql_deltas_keep_the_plan_and_join_the_values() {
        let exec = |nodes: &[&str], values: &[(i64, i64)], end: Option<i64>| pb::SqlExecution {
            app_id: "app".into(),
            execution_id: 3,
            nodes: nodes
                .iter()
                .map(|n| pb::PlanNode {
                    parent: -1,
                    name: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            metric_values: values
                .iter()
                .map(|&(accumulator_id, value)| pb::MetricValue {
                    accumulator_id,
                    value,
                })
                .collect(),
            end_ms: end,
            ..Default::default()
        };
        let piece = |seq, e| {
            Arc::new(Piece::new(
                seq,
                key(),
                pb::Update {
                    sql_executions: vec![e],
                    ..Default::default()
                },
            ))
        };
        let u = merge(&[
            piece(1, exec(&["Scan"], &[(1, 5), (2, 7)], None)),
            piece(2, exec(&[], &[(1, 9)], Some(4))),
        ]);
        let e = &u.sql_executions[0];
        assert_eq!(e.nodes.len(), 1, "the earlier plan stands");
        let values: Vec<(i64, i64)> = e
            .metric_values
            .iter()
            .map(|v| (v.accumulator_id, v.value))
            .collect();
        assert_eq!(values, [(1, 9), (2, 7)]);
        assert_eq!(e.end_ms, Some(4));
        let u = merge(&[
            piece(1, exec(&["Scan"], &[], None)),
            piece(2, exec(&["Join", "Scan"], &[], None)),
        ]);
        assert_eq!(
            u.sql_executions[0].nodes.len(),
            2,
            "a later plan replaces it"
        );
    }

    use super::*;

    fn key() -> SessionKey {
        ("s".to_owned(), "u".to_owned())
    }

    #[test]
    fn merged_pieces_keep_the_newest_of_each_entity_and_every_sample() {
        let app = |offsets: Vec<u32>, start: i64, active: u32| pb::Application {
            id: "app".into(),
            task_samples: Some(pb::TaskSamples {
                start_ms: start,
                active_tasks: offsets.iter().map(|_| active).collect(),
                total_cores: offsets.iter().map(|_| 2).collect(),
                executors: offsets.iter().map(|_| 1).collect(),
                busy_sessions: offsets.iter().map(|_| 1).collect(),
                offset_ms: offsets,
            }),
            ..Default::default()
        };
        let job = |status: i32| pb::Job {
            app_id: "app".into(),
            job_id: 7,
            status,
            ..Default::default()
        };
        let first = pb::Update {
            applications: vec![app(vec![0, 100], 1_000, 1)],
            jobs: vec![job(1)],
            ..Default::default()
        };
        let second = pb::Update {
            applications: vec![app(vec![0], 1_200, 2)],
            jobs: vec![job(2)],
            ..Default::default()
        };
        let merged = merge(&[
            Arc::new(Piece::new(1, key(), first)),
            Arc::new(Piece::new(2, key(), second)),
        ]);
        assert_eq!(merged.jobs.len(), 1);
        assert_eq!(merged.jobs[0].status, 2);
        let s = merged.applications[0]
            .task_samples
            .as_ref()
            .expect("samples");
        assert_eq!(s.offset_ms, [0, 100, 200]);
        assert_eq!(s.active_tasks, [1, 1, 2]);
    }
}
