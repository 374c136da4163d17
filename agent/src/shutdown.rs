//! The agent's graceful shutdown: one trigger, and a [`Shutdown`] handle in every task that must
//! finish its work (answer a request, tell a subscriber, close a connection) before the agent
//! exits. The trigger learns that they all have when the last handle is dropped.

use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A task's view of shutdown. Holding one (or a clone) keeps the agent's drain waiting.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Shutdown {
    /// Resolves once shutdown has been asked for.
    pub async fn requested(&mut self) {
        // An error means the trigger is gone, which is a shutdown as well.
        let _ = self.signal.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.signal.borrow()
    }
}

/// Starts the shutdown and waits for every [`Shutdown`] handle to be dropped.
#[derive(Debug)]
pub struct Trigger {
    signal: watch::Sender<bool>,
    alive: mpsc::Receiver<()>,
}

impl Trigger {
    pub fn new() -> (Trigger, Shutdown) {
        let (signal, rx) = watch::channel(false);
        let (alive_tx, alive) = mpsc::channel(1);
        (
            Trigger { signal, alive },
            Shutdown {
                signal: rx,
                _alive: alive_tx,
            },
        )
    }

    pub fn fire(&self) {
        self.signal.send_replace(true);
    }

    /// Fires, then waits up to `grace` for every handle to go. `true` when all went in time.
    pub async fn drain(mut self, grace: Duration) -> bool {
        self.fire();
        // `recv` returns `None` once every sender (one per handle) has been dropped; nothing is
        // ever sent.
        tokio::time::timeout(grace, self.alive.recv()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_handle() {
        let (trigger, shutdown) = Trigger::new();
        let mut task_handle = shutdown.clone();
        drop(shutdown);
        let task = tokio::spawn(async move {
            task_handle.requested().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(task_handle);
        });
        assert!(trigger.drain(Duration::from_secs(5)).await);
        task.await.expect("task");

        let (trigger, shutdown) = Trigger::new();
        let stuck = shutdown.clone();
        drop(shutdown);
        assert!(!trigger.drain(Duration::from_millis(50)).await);
        assert!(stuck.is_requested());
    }
}
