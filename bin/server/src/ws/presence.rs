//! Recording who was in which call, off the relay path.
//!
//! WebSocket sessions report joins and leaves with [`Presence::joined`] / [`Presence::left`],
//! which only `try_send` into a bounded queue; one background task ([`Presence::spawn_worker`])
//! writes them to the database in the order they happened (participant rows with join and
//! leave times, friend links between everyone who shared the call). A database error is
//! logged and the call goes on; a full queue drops the record with a warning rather than
//! slow a session down. At shutdown the worker drains what is queued before the pool closes.

use std::sync::{Arc, Mutex, PoisonError};

use telcall_domain::{Call, CallService, UserId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How many join/leave records may wait for the database.
pub const PRESENCE_QUEUE: usize = 16_384;

/// One change to record.
#[derive(Debug)]
enum Event {
    Joined {
        call: Call,
        user: UserId,
        others: Vec<UserId>,
    },
    Left {
        call: Call,
        user: UserId,
    },
}

/// The sessions' side of the presence queue. Cheap to clone.
#[derive(Clone)]
pub struct Presence {
    tx: mpsc::Sender<Event>,
    worker: Arc<Mutex<Option<Worker>>>,
}

struct Worker {
    rx: mpsc::Receiver<Event>,
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
        self.push(Event::Joined {
            call: call.clone(),
            user,
            others,
        });
    }

    /// `user` left `call`'s room (or was removed from it).
    pub fn left(&self, call: &Call, user: UserId) {
        self.push(Event::Left {
            call: call.clone(),
            user,
        });
    }

    fn push(&self, event: Event) {
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
        loop {
            tokio::select! {
                biased;
                event = self.rx.recv() => match event {
                    Some(event) => self.write(event).await,
                    None => return,
                },
                () = crate::stopped(&mut shutdown) => break,
            }
        }
        while let Ok(event) = self.rx.try_recv() {
            self.write(event).await;
        }
    }

    async fn write(&self, event: Event) {
        let (result, what, call, user) = match &event {
            Event::Joined { call, user, others } => (
                self.calls.participant_joined(call, *user, others).await,
                "join",
                call,
                *user,
            ),
            Event::Left { call, user } => (
                self.calls.participant_left(call, *user).await,
                "leave",
                call,
                *user,
            ),
        };
        if let Err(error) = result {
            tracing::warn!(call = %call.code, user = user.get(), %error, "could not record a participant {what}");
        }
    }
}
