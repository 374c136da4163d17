//! The open listener connections, by application: each one's queue of commands for the agent →
//! listener direction (written by that connection's task), and the commands still waiting for
//! the listener's answer. Control puts commands here; ingest owns the connections and hands
//! the answers back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Departed drivers remembered at most (each an application id and a run id).
const MAX_DEPARTED: usize = 10_000;

/// Commands waiting for an answer, per connection.
const MAX_PENDING: usize = 64;

/// Another driver holds the application: connected now, or gone less than the grace period ago.
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

/// The connected listeners, by application id, and the drivers that left lately.
pub struct Listeners {
    inner: Mutex<HashMap<String, Link>>,
    /// The run of each application whose listener went away, and when: only that run may take
    /// the application again within the grace period.
    departed: Mutex<HashMap<String, (String, Instant)>>,
    grace: Duration,
    next_id: AtomicU64,
}

/// Commands waiting for one listener connection; dropped with it.
pub struct Registration {
    pub id: u64,
    pub commands: mpsc::Receiver<String>,
}

impl Listeners {
    /// `grace`: how long an application stays its last driver's after that driver went away.
    pub fn new(grace: Duration) -> Self {
        Listeners {
            inner: Mutex::default(),
            departed: Mutex::default(),
            grace,
            next_id: AtomicU64::new(0),
        }
    }

    /// The connection now serving `app_id`. A reconnect of the same driver (`run_id`) replaces
    /// the previous connection; another driver is refused while one is connected, and for the
    /// grace period after it went away (a driver reconnecting after a network blip or an agent
    /// restart keeps its application; someone else holding the token cannot take it meanwhile).
    pub fn register(&self, app_id: &str, run_id: &str) -> Result<Registration, Taken> {
        let mut map = self.lock();
        if map.get(app_id).is_some_and(|l| l.run_id != run_id) {
            return Err(Taken(app_id.to_owned()));
        }
        {
            let mut departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            departed.retain(|_, (_, at)| now.duration_since(*at) < self.grace);
            match departed.get(app_id) {
                Some((run, _)) if run != run_id => return Err(Taken(app_id.to_owned())),
                Some(_) => {
                    departed.remove(app_id);
                }
                None => {}
            }
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
        if map.get(app_id).is_none_or(|l| l.id != id) {
            return;
        }
        let Some(link) = map.remove(app_id) else {
            return;
        };
        let mut departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        if departed.len() >= MAX_DEPARTED {
            // The oldest goes first: its grace is the nearest to its end.
            if let Some(oldest) = departed
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                departed.remove(&oldest);
            }
        }
        departed.insert(app_id.to_owned(), (link.run_id, Instant::now()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_stays_its_drivers_for_the_grace_period() {
        let listeners = Listeners::new(Duration::from_millis(200));
        let first = listeners.register("app-1", "run-a").expect("first driver");
        assert!(
            listeners.register("app-1", "run-b").is_err(),
            "while connected"
        );
        listeners.unregister("app-1", first.id);
        assert!(
            listeners.register("app-1", "run-b").is_err(),
            "right after it left"
        );
        let again = listeners
            .register("app-1", "run-a")
            .expect("the same driver");
        listeners.unregister("app-1", again.id);
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            listeners.register("app-1", "run-b").is_ok(),
            "after the grace period another driver may have it"
        );
    }
}
