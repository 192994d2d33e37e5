//! Domain errors: what went wrong in terms a user understands, mapped to HTTP by the server.

/// A storage failure, free of any database crate's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist (foreign key).
    #[error("missing reference: {0}")]
    MissingReference(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Other(String),
}

/// Every way a domain operation can fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// No call with that code.
    #[error("Call not found")]
    CallNotFound,
    /// The call's lifetime passed.
    #[error("Call has expired")]
    CallExpired,
    /// The call was ended.
    #[error("Call is not available")]
    CallNotAvailable,
    /// Ending a call that is no longer active.
    #[error("Call is no longer active. Please create a new call.")]
    CallNoLongerActive,
    /// Someone other than the organizer tried to end the call.
    #[error("Only the organizer can end the call")]
    NotOrganizer,
    /// Someone who took no part in a call asked for or sent its statistics.
    #[error("Only participants of the call can access its statistics")]
    NotParticipant,
    /// An empty join code.
    #[error("Call code is required")]
    CallCodeRequired,
    /// Calling oneself.
    #[error("You cannot call yourself")]
    CannotCallYourself,
    /// The friend to call does not exist.
    #[error("Friend not found")]
    FriendNotFound,
    /// The signed-in user no longer exists.
    #[error("User not found")]
    UserNotFound,
    /// Input that breaks a rule; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] RepoError),
}
