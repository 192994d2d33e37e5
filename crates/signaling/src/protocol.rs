//! Wire protocol of `GET /ws/calls/{call_id}`: client and server messages as serde types.
//!
//! Everything here produces exactly the JSON of CONTRACT.md's WebSocket section. A relayed
//! `payload` is never re-parsed into a typed structure: it travels as raw JSON
//! ([`RawValue`]), byte for byte as the sender wrote it.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use telcall_domain::UserId;

use crate::error::ProtocolError;

/// A pre-serialised JSON text frame, shared between every queue it is fanned out to.
///
/// Cloning a `Frame` is a reference-count increment: a broadcast serialises once.
pub type Frame = Arc<str>;

/// Default limit for one client frame, in bytes (`MAX_WEBSOCKET_MESSAGE_SIZE`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 65_536;

/// A participant as other participants see it: `{"id","username","first_name","last_name","photo_url"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalingUser {
    /// Internal telcall user id (what clients put in `to_user_id`).
    pub id: UserId,
    /// Telegram username, if any.
    pub username: Option<String>,
    /// First name, if any.
    pub first_name: Option<String>,
    /// Last name, if any.
    pub last_name: Option<String>,
    /// Profile photo URL, if any.
    pub photo_url: Option<String>,
}

impl SignalingUser {
    /// A user with only an id (every optional field null). Handy in tests and examples.
    pub fn with_id(id: UserId) -> Self {
        Self {
            id,
            username: None,
            first_name: None,
            last_name: None,
            photo_url: None,
        }
    }
}

/// The three kinds of message a client may send, and that are relayed to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// `"offer"`: an SDP offer.
    Offer,
    /// `"answer"`: an SDP answer.
    Answer,
    /// `"ice_candidate"`: a trickled ICE candidate.
    IceCandidate,
}

impl SignalKind {
    /// The wire name: `offer`, `answer` or `ice_candidate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice_candidate",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed client frame, borrowing from the text it was parsed from.
///
/// `{"type":"offer"|"answer"|"ice_candidate","payload":<any JSON>,"to_user_id":<int or numeric string>}`;
/// other fields are ignored.
#[derive(Debug, Clone, Copy)]
pub struct ClientMessage<'a> {
    /// What kind of signal this is.
    pub kind: SignalKind,
    /// The payload exactly as sent; `None` when it was missing or `null` (relayed as `null`).
    pub payload: Option<&'a RawValue>,
    /// The addressee's user id.
    pub to_user_id: UserId,
}

/// Every field of a client frame, unparsed, so that each can be judged on its own.
#[derive(Deserialize)]
struct RawClientMessage<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
    #[serde(default, borrow)]
    to_user_id: Option<&'a RawValue>,
}

/// Parses one client text frame, checking in CONTRACT's order.
///
/// 1. `text.len()` (its UTF-8 size) above `max_size` → [`ProtocolError::TooLarge`], before any parsing;
/// 2. not JSON, or JSON that is not an object → [`ProtocolError::InvalidJson`];
/// 3. `type` missing, not a string, or not one of the three kinds → [`ProtocolError::UnsupportedType`];
/// 4. `to_user_id` missing, or neither an integer nor a string holding one → [`ProtocolError::InvalidTarget`].
///
/// Whether the addressee is the sender (dropped silently) or offline is the hub's business.
pub fn parse_client_message(
    text: &str,
    max_size: usize,
) -> Result<ClientMessage<'_>, ProtocolError> {
    if text.len() > max_size {
        return Err(ProtocolError::TooLarge {
            size: text.len(),
            limit: max_size,
        });
    }
    // A derived struct would also accept a JSON array; only an object is a message.
    if !text.trim_start().starts_with('{') {
        return Err(ProtocolError::InvalidJson);
    }
    let raw: RawClientMessage<'_> =
        serde_json::from_str(text).map_err(|_| ProtocolError::InvalidJson)?;
    let kind = raw
        .kind
        .and_then(|k| serde_json::from_str::<SignalKind>(k.get()).ok())
        .ok_or(ProtocolError::UnsupportedType)?;
    let to_user_id = raw
        .to_user_id
        .and_then(parse_user_id)
        .ok_or(ProtocolError::InvalidTarget)?;
    let payload = raw.payload.filter(|p| p.get() != "null");
    Ok(ClientMessage {
        kind,
        payload,
        to_user_id,
    })
}

/// `to_user_id`: a JSON integer, or a string holding one (surrounding whitespace allowed).
fn parse_user_id(raw: &RawValue) -> Option<UserId> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdRepr<'a> {
        Int(i64),
        Str(&'a str),
        Owned(String),
    }
    let id = match serde_json::from_str::<IdRepr<'_>>(raw.get()).ok()? {
        IdRepr::Int(id) => id,
        IdRepr::Str(s) => s.trim().parse().ok()?,
        IdRepr::Owned(s) => s.trim().parse().ok()?,
    };
    Some(UserId::new(id))
}

/// Why a call ended: the `reason` of a `call_ended` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// `"ended"`: the organizer ended the call.
    Ended,
    /// `"expired"`: the expiry sweeper ended it.
    Expired,
    /// `"Maximum active calls limit reached - oldest call auto-ended"`.
    ActiveCallsLimit,
    /// `"Maximum call duration (<h> hours) exceeded"`.
    MaxDuration {
        /// The configured `MAX_CALL_DURATION_HOURS`.
        hours: u32,
    },
    /// Any other text.
    Other(String),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended => f.write_str("ended"),
            Self::Expired => f.write_str("expired"),
            Self::ActiveCallsLimit => {
                f.write_str("Maximum active calls limit reached - oldest call auto-ended")
            }
            Self::MaxDuration { hours } => {
                write!(f, "Maximum call duration ({hours} hours) exceeded")
            }
            Self::Other(text) => f.write_str(text),
        }
    }
}

impl From<EndReason> for String {
    fn from(reason: EndReason) -> Self {
        reason.to_string()
    }
}

/// Server → client messages, in the exact JSON shapes of CONTRACT.md.
///
/// The relay path does not build this enum (it writes the same JSON from borrowed parts, see
/// [`relay_frame`]); it is the typed view for everything else, and for Rust clients and tests
/// that read frames back ([`ServerMessage::parse`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// `{"type":"call_metadata","room_start_time":"2026-11-23T10:15:00.000Z"}`, always first.
    CallMetadata {
        /// When the first participant joined the room (RFC 3339, UTC, `Z`).
        #[serde(serialize_with = "serialize_rfc3339")]
        room_start_time: DateTime<Utc>,
    },
    /// `{"type":"participants_snapshot","participants":[…]}`, when others are already in the room.
    ParticipantsSnapshot {
        /// The others, in the order they joined.
        participants: Vec<SignalingUser>,
    },
    /// `{"type":"user_joined","user":{…}}`.
    UserJoined {
        /// Who joined.
        user: SignalingUser,
    },
    /// `{"type":"user_left","user":{…}}`.
    UserLeft {
        /// Who left.
        user: SignalingUser,
    },
    /// `{"type":"offer","payload":<as sent>,"from_user":{…}}`.
    Offer {
        /// The payload as the sender wrote it.
        payload: Box<RawValue>,
        /// Who sent it.
        from_user: SignalingUser,
    },
    /// `{"type":"answer","payload":<as sent>,"from_user":{…}}`.
    Answer {
        /// The payload as the sender wrote it.
        payload: Box<RawValue>,
        /// Who sent it.
        from_user: SignalingUser,
    },
    /// `{"type":"ice_candidate","payload":<as sent>,"from_user":{…}}`.
    IceCandidate {
        /// The payload as the sender wrote it.
        payload: Box<RawValue>,
        /// Who sent it.
        from_user: SignalingUser,
    },
    /// `{"type":"call_ended","reason":"ended"}`; the server closes the socket after it.
    CallEnded {
        /// See [`EndReason`].
        reason: String,
    },
    /// `{"type":"error","detail":"…"}`; the connection stays open.
    Error {
        /// One of [`ProtocolError`]'s texts.
        detail: String,
    },
}

fn serialize_rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(at))
}

/// RFC 3339 with milliseconds and an explicit `Z` offset, as `call_metadata` carries it.
pub fn format_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl ServerMessage {
    /// A relayed signal of `kind` (the three relay variants).
    pub fn relay(kind: SignalKind, payload: Box<RawValue>, from_user: SignalingUser) -> Self {
        match kind {
            SignalKind::Offer => Self::Offer { payload, from_user },
            SignalKind::Answer => Self::Answer { payload, from_user },
            SignalKind::IceCandidate => Self::IceCandidate { payload, from_user },
        }
    }

    /// Serialises this message to a shareable text frame.
    pub fn to_frame(&self) -> Frame {
        encode(self)
    }

    /// Reads a server frame back (for Rust clients and tests).
    ///
    /// Returns `None` when `text` is not one of the shapes above.
    pub fn parse(text: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Flat {
            #[serde(rename = "type")]
            kind: String,
            room_start_time: Option<DateTime<Utc>>,
            participants: Option<Vec<SignalingUser>>,
            user: Option<SignalingUser>,
            payload: Option<Box<RawValue>>,
            from_user: Option<SignalingUser>,
            reason: Option<String>,
            detail: Option<String>,
        }
        let flat: Flat = serde_json::from_str(text).ok()?;
        let relay = |kind: SignalKind, flat: Flat| {
            let payload = match flat.payload {
                Some(p) => p,
                None => RawValue::NULL.to_owned(),
            };
            Some(Self::relay(kind, payload, flat.from_user?))
        };
        match flat.kind.as_str() {
            "call_metadata" => Some(Self::CallMetadata {
                room_start_time: flat.room_start_time?,
            }),
            "participants_snapshot" => Some(Self::ParticipantsSnapshot {
                participants: flat.participants?,
            }),
            "user_joined" => Some(Self::UserJoined { user: flat.user? }),
            "user_left" => Some(Self::UserLeft { user: flat.user? }),
            "offer" => relay(SignalKind::Offer, flat),
            "answer" => relay(SignalKind::Answer, flat),
            "ice_candidate" => relay(SignalKind::IceCandidate, flat),
            "call_ended" => Some(Self::CallEnded {
                reason: flat.reason?,
            }),
            "error" => Some(Self::Error {
                detail: flat.detail?,
            }),
            _ => None,
        }
    }
}

/// The relay frame written from borrowed parts: same JSON as [`ServerMessage::Offer`] & co.
#[derive(Serialize)]
struct RelayFrame<'a> {
    #[serde(rename = "type")]
    kind: SignalKind,
    payload: &'a RawValue,
    from_user: &'a RawValue,
}

/// Builds `{"type":<kind>,"payload":<payload or null>,"from_user":<from_user>}` without
/// re-parsing anything: `from_user` is the sender's already-serialised [`SignalingUser`].
pub fn relay_frame(kind: SignalKind, payload: Option<&RawValue>, from_user: &RawValue) -> Frame {
    encode(&RelayFrame {
        kind,
        payload: payload.unwrap_or(RawValue::NULL),
        from_user,
    })
}

/// Serialises `value` into a frame.
///
/// The types of this module cannot fail to serialise (string keys only, no custom
/// serialiser that errors); should one ever fail, the error is logged and an `error` frame
/// is returned instead of panicking.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Frame {
    match serde_json::to_string(value) {
        Ok(text) => text.into(),
        Err(error) => {
            tracing::error!(%error, "failed to serialise a signaling frame");
            Arc::from(r#"{"type":"error","detail":"Internal error"}"#)
        }
    }
}

/// A user serialised once, for the `from_user` of every frame they send.
pub(crate) fn user_raw(user: &SignalingUser) -> Box<RawValue> {
    serde_json::value::to_raw_value(user).unwrap_or_else(|error| {
        tracing::error!(%error, "failed to serialise a signaling user");
        RawValue::NULL.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn alice() -> SignalingUser {
        SignalingUser {
            id: UserId::new(7),
            username: Some("alice_tg".into()),
            first_name: Some("Alice".into()),
            last_name: None,
            photo_url: Some("https://t.me/i/a.jpg".into()),
        }
    }

    const ALICE_JSON: &str = r#"{"id":7,"username":"alice_tg","first_name":"Alice","last_name":null,"photo_url":"https://t.me/i/a.jpg"}"#;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn signaling_user_shape() {
        assert_eq!(serde_json::to_string(&alice()).unwrap(), ALICE_JSON);
        let bare = serde_json::to_string(&SignalingUser::with_id(UserId::new(3))).unwrap();
        assert_eq!(
            bare,
            r#"{"id":3,"username":null,"first_name":null,"last_name":null,"photo_url":null}"#
        );
    }

    #[test]
    fn call_metadata_shape_is_rfc3339_utc() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 15, 0).unwrap();
        let frame = ServerMessage::CallMetadata {
            room_start_time: at,
        }
        .to_frame();
        assert_eq!(
            &*frame,
            r#"{"type":"call_metadata","room_start_time":"2026-11-23T10:15:00.000Z"}"#
        );
        let Some(ServerMessage::CallMetadata { room_start_time }) = ServerMessage::parse(&frame)
        else {
            panic!("not call_metadata")
        };
        assert_eq!(room_start_time, at);
    }

    #[test]
    fn roster_message_shapes() {
        let snapshot = ServerMessage::ParticipantsSnapshot {
            participants: vec![alice(), SignalingUser::with_id(UserId::new(8))],
        };
        assert_eq!(
            &*snapshot.to_frame(),
            format!(
                r#"{{"type":"participants_snapshot","participants":[{ALICE_JSON},{{"id":8,"username":null,"first_name":null,"last_name":null,"photo_url":null}}]}}"#
            )
        );
        let joined = ServerMessage::UserJoined { user: alice() }.to_frame();
        assert_eq!(
            &*joined,
            format!(r#"{{"type":"user_joined","user":{ALICE_JSON}}}"#)
        );
        let left = ServerMessage::UserLeft { user: alice() }.to_frame();
        assert_eq!(
            &*left,
            format!(r#"{{"type":"user_left","user":{ALICE_JSON}}}"#)
        );
    }

    #[test]
    fn relay_shapes_keep_payload_verbatim() {
        let payload = r#"{"candidate":"candidate:1 1 UDP 2122 10.0.0.1 5000 typ host","sdpMid":"0", "n":1.50}"#;
        for (kind, name) in [
            (SignalKind::Offer, "offer"),
            (SignalKind::Answer, "answer"),
            (SignalKind::IceCandidate, "ice_candidate"),
        ] {
            let expected =
                format!(r#"{{"type":"{name}","payload":{payload},"from_user":{ALICE_JSON}}}"#);
            let typed = ServerMessage::relay(kind, raw(payload), alice()).to_frame();
            assert_eq!(&*typed, expected);
            let fast = relay_frame(kind, Some(&raw(payload)), &raw(ALICE_JSON));
            assert_eq!(&*fast, expected);
        }
        let null = relay_frame(SignalKind::Offer, None, &raw(ALICE_JSON));
        assert_eq!(
            &*null,
            format!(r#"{{"type":"offer","payload":null,"from_user":{ALICE_JSON}}}"#)
        );
    }

    #[test]
    fn call_ended_and_error_shapes() {
        let ended = ServerMessage::CallEnded {
            reason: EndReason::Ended.into(),
        }
        .to_frame();
        assert_eq!(&*ended, r#"{"type":"call_ended","reason":"ended"}"#);
        let error = ServerMessage::Error {
            detail: "Invalid JSON".into(),
        }
        .to_frame();
        assert_eq!(&*error, r#"{"type":"error","detail":"Invalid JSON"}"#);
        assert_eq!(
            &*ProtocolError::TargetOffline.to_frame(),
            r#"{"type":"error","detail":"Target user is offline"}"#
        );
    }

    #[test]
    fn end_reasons() {
        assert_eq!(EndReason::Ended.to_string(), "ended");
        assert_eq!(EndReason::Expired.to_string(), "expired");
        assert_eq!(
            EndReason::ActiveCallsLimit.to_string(),
            "Maximum active calls limit reached - oldest call auto-ended"
        );
        assert_eq!(
            EndReason::MaxDuration { hours: 12 }.to_string(),
            "Maximum call duration (12 hours) exceeded"
        );
        assert_eq!(String::from(EndReason::Other("custom".into())), "custom");
    }

    #[test]
    fn parse_round_trips_every_server_message() {
        let messages = [
            ServerMessage::ParticipantsSnapshot {
                participants: vec![alice()],
            },
            ServerMessage::UserJoined { user: alice() },
            ServerMessage::UserLeft { user: alice() },
            ServerMessage::relay(SignalKind::Offer, raw(r#"{"sdp":"x"}"#), alice()),
            ServerMessage::relay(SignalKind::Answer, raw("null"), alice()),
            ServerMessage::relay(SignalKind::IceCandidate, raw("[1,2]"), alice()),
            ServerMessage::CallEnded {
                reason: "expired".into(),
            },
            ServerMessage::Error {
                detail: "Invalid JSON".into(),
            },
        ];
        for message in messages {
            let frame = message.to_frame();
            let back = ServerMessage::parse(&frame).unwrap();
            assert_eq!(back.to_frame(), frame);
        }
        assert!(ServerMessage::parse(r#"{"type":"nope"}"#).is_none());
        assert!(ServerMessage::parse("[]").is_none());
    }

    #[test]
    fn parses_valid_client_messages() {
        let m = parse_client_message(
            r#"{"type":"offer","payload":{"sdp":"v=0"},"to_user_id":42}"#,
            1000,
        )
        .unwrap();
        assert_eq!(m.kind, SignalKind::Offer);
        assert_eq!(m.payload.map(RawValue::get), Some(r#"{"sdp":"v=0"}"#));
        assert_eq!(m.to_user_id, UserId::new(42));

        let m = parse_client_message(r#" {"to_user_id":"43","type":"answer","extra":true}"#, 1000)
            .unwrap();
        assert_eq!(
            (m.kind, m.to_user_id),
            (SignalKind::Answer, UserId::new(43))
        );
        assert!(m.payload.is_none(), "missing payload relays as null");

        let m = parse_client_message(
            r#"{"type":"ice_candidate","payload":null,"to_user_id":" -5 "}"#,
            1000,
        )
        .unwrap();
        assert_eq!(
            (m.kind, m.to_user_id),
            (SignalKind::IceCandidate, UserId::new(-5))
        );
        assert!(m.payload.is_none());

        // Escaped strings are decoded before comparison.
        let m = parse_client_message(
            r#"{"type":"\u006fffer","payload":"a\"b","to_user_id":"\u0031"}"#,
            1000,
        )
        .unwrap();
        assert_eq!((m.kind, m.to_user_id), (SignalKind::Offer, UserId::new(1)));
        assert_eq!(m.payload.map(RawValue::get), Some(r#""a\"b""#));
    }

    #[test]
    fn invalid_json() {
        for text in [
            "",
            "not json",
            "{",
            r#"{"type":"offer""#,
            "[1,2]",
            "42",
            "\"offer\"",
            "null",
            "true",
        ] {
            assert_eq!(
                parse_client_message(text, 1000).unwrap_err(),
                ProtocolError::InvalidJson,
                "{text:?}"
            );
            assert_eq!(ProtocolError::InvalidJson.to_string(), "Invalid JSON");
        }
    }

    #[test]
    fn unsupported_type() {
        for text in [
            r#"{"payload":{},"to_user_id":1}"#,
            r#"{"type":"chat","to_user_id":1}"#,
            r#"{"type":7,"to_user_id":1}"#,
            r#"{"type":null,"to_user_id":1}"#,
            r#"{"type":"OFFER","to_user_id":1}"#,
            r#"{}"#,
        ] {
            assert_eq!(
                parse_client_message(text, 1000).unwrap_err(),
                ProtocolError::UnsupportedType,
                "{text}"
            );
        }
        assert_eq!(
            ProtocolError::UnsupportedType.to_string(),
            "Unsupported message type"
        );
    }

    #[test]
    fn invalid_target() {
        for text in [
            r#"{"type":"offer","payload":{}}"#,
            r#"{"type":"offer","to_user_id":null}"#,
            r#"{"type":"offer","to_user_id":"abc"}"#,
            r#"{"type":"offer","to_user_id":""}"#,
            r#"{"type":"offer","to_user_id":1.5}"#,
            r#"{"type":"offer","to_user_id":true}"#,
            r#"{"type":"offer","to_user_id":[1]}"#,
            r#"{"type":"offer","to_user_id":99999999999999999999}"#,
        ] {
            assert_eq!(
                parse_client_message(text, 1000).unwrap_err(),
                ProtocolError::InvalidTarget,
                "{text}"
            );
        }
        assert_eq!(
            ProtocolError::InvalidTarget.to_string(),
            "Invalid or missing to_user_id"
        );
    }

    #[test]
    fn too_large_counts_utf8_bytes_before_parsing() {
        // 10 characters, 20 bytes, and not even JSON: the size is checked first.
        let text = "éééééééééé";
        let err = parse_client_message(text, 19).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::TooLarge {
                size: 20,
                limit: 19
            }
        );
        assert_eq!(
            err.to_string(),
            "Message too large: 20 bytes (max 19 bytes)"
        );
        // Exactly at the limit is accepted.
        let ok = r#"{"type":"offer","to_user_id":1}"#;
        assert!(parse_client_message(ok, ok.len()).is_ok());
        assert!(parse_client_message(ok, ok.len() - 1).is_err());
    }

    #[test]
    fn target_offline_text() {
        assert_eq!(
            ProtocolError::TargetOffline.to_string(),
            "Target user is offline"
        );
    }
}
