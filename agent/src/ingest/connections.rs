//! The open listener connections, by application: each one's queue of commands (one JSON line
//! each) for the agent → listener direction, written by that connection's task. Control puts
//! commands here; ingest owns the connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no listener of application {0} is connected")]
    NotConnected(String),
    #[error("the listener of application {0} is not taking commands (queue full)")]
    Busy(String),
}

/// The connected listeners, by application id.
#[derive(Default)]
pub struct Listeners {
    inner: Mutex<HashMap<String, (u64, mpsc::Sender<String>)>>,
    next_id: AtomicU64,
}

/// Commands waiting for one listener connection; dropped with it.
pub struct Registration {
    pub id: u64,
    pub commands: mpsc::Receiver<String>,
}

impl Listeners {
    /// The connection now serving `app_id` (a reconnect replaces the previous one).
    pub fn register(&self, app_id: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        self.lock().insert(app_id.to_owned(), (id, tx));
        Registration { id, commands: rx }
    }

    pub fn unregister(&self, app_id: &str, id: u64) {
        let mut map = self.lock();
        if map.get(app_id).is_some_and(|(current, _)| *current == id) {
            map.remove(app_id);
        }
    }

    pub fn send(&self, app_id: &str, line: String) -> Result<(), CommandError> {
        let map = self.lock();
        let (_, tx) = map
            .get(app_id)
            .ok_or_else(|| CommandError::NotConnected(app_id.to_owned()))?;
        tx.try_send(line).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CommandError::Busy(app_id.to_owned()),
            mpsc::error::TrySendError::Closed(_) => CommandError::NotConnected(app_id.to_owned()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, mpsc::Sender<String>)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
