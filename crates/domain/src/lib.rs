//! telcall's domain: entities, value types, policies, services and the repository traits
//! that storage implements.
//!
//! This crate performs no I/O. It knows no database, HTTP or async-runtime crate: storage
//! lives behind the traits in [`repo`], time behind [`Clock`], outside effects behind
//! [`CallEvents`] and [`CallNotifier`].

mod cache;
pub mod clock;
pub mod entities;
pub mod error;
pub mod events;
pub mod repo;
pub mod services;
pub mod username;
pub mod users;
pub mod wire;

#[cfg(feature = "test-util")]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use entities::*;
pub use error::{DomainError, RepoError};
#[cfg(feature = "test-util")]
pub use events::RecordingCallEvents;
pub use events::{CallEvents, CallNotifier, EndReason, NotifyError};
pub use repo::{
    CallRepository, CallStatsRepository, FriendRepository, HealthCheck, ParticipantRepository,
    PresenceChange, Repositories, UserRepository,
};
pub use services::{CallPolicy, CallReadStats, CallService, FriendService, StatsService};
pub use users::{TelegramAccount, UserService};
