//! Policies and value types of the domain that need no storage.

use chrono::{Duration, TimeZone, Utc};
use telcall_domain::{
    Call, CallCode, CallId, CallStatsInput, CallStatus, Clock, ManualClock, UserId,
    username::sanitize_username,
};

fn call_at(created: chrono::DateTime<Utc>) -> Call {
    Call {
        id: CallId::new(1),
        code: CallCode::generate(),
        creator_id: UserId::new(7),
        title: None,
        is_video_enabled: false,
        status: CallStatus::Active,
        created_at: created,
        expires_at: created + Duration::hours(24),
        ended_at: None,
    }
}

#[test]
fn call_codes_are_url_safe_unique_and_contract_length() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2_000 {
        let code = CallCode::generate();
        let s = code.as_str();
        assert!((16..=20).contains(&s.len()), "{s}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s}"
        );
        assert!(seen.insert(s.to_owned()), "duplicate code {s}");
    }
}

#[test]
fn joinable_until_expiry_and_only_while_active() {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let mut call = call_at(t0);
    assert!(call.is_joinable_at(t0));
    assert!(call.is_joinable_at(t0 + Duration::hours(24) - Duration::seconds(1)));
    assert!(!call.is_joinable_at(t0 + Duration::hours(24)));
    assert!(call.is_past_expiry(t0 + Duration::hours(25)));
    call.status = CallStatus::Ended;
    assert!(!call.is_joinable_at(t0));
}

#[test]
fn the_duration_cap_counts_from_creation() {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let call = call_at(t0);
    let cap = Duration::hours(12);
    assert!(!call.is_past_duration_cap(t0 + cap - Duration::seconds(1), cap));
    assert!(call.is_past_duration_cap(t0 + cap, cap));
    // A cap past the calendar's end is never reached.
    assert!(!call.is_past_duration_cap(t0, Duration::MAX));
}

#[test]
fn only_the_creator_may_end() {
    let call = call_at(Utc::now());
    assert!(call.can_be_ended_by(UserId::new(7)));
    assert!(!call.can_be_ended_by(UserId::new(8)));
}

#[test]
fn status_round_trips_and_rejects_unknown() {
    for s in [CallStatus::Active, CallStatus::Ended, CallStatus::Expired] {
        assert_eq!(s.as_str().parse::<CallStatus>().unwrap(), s);
        assert_eq!(s.to_string(), s.as_str());
    }
    assert!("paused".parse::<CallStatus>().is_err());
}

#[test]
fn usernames_outside_the_telegram_pattern_become_none() {
    assert_eq!(
        sanitize_username(Some("valid_name")),
        Some("valid_name".into())
    );
    assert_eq!(
        sanitize_username(Some(&"a".repeat(32))),
        Some("a".repeat(32))
    );
    for bad in [
        "abcd",
        "has space",
        "üñíçødé",
        "semi;colon",
        &"a".repeat(33),
    ] {
        assert_eq!(sanitize_username(Some(bad)), None, "{bad}");
    }
    assert_eq!(sanitize_username(None), None);
}

#[test]
fn stats_validation_refuses_negative_and_absurd_values() {
    assert!(CallStatsInput::default().validate().is_ok());
    let ok = CallStatsInput {
        duration_seconds: Some(61.5),
        audio_packets_lost: Some(0),
        rtt_ms: Some(35.0),
        video_resolution: Some("1280x720".into()),
        ..Default::default()
    };
    assert!(ok.validate().is_ok());
    let bad = [
        CallStatsInput {
            audio_packets_lost: Some(-1),
            ..Default::default()
        },
        CallStatsInput {
            rtt_ms: Some(f64::NAN),
            ..Default::default()
        },
        CallStatsInput {
            duration_seconds: Some(f64::INFINITY),
            ..Default::default()
        },
        CallStatsInput {
            audio_jitter_ms: Some(-0.5),
            ..Default::default()
        },
        CallStatsInput {
            video_resolution: Some("x".repeat(100)),
            ..Default::default()
        },
    ];
    for b in bad {
        let err = b.validate().unwrap_err();
        assert!(!err.is_empty());
    }
}

#[test]
fn manual_clock_moves_only_when_told() {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let clock = ManualClock::new(t0);
    assert_eq!(clock.now(), t0);
    clock.advance(Duration::minutes(5));
    assert_eq!(clock.now(), t0 + Duration::minutes(5));
}
