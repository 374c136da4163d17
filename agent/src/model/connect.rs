//! Spark Connect sessions and operations, and the attribution of every job to the operation,
//! session, user and client tags that ran it, by identity: the job tags Spark stamps on it.
//! The operation's own event is the authority; parsing the tags is the fallback when that event
//! was not seen.

use super::event::{OpTransition, OperationStarted, SqlExecutionStart};
use super::retention::{Evictions, LiveBound, Retention};
use super::tags::{is_operation_tag, parse_operation_tag, parse_session_tag};
use std::collections::{HashMap, HashSet, VecDeque};

/// Statement texts are cut to this many bytes: enough to recognise a query, bounded in memory.
const MAX_STATEMENT_BYTES: usize = 4096;
/// Closed operations waiting for the exporter, at most this many (the oldest go first).
const MAX_CLOSED_BACKLOG: usize = 10_000;

/// Which Connect operation ran a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRef {
    pub user_id: String,
    pub session_id: String,
    pub operation_id: String,
    /// Raw client tags (`SparkSession.addTag`), sorted.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    Started,
    Analyzed,
    Ready,
    Finished,
    Failed,
    Canceled,
    Closed,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Started => "STARTED",
            OpState::Analyzed => "ANALYZED",
            OpState::Ready => "READY",
            OpState::Finished => "FINISHED",
            OpState::Failed => "FAILED",
            OpState::Canceled => "CANCELED",
            OpState::Closed => "CLOSED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OpState::Finished | OpState::Failed | OpState::Canceled | OpState::Closed
        )
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub operation_id: String,
    pub job_tag: String,
    pub session_id: String,
    pub user_id: String,
    pub tags: Vec<String>,
    pub state: OpState,
    /// Finished, Failed or Canceled, once reached; Closed does not overwrite it.
    pub final_state: Option<OpState>,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub close_time: Option<i64>,
    pub statement: String,
    pub error: Option<String>,
    pub produced_rows: Option<i64>,
    pub job_ids: Vec<i32>,
    pub sql_execution_ids: Vec<i64>,
    pub updated: u64,
}

impl Operation {
    fn started(
        g: u64,
        operation_id: String,
        job_tag: String,
        session_id: String,
        user_id: String,
        time: i64,
    ) -> Operation {
        Operation {
            operation_id,
            job_tag,
            session_id,
            user_id,
            tags: Vec::new(),
            state: OpState::Started,
            final_state: None,
            start_time: time,
            end_time: None,
            close_time: None,
            statement: String::new(),
            error: None,
            produced_rows: None,
            job_ids: Vec::new(),
            sql_execution_ids: Vec::new(),
            updated: g,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub updated: u64,
}

/// A Connect operation that closed: for the per-user duration histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedOperation {
    pub user_id: String,
    pub state: OpState,
    pub seconds: f64,
}

/// Closed operations by the state they ended in, since the agent first saw the application.
#[derive(Debug, Clone, Default)]
pub struct OperationCounters {
    pub finished: u64,
    pub failed: u64,
    pub canceled: u64,
}

/// The Connect sessions and operations of one application. Every change is stamped with the
/// model generation `g` it happened in.
#[derive(Debug, Default)]
pub struct Connect {
    pub(super) sessions: HashMap<String, Session>,
    pub(super) operations: HashMap<String, Operation>,
    op_by_job_tag: HashMap<String, String>,
    /// Closed operations waiting for the exporter's duration histogram.
    closed_operations: VecDeque<ClosedOperation>,
    pub(super) counters: OperationCounters,
    pub(super) evictions: Evictions,
    retention: Retention,
    /// Sessions whose record was created since ingest last took them: the store records which
    /// application reported each session first (`Store::claim_sessions`).
    pub(super) fresh: Vec<String>,
    /// More sessions were created than `fresh` holds: every session must be claimed again.
    pub(super) fresh_overflow: bool,
}

/// Fresh sessions kept between two takes; past it ingest claims them all again.
const MAX_FRESH: usize = 4096;

impl Connect {
    pub(super) fn new(retention: Retention) -> Self {
        Connect {
            retention,
            ..Connect::default()
        }
    }

    pub(super) fn session_started(
        &mut self,
        g: u64,
        session_id: String,
        user_id: String,
        time: i64,
    ) {
        let s = self.session(g, session_id, &user_id, time);
        s.user_id = user_id;
        s.start_time = time;
        s.end_time = None;
    }

    pub(super) fn session_closed(
        &mut self,
        g: u64,
        session_id: String,
        user_id: String,
        time: i64,
    ) {
        self.session(g, session_id, &user_id, time).end_time = Some(time);
        self.prune_sessions();
    }

    /// The session, created as starting at `time` if unknown, marked as changed in `g`.
    fn session(&mut self, g: u64, session_id: String, user_id: &str, time: i64) -> &mut Session {
        if !self.sessions.contains_key(&session_id) {
            self.bound_open_sessions(g, time);
            self.fresh_session(&session_id);
        }
        let s = self
            .sessions
            .entry(session_id.clone())
            .or_insert_with(|| Session {
                session_id,
                user_id: user_id.to_owned(),
                start_time: time,
                end_time: None,
                updated: g,
            });
        s.updated = g;
        s
    }

    pub(super) fn sql_execution_started(&mut self, g: u64, s: &SqlExecutionStart) {
        let Some(op_tag) = s.job_tags.iter().find(|t| is_operation_tag(t)) else {
            return;
        };
        if let Some(op) = self
            .op_by_job_tag
            .get(op_tag)
            .and_then(|id| self.operations.get_mut(id))
        {
            op.sql_execution_ids.push(s.execution_id);
            op.updated = g;
        }
    }

    /// The Connect operation behind a new job, from its tags; the operation learns of the job.
    pub(super) fn attribute_job(
        &mut self,
        g: u64,
        job_id: i32,
        tags: &[String],
    ) -> Option<ConnectRef> {
        let connect = self.attribute(tags)?;
        if let Some(op) = self.operations.get_mut(&connect.operation_id) {
            if !op.job_ids.contains(&job_id) {
                op.job_ids.push(job_id);
            }
            if op.tags.is_empty() {
                op.tags.clone_from(&connect.tags); // the cell it belongs to, from its job
            }
            op.updated = g;
        }
        Some(connect)
    }

    pub(super) fn attribute(&self, tags: &[String]) -> Option<ConnectRef> {
        let op_tag = tags.iter().find(|t| is_operation_tag(t))?;
        if let Some(op) = self
            .op_by_job_tag
            .get(op_tag)
            .and_then(|id| self.operations.get(id))
        {
            // An operation known only from events after its start (the agent was away when it
            // started) has no client tags of its own: the job's tags name them.
            let tags = if op.tags.is_empty() {
                client_tags(tags, &op.user_id, &op.session_id)
            } else {
                op.tags.clone()
            };
            return Some(ConnectRef {
                user_id: op.user_id.clone(),
                session_id: op.session_id.clone(),
                operation_id: op.operation_id.clone(),
                tags,
            });
        }
        let parsed = parse_operation_tag(op_tag)?;
        let client = client_tags(tags, parsed.user_id, parsed.session_id);
        Some(ConnectRef {
            user_id: parsed.user_id.to_owned(),
            session_id: parsed.session_id.to_owned(),
            operation_id: parsed.operation_id.to_owned(),
            tags: client,
        })
    }

    pub(super) fn operation_started(&mut self, g: u64, o: OperationStarted) {
        if self.operations.contains_key(&o.operation_id) {
            return;
        }
        let mut statement = o.statement;
        super::truncate_utf8(&mut statement, MAX_STATEMENT_BYTES);
        if !self.sessions.contains_key(&o.session_id) {
            self.session(g, o.session_id.clone(), &o.user_id, o.time);
        }
        let mut op = Operation::started(
            g,
            o.operation_id,
            o.job_tag,
            o.session_id,
            o.user_id,
            o.time,
        );
        op.tags = o.tags;
        op.statement = statement;
        self.insert_operation(g, o.time, op);
    }

    fn fresh_session(&mut self, session_id: &str) {
        if self.fresh.len() < MAX_FRESH {
            self.fresh.push(session_id.to_owned());
        } else {
            self.fresh_overflow = true;
        }
    }

    /// The sessions created since the last call; `None` when there were more than could be
    /// kept, and every session should be taken instead.
    pub(super) fn take_fresh(&mut self) -> Option<Vec<String>> {
        let fresh = std::mem::take(&mut self.fresh);
        if std::mem::take(&mut self.fresh_overflow) {
            None
        } else {
            Some(fresh)
        }
    }

    /// Makes room for one more open session: past the bound, the oldest open one is closed (its
    /// end was lost).
    fn bound_open_sessions(&mut self, g: u64, time: i64) {
        let open = || self.sessions.values().filter(|s| s.end_time.is_none());
        if open().count() < self.retention.live.open_sessions {
            return;
        }
        let oldest = open()
            .min_by_key(|s| (s.start_time, s.session_id.clone()))
            .map(|s| s.session_id.clone());
        if let Some(s) = oldest.and_then(|k| self.sessions.get_mut(&k)) {
            s.end_time = Some(time);
            s.updated = g;
            self.evictions.add(LiveBound::OpenSessions);
        }
    }

    /// Adds an operation; past the bound, the oldest unclosed one is closed (its end was lost).
    fn insert_operation(&mut self, g: u64, time: i64, op: Operation) {
        self.op_by_job_tag
            .insert(op.job_tag.clone(), op.operation_id.clone());
        let id = op.operation_id.clone();
        self.operations.insert(id.clone(), op);
        let unclosed = || {
            self.operations
                .values()
                .filter(|o| o.state != OpState::Closed)
        };
        if unclosed().count() <= self.retention.live.unclosed_operations {
            return;
        }
        let oldest = unclosed()
            .filter(|o| o.operation_id != id)
            .min_by_key(|o| (o.start_time, o.operation_id.clone()))
            .map(|o| o.operation_id.clone());
        if let Some(op) = oldest.and_then(|k| self.operations.get_mut(&k)) {
            op.state = OpState::Closed;
            op.end_time.get_or_insert(time);
            op.close_time = Some(time);
            op.updated = g;
            self.evictions.add(LiveBound::UnclosedOperations);
        }
    }

    pub(super) fn operation_state(
        &mut self,
        g: u64,
        id: String,
        job_tag: String,
        time: i64,
        t: OpTransition,
    ) {
        if !self.operations.contains_key(&id) {
            // Started before we were listening: rebuild what the tag tells.
            let Some(p) = parse_operation_tag(&job_tag) else {
                return;
            };
            let (session_id, user_id) = (p.session_id.to_owned(), p.user_id.to_owned());
            let op = Operation::started(g, id.clone(), job_tag, session_id, user_id, time);
            self.insert_operation(g, time, op);
        }
        let Some(op) = self.operations.get_mut(&id) else {
            return;
        };
        op.updated = g;
        match t {
            OpTransition::Analyzed => op.state = OpState::Analyzed,
            OpTransition::ReadyForExecution => op.state = OpState::Ready,
            OpTransition::Finished { produced_rows } => {
                op.state = OpState::Finished;
                op.final_state = Some(OpState::Finished);
                op.produced_rows = produced_rows;
                op.end_time = Some(time);
            }
            OpTransition::Failed { error } => {
                op.state = OpState::Failed;
                op.final_state = Some(OpState::Failed);
                op.error = Some(error);
                op.end_time = Some(time);
            }
            OpTransition::Canceled => {
                // Canceled may follow Finished or Failed; the cancel is what the user sees.
                op.state = OpState::Canceled;
                op.final_state = Some(OpState::Canceled);
                op.end_time.get_or_insert(time);
            }
            OpTransition::Closed => {
                if op.state == OpState::Closed {
                    return; // resent after a reconnect
                }
                op.state = OpState::Closed;
                op.close_time = Some(time);
                let end = *op.end_time.get_or_insert(time);
                let state = op.final_state.unwrap_or(OpState::Closed);
                let c = &mut self.counters;
                match state {
                    OpState::Failed => c.failed += 1,
                    OpState::Canceled => c.canceled += 1,
                    _ => c.finished += 1,
                }
                if self.closed_operations.len() >= MAX_CLOSED_BACKLOG {
                    self.closed_operations.pop_front();
                }
                self.closed_operations.push_back(ClosedOperation {
                    user_id: op.user_id.clone(),
                    state,
                    seconds: end.saturating_sub(op.start_time).max(0) as f64 / 1000.0,
                });
                self.prune_operations();
            }
        }
    }

    /// Replaces the open sessions and running operations with a snapshot's (`other`). What is
    /// open here but absent there ended while the listener was away, at an unknown moment: it is
    /// closed at the snapshot's `time`, and not counted by final state (which is unknown).
    /// Returns how many things were ended that way.
    pub(super) fn merge_snapshot(&mut self, g: u64, other: Connect, time: i64) -> usize {
        let mut ended = 0;
        for s in self.sessions.values_mut() {
            if s.end_time.is_none() && !other.sessions.contains_key(&s.session_id) {
                s.end_time = Some(time);
                s.updated = g;
                ended += 1;
            }
        }
        for op in self.operations.values_mut() {
            if !op.state.is_terminal() && !other.operations.contains_key(&op.operation_id) {
                op.state = OpState::Closed;
                op.end_time.get_or_insert(time);
                op.close_time = Some(time);
                op.updated = g;
                ended += 1;
            }
        }
        for id in other.fresh {
            if !self.sessions.contains_key(&id) {
                self.fresh_session(&id);
            }
        }
        self.fresh_overflow |= other.fresh_overflow;
        for (id, mut s) in other.sessions {
            s.updated = g;
            self.sessions.insert(id, s);
        }
        for (id, mut op) in other.operations {
            if let Some(old) = self.operations.get(&id) {
                // Jobs and SQL executions that ended before the snapshot are not in it.
                for j in &old.job_ids {
                    if !op.job_ids.contains(j) {
                        op.job_ids.push(*j);
                    }
                }
                for x in &old.sql_execution_ids {
                    if !op.sql_execution_ids.contains(x) {
                        op.sql_execution_ids.push(*x);
                    }
                }
                op.job_ids.sort_unstable();
                if op.statement.is_empty() {
                    op.statement.clone_from(&old.statement);
                }
            }
            op.updated = g;
            self.op_by_job_tag
                .insert(op.job_tag.clone(), op.operation_id.clone());
            self.operations.insert(id, op);
        }
        self.prune_sessions();
        self.prune_operations();
        ended
    }

    /// Ends every operation not over yet (its driver is gone): closed at `time`, as a snapshot
    /// that lacks it would. How many.
    pub(super) fn end_running_as_unknown(&mut self, g: u64, time: i64) -> usize {
        let mut ended = 0;
        for op in self.operations.values_mut() {
            if !op.state.is_terminal() {
                op.state = OpState::Closed;
                op.end_time.get_or_insert(time);
                op.close_time = Some(time);
                op.updated = g;
                ended += 1;
            }
        }
        ended
    }

    /// Closed operations since the last call, oldest first.
    pub(super) fn take_closed_operations(&mut self) -> Vec<ClosedOperation> {
        self.closed_operations.drain(..).collect()
    }

    /// Drops closed operations and sessions that ended before `cutoff` (epoch ms).
    pub(super) fn prune_ended_before(&mut self, cutoff: i64) {
        let old = |t: Option<i64>| t.is_some_and(|t| t < cutoff);
        // Finished but never closed (a client that went away without closing) ages the same.
        self.remove_operations(|o| o.state.is_terminal() && old(o.close_time.or(o.end_time)));
        self.sessions.retain(|_, s| !old(s.end_time));
    }

    fn prune_operations(&mut self) {
        let closed = self
            .operations
            .values()
            .filter(|o| o.state.is_terminal())
            .count();
        if closed <= self.retention.operations {
            return;
        }
        let mut by_close: Vec<(i64, String)> = self
            .operations
            .values()
            .filter(|o| o.state.is_terminal())
            .map(|o| {
                let t = o.close_time.or(o.end_time).unwrap_or(0);
                (t, o.operation_id.clone())
            })
            .collect();
        by_close.sort_unstable();
        let drop: HashSet<String> = by_close
            .into_iter()
            .take(closed - self.retention.operations)
            .map(|(_, id)| id)
            .collect();
        self.remove_operations(|o| drop.contains(&o.operation_id));
    }

    fn remove_operations(&mut self, pred: impl Fn(&Operation) -> bool) {
        let gone: Vec<String> = self
            .operations
            .values()
            .filter(|o| pred(o))
            .map(|o| o.operation_id.clone())
            .collect();
        for id in gone {
            if let Some(op) = self.operations.remove(&id) {
                self.op_by_job_tag.remove(&op.job_tag);
            }
        }
    }

    fn prune_sessions(&mut self) {
        let closed = self
            .sessions
            .values()
            .filter(|s| s.end_time.is_some())
            .count();
        if closed <= self.retention.sessions {
            return;
        }
        let mut by_end: Vec<(i64, String)> = self
            .sessions
            .values()
            .filter_map(|s| s.end_time.map(|t| (t, s.session_id.clone())))
            .collect();
        by_end.sort_unstable();
        for (_, id) in by_end.into_iter().take(closed - self.retention.sessions) {
            self.sessions.remove(&id);
        }
    }
}

/// The client tags among a job's tags that belong to this user's session, sorted, once each.
fn client_tags(tags: &[String], user_id: &str, session_id: &str) -> Vec<String> {
    let mut client: Vec<String> = tags
        .iter()
        .filter_map(|t| parse_session_tag(t, Some((user_id, session_id))))
        .map(|s| s.tag.to_owned())
        .collect();
    client.sort();
    client.dedup();
    client
}
