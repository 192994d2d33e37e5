//! The entities telcall stores and the value types around them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Internal user id (the JWT `sub`).
pub type UserId = i64;
/// Internal call id (database key; the public id is [`Call::code`]).
pub type CallId = i64;

/// A person who signed in through Telegram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Internal id.
    pub id: UserId,
    /// Telegram's user id.
    pub telegram_user_id: i64,
    /// Validated Telegram username, if any.
    pub username: Option<String>,
    /// First name as Telegram reported it.
    pub first_name: Option<String>,
    /// Last name as Telegram reported it.
    pub last_name: Option<String>,
    /// Profile photo URL as Telegram reported it.
    pub photo_url: Option<String>,
    /// First sign-in.
    pub created_at: DateTime<Utc>,
    /// Last sign-in.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// First and last name joined by a space, skipping missing parts.
    pub fn display_name(&self) -> String {
        [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a sign-in tells us about a user; the input of an upsert by Telegram id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    /// Telegram's user id (the upsert key).
    pub telegram_user_id: i64,
    /// Username, already validated (see [`crate::username::sanitize_username`]).
    pub username: Option<String>,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Photo URL.
    pub photo_url: Option<String>,
}

/// Lifecycle state of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallStatus {
    /// Open for joining.
    Active,
    /// Ended by its organizer or by a limit.
    Ended,
    /// Its lifetime passed.
    Expired,
}

impl CallStatus {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of parsing an unknown call status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call status: {0}")]
pub struct UnknownCallStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownCallStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "ended" => Ok(Self::Ended),
            "expired" => Ok(Self::Expired),
            other => Err(UnknownCallStatus(other.to_owned())),
        }
    }
}

/// The public, unguessable id of a call (`call_id` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallCode(String);

impl CallCode {
    /// Length of generated codes (within the 16–20 the contract allows).
    pub const LEN: usize = 18;
    const ALPHABET: &'static [u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// A fresh code of [`Self::LEN`] URL-safe characters from a CSPRNG (the thread-local ChaCha generator seeded by the OS) (108 bits).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let code = (0..Self::LEN)
            .map(|_| char::from(Self::ALPHABET[rng.random_range(0..Self::ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// Wraps an existing code (from storage or a request) without checking it.
    pub fn from_raw(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Internal id.
    pub id: CallId,
    /// Public id.
    pub code: CallCode,
    /// The organizer.
    pub creator_id: UserId,
    /// Optional title (≤ 255 characters).
    pub title: Option<String>,
    /// Whether video is on by default.
    pub is_video_enabled: bool,
    /// Lifecycle state as stored.
    pub status: CallStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// When it was ended or marked expired.
    pub ended_at: Option<DateTime<Utc>>,
}

impl Call {
    /// Whether the call's lifetime has passed at `now` (whatever its stored status).
    pub fn is_past_expiry(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether `user` may end this call.
    pub fn can_be_ended_by(&self, user: UserId) -> bool {
        self.creator_id == user
    }

    /// Whether people may join the call at `now`.
    pub fn is_joinable_at(&self, now: DateTime<Utc>) -> bool {
        self.status == CallStatus::Active && !self.is_past_expiry(now)
    }
}

/// Input of [`crate::CallRepository::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Public id.
    pub code: CallCode,
    /// The organizer.
    pub creator_id: UserId,
    /// Optional title.
    pub title: Option<String>,
    /// Video on by default.
    pub is_video_enabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry time.
    pub expires_at: DateTime<Utc>,
}

/// One stay of a user in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Row id.
    pub id: i64,
    /// The call.
    pub call_id: CallId,
    /// The user.
    pub user_id: UserId,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// When they left, if they did.
    pub left_at: Option<DateTime<Utc>>,
}

/// A directed friendship: `user_id` shared a call with `friend_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendLink {
    /// Owner of the link.
    pub user_id: UserId,
    /// The friend.
    pub friend_id: UserId,
    /// Most recent shared call.
    pub last_call_at: DateTime<Utc>,
    /// First shared call.
    pub created_at: DateTime<Utc>,
}

/// A friend as listed to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    /// The friend's user record.
    pub user: User,
    /// Most recent shared call.
    pub last_call_at: DateTime<Utc>,
}

/// Filter and page of a friend listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FriendQuery {
    /// Case-insensitive substring of first name, last name or username; taken literally.
    pub search: Option<String>,
    /// Page size (1..=100).
    pub limit: u64,
    /// Rows to skip.
    pub offset: u64,
}

/// Quality figures one participant reported for a call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallStatsInput {
    /// Seconds in the call.
    pub duration_seconds: Option<f64>,
    /// Audio bitrate.
    pub audio_bitrate_kbps: Option<f64>,
    /// Audio packets lost.
    pub audio_packets_lost: Option<i64>,
    /// Audio packets sent.
    pub audio_packets_sent: Option<i64>,
    /// Audio jitter.
    pub audio_jitter_ms: Option<f64>,
    /// Video bitrate.
    pub video_bitrate_kbps: Option<f64>,
    /// Video packets lost.
    pub video_packets_lost: Option<i64>,
    /// Video packets sent.
    pub video_packets_sent: Option<i64>,
    /// Video frame rate.
    pub video_frame_rate: Option<f64>,
    /// Video resolution such as `1280x720`.
    pub video_resolution: Option<String>,
    /// Round-trip time.
    pub rtt_ms: Option<f64>,
}

impl CallStatsInput {
    /// Largest accepted floating-point figure (anything bigger is nonsense, not a measurement).
    pub const MAX_FIGURE: f64 = 1e12;
    /// Longest accepted `video_resolution`.
    pub const MAX_RESOLUTION_LEN: usize = 32;

    /// Checks that every figure is finite and non-negative; returns the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        let floats = [
            ("duration_seconds", self.duration_seconds),
            ("audio_bitrate_kbps", self.audio_bitrate_kbps),
            ("audio_jitter_ms", self.audio_jitter_ms),
            ("video_bitrate_kbps", self.video_bitrate_kbps),
            ("video_frame_rate", self.video_frame_rate),
            ("rtt_ms", self.rtt_ms),
        ];
        for (name, value) in floats {
            if value.is_some_and(|v| !(0.0..=Self::MAX_FIGURE).contains(&v)) {
                return Err(format!(
                    "{name} must be a finite number between 0 and {}",
                    Self::MAX_FIGURE
                ));
            }
        }
        let ints = [
            ("audio_packets_lost", self.audio_packets_lost),
            ("audio_packets_sent", self.audio_packets_sent),
            ("video_packets_lost", self.video_packets_lost),
            ("video_packets_sent", self.video_packets_sent),
        ];
        for (name, value) in ints {
            if value.is_some_and(|v| v < 0) {
                return Err(format!("{name} must not be negative"));
            }
        }
        if self
            .video_resolution
            .as_ref()
            .is_some_and(|r| r.chars().count() > Self::MAX_RESOLUTION_LEN)
        {
            return Err(format!(
                "video_resolution must be at most {} characters",
                Self::MAX_RESOLUTION_LEN
            ));
        }
        Ok(())
    }
}

/// A stored call-statistics row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// Row id.
    pub id: i64,
    /// Internal call id.
    pub call_id: CallId,
    /// Public call id.
    pub call_code: CallCode,
    /// Reporter.
    pub user_id: UserId,
    /// The figures.
    pub figures: CallStatsInput,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Aggregate of every stats row of one call.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallStatsSummary {
    /// Number of rows.
    pub participant_count: u64,
    /// Mean of `duration_seconds` over rows that have it.
    pub avg_duration_seconds: Option<f64>,
    /// Mean audio bitrate.
    pub avg_audio_bitrate_kbps: Option<f64>,
    /// Sum of audio packets lost (0 with no rows).
    pub total_audio_packets_lost: i64,
    /// Mean audio jitter.
    pub avg_audio_jitter_ms: Option<f64>,
    /// Mean round-trip time.
    pub avg_rtt_ms: Option<f64>,
}
