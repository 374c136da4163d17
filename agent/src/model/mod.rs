//! The state: applications, executors, Connect sessions and operations, jobs and stages, and
//! the attribution of every job to the Connect operation and client tags that ran it. Events
//! come in as [`event::Event`] values; nothing here reads bytes or sends anything.

pub mod app;
pub mod connect;
pub mod durations;
pub mod event;
pub mod jobs;
mod log_owner;
pub mod logs;
pub mod reconcile;
mod resync;
pub mod retention;
pub mod retired;
pub mod sql;
pub mod tags;
pub mod views;

pub use app::AppState;
pub use retention::Retention;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Every application the agent knows, each behind its own lock so that one listener's ingest
/// never waits for another's. Guards are short-lived and never held across an `.await`.
pub struct Store {
    apps: RwLock<BTreeMap<String, Arc<Mutex<AppState>>>>,
    /// Each Connect session id, with the application whose listener reported it first: streams
    /// and cancels that name no application use that one, so another application announcing the
    /// same session id (whoever holds a listener token can) is never mixed in.
    claims: Mutex<HashMap<String, String>>,
    retention: Retention,
    /// Bumped after every batch of changes; subscribers wait on it instead of polling.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(Retention::default())
    }
}

pub type SharedApp = Arc<Mutex<AppState>>;

impl Store {
    pub fn new(retention: Retention) -> Self {
        Store {
            apps: RwLock::default(),
            claims: Mutex::default(),
            retention,
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// Tells subscribers that some application changed.
    pub fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes after each [`Store::notify`].
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The application with this id, created empty if new.
    pub fn app(&self, id: &str) -> SharedApp {
        if let Some(app) = self.apps.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return app.clone();
        }
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.entry(id.to_owned())
            .or_insert_with(|| {
                let mut app = AppState::new(id, self.retention.clone());
                // Seen now: the age limit must not take an application in the moment between
                // its creation and its listener's connection being recorded.
                app.seen(crate::clock::now_ms());
                Arc::new(Mutex::new(app))
            })
            .clone()
    }

    /// All applications, ordered by id.
    pub fn apps(&self) -> Vec<SharedApp> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<SharedApp> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Records `app_id` as the owner of each of `sessions` no application owns yet; returns how
    /// many another application owns already (a conflict: counted and ignored).
    pub fn claim_sessions(&self, app_id: &str, sessions: Vec<String>) -> u64 {
        if sessions.is_empty() {
            return 0;
        }
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let mut conflicts = 0;
        for s in sessions {
            let owner = claims.entry(s).or_insert_with(|| app_id.to_owned());
            if owner != app_id {
                conflicts += 1;
            }
        }
        conflicts
    }

    /// The application that reported this Connect session first.
    pub fn owner_of(&self, session_id: &str) -> Option<String> {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .cloned()
    }

    /// Drops what finished more than `max_age_ms` before `now_ms`, in every application.
    pub fn prune(&self, now_ms: i64, max_age_ms: i64) {
        let cutoff = now_ms.saturating_sub(max_age_ms);
        for app in self.apps() {
            lock(&app).prune_ended_before(cutoff);
        }
        // An application whose listener has been gone longer than the age limit is dropped
        // whole: a Connect server restarted daily must not leave one application per day.
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        apps.retain(|_, app| {
            let a = app.lock().unwrap_or_else(|e| e.into_inner());
            a.is_live() || a.last_seen_ms() >= cutoff
        });
        drop(apps);
        // A claim lasts as long as its application still holds the session. The claims are
        // never locked while an application is (streams look claims up under one).
        let held: Vec<(String, String)> = self
            .claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, a)| (s.clone(), a.clone()))
            .collect();
        let gone: Vec<(String, String)> = held
            .into_iter()
            .filter(|(session, app)| {
                !self
                    .get(app)
                    .is_some_and(|a| lock(&a).knows_session_id(session))
            })
            .collect();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        for (session, app) in gone {
            if claims.get(&session) == Some(&app) {
                claims.remove(&session);
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`: free text
/// (statements, errors, stack traces) is bounded wherever it enters.
pub fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

/// Locks an application; a panic elsewhere while holding the lock does not poison readers.
pub fn lock(app: &SharedApp) -> MutexGuard<'_, AppState> {
    app.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_gone_longer_than_the_age_limit_is_dropped() {
        let store = Store::default();
        lock(&store.app("gone")).last_seen_ms = 1_000;
        lock(&store.app("recent")).last_seen_ms = 9_500;
        {
            let live = store.app("live");
            let mut a = lock(&live);
            a.connections = 1;
            a.last_seen_ms = 0;
        }
        store.prune(10_000, 1_000);
        let ids: Vec<String> = store
            .apps()
            .iter()
            .map(|a| lock(a).id().to_owned())
            .collect();
        assert_eq!(ids, ["live", "recent"]);
    }
}
