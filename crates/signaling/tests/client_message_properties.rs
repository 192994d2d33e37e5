//! Property tests of the client-message parser: arbitrary text never panics and gets one of
//! CONTRACT's answers; every well-formed message parses to what was sent, its payload byte
//! for byte.
//!
//! CI runs proptest's default case count; `PROPTEST_CASES=100000 cargo test -p
//! telcall-signaling --test client_message_properties` runs longer.

use proptest::prelude::*;
use serde_json::Value;
use telcall_signaling::{ProtocolError, SignalKind, parse_client_message};

const LIMIT: usize = 4096;

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = SignalKind> {
    prop_oneof![
        Just(SignalKind::Offer),
        Just(SignalKind::Answer),
        Just(SignalKind::IceCandidate),
    ]
}

/// `to_user_id` as a client may write it: an integer, or a string holding one (padded).
fn target() -> impl Strategy<Value = (i64, Value)> {
    prop_oneof![
        any::<i64>().prop_map(|id| (id, Value::from(id))),
        (any::<i64>(), "[ \t]{0,2}", "[ \t]{0,2}")
            .prop_map(|(id, pre, post)| (id, Value::String(format!("{pre}{id}{post}")))),
    ]
}

proptest! {
    /// Any text: an answer, never a panic; text above the limit is refused by size first.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}", limit in 0usize..300) {
        match parse_client_message(&text, limit) {
            Err(ProtocolError::TooLarge { size, limit: l }) => {
                prop_assert_eq!(size, text.len());
                prop_assert_eq!(l, limit);
                prop_assert!(text.len() > limit);
            }
            Ok(_) | Err(_) => prop_assert!(text.len() <= limit),
        }
    }

    /// JSON-shaped noise: objects with stray fields and values of every kind.
    #[test]
    fn json_noise_gets_a_contract_answer(
        fields in proptest::collection::btree_map(
            prop_oneof![Just("type".to_owned()), Just("to_user_id".to_owned()), Just("payload".to_owned()), "[a-z_]{1,8}"],
            json_value(),
            0..5,
        )
    ) {
        let text = Value::Object(fields.clone().into_iter().collect()).to_string();
        let parsed = parse_client_message(&text, usize::MAX);
        let kind_ok = fields
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| matches!(t, "offer" | "answer" | "ice_candidate"));
        match parsed {
            Ok(m) => {
                prop_assert!(kind_ok);
                prop_assert_eq!(Some(m.kind.as_str()), fields.get("type").and_then(Value::as_str));
            }
            Err(ProtocolError::UnsupportedType) => prop_assert!(!kind_ok),
            Err(ProtocolError::InvalidTarget) => prop_assert!(kind_ok),
            Err(other) => prop_assert!(false, "unexpected {other:?} for {text}"),
        }
    }

    /// JSON that is not an object is "Invalid JSON" (the older backend crashed the socket).
    #[test]
    fn non_objects_are_invalid_json(value in json_value().prop_filter("not an object", |v| !v.is_object())) {
        let text = value.to_string();
        prop_assert_eq!(parse_client_message(&text, usize::MAX).err(), Some(ProtocolError::InvalidJson));
    }

    /// A well-formed message parses to its kind, target and payload exactly as written.
    #[test]
    fn well_formed_messages_parse_as_sent(
        kind in kind(),
        (id, id_json) in target(),
        payload in proptest::option::of(json_value()),
        extra in proptest::option::of(json_value()),
    ) {
        let mut object = serde_json::Map::new();
        object.insert("type".to_owned(), Value::from(kind.as_str()));
        object.insert("to_user_id".to_owned(), id_json);
        if let Some(p) = &payload {
            object.insert("payload".to_owned(), p.clone());
        }
        if let Some(e) = extra {
            object.insert("unknown_field".to_owned(), e);
        }
        let text = Value::Object(object).to_string();
        prop_assume!(text.len() <= LIMIT);
        let parsed = parse_client_message(&text, LIMIT);
        prop_assert!(parsed.is_ok(), "refused {text}: {parsed:?}");
        let parsed = parsed.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!(parsed.kind, kind);
        prop_assert_eq!(parsed.to_user_id.get(), id);
        let expected = payload.filter(|p| !p.is_null()).map(|p| p.to_string());
        prop_assert_eq!(parsed.payload.map(|p| p.get().to_owned()), expected);
    }
}
