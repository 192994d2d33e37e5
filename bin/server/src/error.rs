//! The one place where every error becomes an HTTP status and CONTRACT's
//! `{"detail": "..."}` body: domain errors, storage errors, the auth crate's initData and
//! token errors, WebSocket handshake errors and actix's body / query / path errors. 5xx
//! bodies are opaque; a 5xx is logged here, once, with its cause chain (the request logger
//! only records the status on the request's span).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use telcall_auth::{InitDataError, TokenError};
use telcall_domain::{DomainError, MalformedCallCode, RepoError};

/// The JSON error body of every non-2xx response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message the frontend shows.
    pub detail: String,
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with this detail.
    #[error("{0}")]
    BadRequest(String),
    /// 401 with this detail.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 with this detail.
    #[error("{0}")]
    Forbidden(String),
    /// 404 with this detail.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 with this detail.
    #[error("{0}")]
    Unprocessable(String),
    /// 503 "Database unavailable" (the database could not be reached or did not answer in
    /// time); the cause is logged, never sent.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] RepoError),
    /// 500 "Internal server error": a bug or a failure the client cannot help (any other
    /// storage error included); the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Maps a domain error with CONTRACT's default statuses.
    pub fn from_domain(err: DomainError) -> Self {
        match err {
            DomainError::CallNotFound
            | DomainError::CallExpired
            | DomainError::CallNotAvailable
            | DomainError::FriendNotFound => Self::NotFound(err.to_string()),
            DomainError::NotOrganizer | DomainError::NotParticipant => {
                Self::Forbidden(err.to_string())
            }
            DomainError::CallNoLongerActive
            | DomainError::CallCodeRequired
            | DomainError::CannotCallYourself => Self::BadRequest(err.to_string()),
            DomainError::UserNotFound => Self::Unauthorized(err.to_string()),
            DomainError::Invalid(msg) => Self::Unprocessable(msg),
            DomainError::Storage(e) => e.into(),
        }
    }

    /// Maps the outcome of `POST /api/calls/join_by_code`: there, unlike on `GET`, a call
    /// that exists but cannot be joined (expired, ended) is a 400, as CONTRACT says.
    pub fn from_join(err: DomainError) -> Self {
        match err {
            DomainError::CallExpired | DomainError::CallNotAvailable => {
                Self::BadRequest(err.to_string())
            }
            other => Self::from_domain(other),
        }
    }

    /// Maps a refused WebSocket opening handshake (a plain GET, a missing or wrong upgrade
    /// header): 400 with actix's text.
    pub fn from_handshake(err: &actix_http::ws::HandshakeError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

/// initData refusals: malformed requests (no hash, no or bad user) are 400; forged,
/// expired or not even well-formed data is 401, answered with CONTRACT's text.
impl From<InitDataError> for ApiError {
    fn from(err: InitDataError) -> Self {
        let detail = err.detail().to_owned();
        match err {
            InitDataError::MissingHash
            | InitDataError::MissingSignature
            | InitDataError::MissingUser
            | InitDataError::InvalidUser => Self::BadRequest(detail),
            _ => Self::Unauthorized(detail),
        }
    }
}

/// Session and ticket refusals are 401 ("Token has expired" / "Invalid token"); a failure
/// of the server's own stores is a 500.
impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        if err.is_server_error() {
            Self::Internal(anyhow::Error::new(err).context("session verification failed"))
        } else {
            Self::Unauthorized(err.detail().to_owned())
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        Self::from_domain(err)
    }
}

/// A path or body that is not a call code names no call: 404 "Call not found".
impl From<MalformedCallCode> for ApiError {
    fn from(err: MalformedCallCode) -> Self {
        Self::from_domain(err.into())
    }
}

/// An unreachable database is a 503; any other storage error is a bug (a constraint the
/// domain should have checked, a query the schema does not fit) and a 500.
impl From<RepoError> for ApiError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unavailable(_) => Self::DatabaseUnavailable(err),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Writes an error and its sources, one per line (for logs).
pub fn error_chain_fmt(
    e: &dyn std::error::Error,
    f: &mut impl std::fmt::Write,
) -> std::fmt::Result {
    write!(f, "{e}")?;
    let mut current = e.source();
    while let Some(cause) = current {
        write!(f, "\n  caused by: {cause}")?;
        current = cause.source();
    }
    Ok(())
}

/// A JSON `{"detail": …}` response with `status`.
pub fn detail_response(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        detail: detail.into(),
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        // actix calls this once per failed request: the one log line of a 5xx.
        let detail = match self {
            Self::DatabaseUnavailable(_) => {
                let mut chain = String::new();
                let _ = error_chain_fmt(self, &mut chain);
                tracing::error!(error = %chain, "database unavailable");
                "Database unavailable".to_owned()
            }
            Self::Internal(cause) => {
                let mut chain = String::new();
                let _ = error_chain_fmt(cause.as_ref(), &mut chain);
                tracing::error!(error = %chain, "internal error");
                "Internal server error".to_owned()
            }
            other => other.to_string(),
        };
        detail_response(self.status_code(), detail)
    }
}

/// Turns actix's JSON extractor errors into CONTRACT's 413 / 415 / 422 bodies.
pub fn json_error_handler(
    err: actix_web::error::JsonPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let api = match &err {
        E::OverflowKnownLength { .. } | E::Overflow { .. } => {
            ApiError::PayloadTooLarge("Request body is too large".to_owned())
        }
        E::ContentType => {
            ApiError::UnsupportedMediaType("Content-Type must be application/json".to_owned())
        }
        E::Deserialize(e) => ApiError::Unprocessable(format!("Invalid request body: {e}")),
        other => ApiError::Unprocessable(format!("Invalid request body: {other}")),
    };
    api.into()
}

/// Turns query-string errors into 422 bodies.
pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::Unprocessable(format!("Invalid query: {err}")).into()
}

/// Turns path errors into 404 bodies.
pub fn path_error_handler(
    _err: actix_web::error::PathError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::NotFound("Not found".to_owned()).into()
}
