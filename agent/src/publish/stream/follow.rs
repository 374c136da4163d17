//! What a subscriber follows and what it has seen: builds the snapshot, then the deltas, of a set
//! of Connect sessions as `sparkscope.v1.Update`s.

use crate::auth::Principal;
use crate::clock::now_ms;
use crate::model::{lock, Store};
use crate::publish::proto;
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::{BTreeSet, HashMap};

/// A Connect session as the server knows it: both ids must match.
pub type SessionKey = (String, String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FollowError {
    #[error("a session needs a sessionId")]
    MissingSessionId,
    #[error("at most {0} sessions per subscriber")]
    TooManySessions(usize),
    #[error("the sessions of user '{0}' are not this subscriber's to follow")]
    Forbidden(String),
}

#[derive(Debug)]
pub struct Follower {
    /// Who follows: a user may follow only sessions of that Connect user id.
    principal: Principal,
    sessions: BTreeSet<SessionKey>,
    max_sessions: usize,
    /// Per application, the generation up to which this subscriber has been sent everything.
    seen: HashMap<String, u64>,
    /// Per application, the time of the newest busy-slots sample sent.
    samples_sent: HashMap<String, i64>,
    generation: u64,
    needs_snapshot: bool,
}

impl Follower {
    pub fn new(max_sessions: usize, principal: Principal) -> Self {
        Follower {
            principal,
            sessions: BTreeSet::new(),
            max_sessions,
            seen: HashMap::new(),
            samples_sent: HashMap::new(),
            generation: 0,
            needs_snapshot: false,
        }
    }

    /// Follows these sessions too; the next update is a snapshot.
    pub fn subscribe(&mut self, keys: &[pb::SessionKey]) -> Result<(), FollowError> {
        let mut next = self.sessions.clone();
        for k in keys {
            if k.session_id.is_empty() {
                return Err(FollowError::MissingSessionId);
            }
            if !self.principal.may_follow(&k.user_id) {
                return Err(FollowError::Forbidden(k.user_id.clone()));
            }
            next.insert((k.session_id.clone(), k.user_id.clone()));
        }
        if next.len() > self.max_sessions {
            return Err(FollowError::TooManySessions(self.max_sessions));
        }
        self.sessions = next;
        self.needs_snapshot = true;
        Ok(())
    }

    pub fn unsubscribe(&mut self, keys: &[pb::SessionKey]) {
        for k in keys {
            self.sessions
                .remove(&(k.session_id.clone(), k.user_id.clone()));
        }
    }

    /// The next update is a full snapshot (after a subscription change or a resync).
    pub fn needs_snapshot(&self) -> bool {
        self.needs_snapshot
    }

    pub fn follows(&self, session_id: &str, user_id: &str) -> bool {
        self.sessions
            .contains(&(session_id.to_owned(), user_id.to_owned()))
    }

    /// How many sessions are followed.
    pub fn followed(&self) -> usize {
        self.sessions.len()
    }

    pub fn follows_anything(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// What changed since the last update (everything, for a snapshot); `None` when nothing
    /// did. Locks each application briefly, one at a time.
    pub fn next_update(&mut self, store: &Store, ui_template: Option<&str>) -> Option<pb::Update> {
        let snapshot = std::mem::take(&mut self.needs_snapshot);
        if snapshot {
            self.seen.clear();
            self.samples_sent.clear();
        }
        let mut u = pb::Update {
            snapshot,
            ..pb::Update::default()
        };
        for shared in store.apps() {
            let app = lock(&shared);
            let since = self.seen.get(app.id()).copied().unwrap_or(0);
            if app.generation() == since {
                continue;
            }
            self.seen.insert(app.id().to_owned(), app.generation());
            let mut touched = false;
            for (sid, uid) in &self.sessions {
                let slice = app.session_slice(sid, uid, since);
                if slice.is_empty() {
                    continue;
                }
                touched = true;
                let id = app.id();
                u.sessions
                    .extend(slice.session.map(|s| proto::session(id, s)));
                u.operations
                    .extend(slice.operations.iter().map(|o| proto::operation(id, o)));
                u.jobs.extend(slice.jobs.iter().map(|j| proto::job(id, j)));
                u.stages
                    .extend(slice.stages.iter().map(|s| proto::stage(id, s)));
                u.tag_groups
                    .extend(slice.tag_groups.iter().map(|g| pb::TagGroup {
                        tag: g.tag.to_owned(),
                        operation_ids: g.operation_ids.iter().map(|s| (*s).to_owned()).collect(),
                        job_ids: g.job_ids.clone(),
                        app_id: id.to_owned(),
                        session_id: sid.clone(),
                    }));
            }
            // A new notice, or new busy-slots samples, reach every subscriber with a session in
            // this application.
            let noticed = (app.notices_updated() > since || app.samples_updated() > since)
                && self
                    .sessions
                    .iter()
                    .any(|(sid, uid)| app.knows_session(sid, uid));
            if touched || noticed {
                let after = self.samples_sent.get(app.id()).copied().unwrap_or(i64::MIN);
                let a = proto::application(&app, after, ui_template);
                if let Some(last) = app.samples().next_back() {
                    self.samples_sent.insert(app.id().to_owned(), last.at_ms);
                }
                u.applications.push(a);
            }
        }
        if !snapshot && u.applications.is_empty() {
            return None;
        }
        self.generation += 1;
        u.generation = self.generation;
        u.sent_at_ms = now_ms();
        Some(u)
    }
}
