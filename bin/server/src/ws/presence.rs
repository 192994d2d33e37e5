//! Recording who was in which call, off the relay path.
//!
//! WebSocket sessions report joins and leaves with [`Presence::joined`] / [`Presence::left`],
//! which stamp the time and only `try_send` into a bounded queue; one background task
//! ([`Presence::spawn_worker`]) writes them to the database in the order they happened
//! (participant rows with join and leave times, friend links between the one who joined and
//! everyone already there). It takes whatever has queued up while the previous write ran,
//! up to [`PRESENCE_BATCH`] changes, and writes them in one transaction
//! ([`CallService::record_presence`]), so a burst of joins costs a few commits, not one
//! per change. When a batch fails, its changes are written one by one, so one bad change
//! loses only itself. A database error is logged and the call goes on; a full queue drops
//! the record with a warning rather than slow a session down. At shutdown the worker
//! drains what is queued before the pool closes.

use std::sync::{Arc, Mutex, PoisonError};

use telcall_domain::{Call, CallService, PresenceChange, UserId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How many join/leave records may wait for the database.
pub const PRESENCE_QUEUE: usize = 16_384;

/// Most changes written in one transaction.
pub const PRESENCE_BATCH: usize = 512;

/// The sessions' side of the presence queue. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    tx: mpsc::Sender<PresenceChange>,
    calls: CallService,
    worker: Arc<Mutex<Option<Worker>>>,
}

struct Worker {
    rx: mpsc::Receiver<PresenceChange>,
    calls: CallService,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .finish()
    }
}

impl Presence {
    /// A queue of `capacity` records, written through `calls` once the worker runs.
    pub fn new(calls: CallService, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self {
            tx,
            calls: calls.clone(),
            worker: Arc::new(Mutex::new(Some(Worker { rx, calls }))),
        }
    }

    /// Starts the writer on the current runtime (once; later calls return `None`). It stops
    /// when `shutdown` turns true, after writing everything already queued.
    pub fn spawn_worker(&self, shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(tokio::spawn(worker.run(shutdown)))
    }

    /// `user` joined `call`'s room where `others` already were.
    pub fn joined(&self, call: &Call, user: UserId, others: Vec<UserId>) {
        self.push(self.calls.joined(call, user, others));
    }

    /// `user` left `call`'s room (or was removed from it).
    pub fn left(&self, call: &Call, user: UserId) {
        self.push(self.calls.left(call, user));
    }

    fn push(&self, event: PresenceChange) {
        if let Err(e) = self.tx.try_send(event) {
            let event = match &e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            tracing::warn!(
                ?event,
                full = matches!(e, mpsc::error::TrySendError::Full(_)),
                "participant record dropped: presence queue unavailable"
            );
        }
    }
}

impl Worker {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(PRESENCE_BATCH);
        loop {
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut batch, PRESENCE_BATCH) => {
                    if n == 0 {
                        return;
                    }
                    self.write(&mut batch).await;
                }
                () = crate::stopped(&mut shutdown) => break,
            }
        }
        loop {
            while batch.len() < PRESENCE_BATCH
                && let Ok(change) = self.rx.try_recv()
            {
                batch.push(change);
            }
            if batch.is_empty() {
                return;
            }
            self.write(&mut batch).await;
        }
    }

    /// Writes and empties `batch`: in one transaction, or change by change if that fails.
    async fn write(&self, batch: &mut Vec<PresenceChange>) {
        match self.calls.record_presence(batch).await {
            Ok(()) => {}
            Err(error) if batch.len() == 1 => {
                tracing::warn!(change = ?batch[0], %error, "could not record a participant change");
            }
            Err(error) => {
                tracing::debug!(%error, changes = batch.len(), "presence batch failed; writing its changes one by one");
                for change in batch.iter() {
                    if let Err(error) = self
                        .calls
                        .record_presence(std::slice::from_ref(change))
                        .await
                    {
                        tracing::warn!(?change, %error, "could not record a participant change");
                    }
                }
            }
        }
        batch.clear();
    }
}
