//! The open listener connections, by application: each one's queue of commands for the agent →
//! listener direction (written by that connection's task), and the commands still waiting for
//! the listener's answer. Control puts commands here; ingest owns the connections and hands
//! the answers back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for an answer, per connection.
const MAX_PENDING: usize = 64;

/// Another driver holds the application's connection.
#[derive(Debug, thiserror::Error)]
#[error("application {0} is connected from another driver")]
pub struct Taken(pub String);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no listener of application {0} is connected")]
    NotConnected(String),
    #[error("the listener of application {0} is not taking commands (queue full)")]
    Busy(String),
}

/// How the listener answered a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub ok: bool,
    /// Why not, when not ok.
    pub error: String,
}

struct Link {
    id: u64,
    run_id: String,
    commands: mpsc::Sender<String>,
    pending: HashMap<String, oneshot::Sender<CommandResult>>,
}

/// The connected listeners, by application id.
#[derive(Default)]
pub struct Listeners {
    inner: Mutex<HashMap<String, Link>>,
    next_id: AtomicU64,
}

/// Commands waiting for one listener connection; dropped with it.
pub struct Registration {
    pub id: u64,
    pub commands: mpsc::Receiver<String>,
}

impl Listeners {
    /// The connection now serving `app_id`. A reconnect of the same driver (`run_id`) replaces
    /// the previous connection; another driver is refused while one is connected.
    pub fn register(&self, app_id: &str, run_id: &str) -> Result<Registration, Taken> {
        let mut map = self.lock();
        if map.get(app_id).is_some_and(|l| l.run_id != run_id) {
            return Err(Taken(app_id.to_owned()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let link = Link {
            id,
            run_id: run_id.to_owned(),
            commands: tx,
            pending: HashMap::new(),
        };
        map.insert(app_id.to_owned(), link);
        Ok(Registration { id, commands: rx })
    }

    /// The connection is gone; commands it never answered fail with it.
    pub fn unregister(&self, app_id: &str, id: u64) {
        let mut map = self.lock();
        if map.get(app_id).is_some_and(|l| l.id == id) {
            map.remove(app_id);
        }
    }

    /// Queues a command (a JSON object; its `id` is set here) and returns where the answer
    /// will come.
    pub fn command(
        &self,
        app_id: &str,
        mut cmd: serde_json::Value,
    ) -> Result<oneshot::Receiver<CommandResult>, CommandError> {
        let mut map = self.lock();
        let link = map
            .get_mut(app_id)
            .ok_or_else(|| CommandError::NotConnected(app_id.to_owned()))?;
        if link.pending.len() >= MAX_PENDING {
            return Err(CommandError::Busy(app_id.to_owned()));
        }
        let id = format!("c{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        cmd["id"] = serde_json::Value::from(id.clone());
        link.commands
            .try_send(cmd.to_string())
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CommandError::Busy(app_id.to_owned()),
                mpsc::error::TrySendError::Closed(_) => {
                    CommandError::NotConnected(app_id.to_owned())
                }
            })?;
        let (tx, rx) = oneshot::channel();
        link.pending.insert(id, tx);
        Ok(rx)
    }

    /// The listener of connection `registration` answered command `id`.
    pub fn answered(&self, app_id: &str, registration: u64, id: &str, result: CommandResult) {
        let mut map = self.lock();
        if let Some(link) = map.get_mut(app_id).filter(|l| l.id == registration) {
            if let Some(tx) = link.pending.remove(id) {
                let _ = tx.send(result);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
