//! Behaviour of the room hub: ordering, relay, replacement, capacity, ending, back-pressure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use telcall_signaling::{
    EndReason, Hub, HubConfig, HubStats, JoinError, Joined, Outbound, Outbox, ProtocolError,
    RelayOutcome, ServerMessage, SignalingUser, UserId, close,
};

const ROOM: &str = "AbCdEfGhIjKlMnOp";

fn user(id: i64) -> SignalingUser {
    SignalingUser {
        id: UserId::new(id),
        username: Some(format!("user_{id}")),
        first_name: Some(format!("First{id}")),
        last_name: None,
        photo_url: None,
    }
}

fn user_json(id: i64) -> String {
    format!(
        r#"{{"id":{id},"username":"user_{id}","first_name":"First{id}","last_name":null,"photo_url":null}}"#
    )
}

fn hub() -> Hub {
    Hub::new(HubConfig::default())
}

fn join(hub: &Hub, id: i64) -> Joined {
    hub.join(ROOM, user(id)).unwrap()
}

/// Everything ready in the outbox now.
fn drain(outbox: &mut Outbox) -> Vec<Outbound> {
    std::iter::from_fn(|| outbox.try_recv()).collect()
}

/// The text frames ready now, as JSON values (panics on a Close).
fn texts(outbox: &mut Outbox) -> Vec<Value> {
    drain(outbox)
        .into_iter()
        .map(|item| match item {
            Outbound::Text(frame) => serde_json::from_str(&frame).unwrap(),
            Outbound::Close { code, reason } => panic!("unexpected close {code} {reason}"),
        })
        .collect()
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().map(|f| f["type"].as_str().unwrap()).collect()
}

fn offer(to: i64) -> String {
    format!(r#"{{"type":"offer","payload":{{"sdp":"v=0 for {to}"}},"to_user_id":{to}}}"#)
}

fn stats_zero(hub: &Hub) -> bool {
    let HubStats {
        rooms, connections, ..
    } = hub.stats();
    rooms == 0 && connections == 0
}

#[test]
fn first_joiner_gets_only_call_metadata() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let frames = texts(&mut a.outbox);
    assert_eq!(types(&frames), ["call_metadata"]);
    let start = frames[0]["room_start_time"].as_str().unwrap();
    assert!(start.ends_with('Z'), "{start}");
    let parsed = chrono::DateTime::parse_from_rfc3339(start).unwrap();
    assert_eq!(parsed, a.room_start_time);
    assert!(!a.replaced);
    assert_eq!(
        hub.stats(),
        HubStats {
            rooms: 1,
            connections: 1,
            messages_relayed: 0,
            messages_dropped: 0
        }
    );
    assert_eq!(hub.room_start_time(ROOM), Some(a.room_start_time));
}

#[test]
fn a_room_starts_at_the_hubs_clock() {
    use chrono::TimeZone;
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 11, 23, 10, 15, 0)
        .unwrap();
    let clock = Arc::new(telcall_domain::ManualClock::new(at));
    let hub = Hub::with_clock(
        HubConfig::default(),
        Arc::new(telcall_signaling::LocalBroker::new()),
        clock.clone(),
    );
    let mut a = join(&hub, 1);
    assert_eq!(a.room_start_time, at);
    let frames = texts(&mut a.outbox);
    assert_eq!(frames[0]["room_start_time"], "2026-11-23T10:15:00.000Z");
    // A later joiner of the same room gets the same start, whatever the clock says now.
    clock.advance(chrono::Duration::minutes(5));
    assert_eq!(join(&hub, 2).room_start_time, at);
}

#[test]
fn later_joiner_gets_metadata_then_snapshot_and_others_get_user_joined() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let mut b = join(&hub, 2);
    let mut c = join(&hub, 3);

    let c_frames = texts(&mut c.outbox);
    assert_eq!(types(&c_frames), ["call_metadata", "participants_snapshot"]);
    assert_eq!(
        c.room_start_time, a.room_start_time,
        "the room keeps its start time"
    );
    let snapshot: Vec<i64> = c_frames[1]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(snapshot, [1, 2], "join order, without the joiner");

    let a_frames = drain(&mut a.outbox);
    assert_eq!(a_frames.len(), 3);
    assert_eq!(
        a_frames[1],
        Outbound::Text(format!(r#"{{"type":"user_joined","user":{}}}"#, user_json(2)).into())
    );
    assert_eq!(
        a_frames[2],
        Outbound::Text(format!(r#"{{"type":"user_joined","user":{}}}"#, user_json(3)).into())
    );

    let b_frames = texts(&mut b.outbox);
    assert_eq!(
        types(&b_frames),
        ["call_metadata", "participants_snapshot", "user_joined"]
    );
    assert_eq!(b_frames[2]["user"]["id"], 3);

    let ids: Vec<i64> = hub
        .room_participants(ROOM)
        .iter()
        .map(|u| u.id.get())
        .collect();
    assert_eq!(ids, [1, 2, 3]);

    let mut others: Vec<i64> = hub
        .room_user_ids_except(ROOM, UserId::new(2))
        .iter()
        .map(|id| id.get())
        .collect();
    others.sort_unstable();
    assert_eq!(others, [1, 3]);
    assert!(hub.room_user_ids_except("nope", UserId::new(1)).is_empty());
}

#[test]
fn leave_tells_the_others_and_removes_the_empty_room() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let mut b = join(&hub, 2);
    drain(&mut a.outbox);
    drain(&mut b.outbox);

    assert!(hub.leave(&b.handle));
    assert!(!hub.leave(&b.handle), "a second leave changes nothing");
    assert_eq!(
        drain(&mut a.outbox),
        [Outbound::Text(
            format!(r#"{{"type":"user_left","user":{}}}"#, user_json(2)).into()
        )]
    );
    assert_eq!(b.outbox.try_recv(), None);
    assert!(b.outbox.is_done(), "a left connection's outbox ends");
    assert_eq!(hub.stats().connections, 1);

    assert!(hub.leave(&a.handle));
    assert!(stats_zero(&hub));
    assert!(hub.room_participants(ROOM).is_empty());
    assert_eq!(hub.room_start_time(ROOM), None);
}

#[tokio::test]
async fn outbox_recv_ends_after_leave() {
    let hub = hub();
    let mut a = join(&hub, 1);
    assert!(matches!(a.outbox.recv().await, Some(Outbound::Text(_))));
    let waiter = tokio::spawn(async move { a.outbox.recv().await });
    hub.leave(&a.handle);
    assert_eq!(waiter.await.unwrap(), None);
}

#[test]
fn relay_reaches_only_the_addressee_with_from_user() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let mut b = join(&hub, 2);
    let mut c = join(&hub, 3);
    for j in [&mut a, &mut b, &mut c] {
        drain(&mut j.outbox);
    }

    let sent = r#"{"type":"ice_candidate","payload":{"candidate":"candidate:0 1 UDP 1 1.2.3.4 9 typ host","sdpMLineIndex":0},"to_user_id":"2"}"#;
    assert_eq!(hub.handle_text(&a.handle, sent), Ok(RelayOutcome::Relayed));
    let expected = format!(
        r#"{{"type":"ice_candidate","payload":{{"candidate":"candidate:0 1 UDP 1 1.2.3.4 9 typ host","sdpMLineIndex":0}},"from_user":{}}}"#,
        user_json(1)
    );
    assert_eq!(drain(&mut b.outbox), [Outbound::Text(expected.into())]);
    assert!(drain(&mut a.outbox).is_empty());
    assert!(drain(&mut c.outbox).is_empty());

    // A missing payload is relayed as null.
    hub.handle_text(&c.handle, r#"{"type":"answer","to_user_id":1}"#)
        .unwrap();
    assert_eq!(
        drain(&mut a.outbox),
        [Outbound::Text(
            format!(
                r#"{{"type":"answer","payload":null,"from_user":{}}}"#,
                user_json(3)
            )
            .into()
        )]
    );
    assert_eq!(hub.stats().messages_relayed, 2);
}

#[test]
fn self_addressed_message_is_dropped_silently() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let mut b = join(&hub, 2);
    drain(&mut a.outbox);
    drain(&mut b.outbox);
    assert_eq!(
        hub.handle_text(&a.handle, &offer(1)),
        Ok(RelayOutcome::SelfAddressed)
    );
    assert!(drain(&mut a.outbox).is_empty());
    assert!(drain(&mut b.outbox).is_empty());
    assert_eq!(hub.stats().messages_relayed, 0);
}

#[test]
fn each_error_is_queued_to_the_sender_and_the_connection_stays() {
    let hub = Hub::new(HubConfig {
        max_message_size: 100,
        ..HubConfig::default()
    });
    let mut a = hub.join(ROOM, user(1)).unwrap();
    let mut b = hub.join(ROOM, user(2)).unwrap();
    drain(&mut a.outbox);
    drain(&mut b.outbox);

    let big = format!(
        r#"{{"type":"offer","payload":"{}","to_user_id":2}}"#,
        "é".repeat(50)
    );
    let cases = [
        (
            "not json".to_owned(),
            ProtocolError::InvalidJson,
            "Invalid JSON".to_owned(),
        ),
        (
            "[1]".to_owned(),
            ProtocolError::InvalidJson,
            "Invalid JSON".to_owned(),
        ),
        (
            r#"{"type":"chat","to_user_id":2}"#.to_owned(),
            ProtocolError::UnsupportedType,
            "Unsupported message type".to_owned(),
        ),
        (
            r#"{"to_user_id":2}"#.to_owned(),
            ProtocolError::UnsupportedType,
            "Unsupported message type".to_owned(),
        ),
        (
            r#"{"type":"offer"}"#.to_owned(),
            ProtocolError::InvalidTarget,
            "Invalid or missing to_user_id".to_owned(),
        ),
        (
            r#"{"type":"offer","to_user_id":"x"}"#.to_owned(),
            ProtocolError::InvalidTarget,
            "Invalid or missing to_user_id".to_owned(),
        ),
        (
            offer(99),
            ProtocolError::TargetOffline,
            "Target user is offline".to_owned(),
        ),
        (
            big.clone(),
            ProtocolError::TooLarge {
                size: big.len(),
                limit: 100,
            },
            format!("Message too large: {} bytes (max 100 bytes)", big.len()),
        ),
    ];
    for (text, error, detail) in cases {
        assert_eq!(hub.handle_text(&a.handle, &text), Err(error));
        assert_eq!(
            drain(&mut a.outbox),
            [Outbound::Text(
                format!(r#"{{"type":"error","detail":"{detail}"}}"#).into()
            )],
            "{text}"
        );
    }
    // A binary frame, as the transport reports it.
    assert!(hub.send_error(&a.handle, &ProtocolError::InvalidJson));
    assert_eq!(
        drain(&mut a.outbox),
        [Outbound::Text(
            r#"{"type":"error","detail":"Invalid JSON"}"#.into()
        )]
    );

    assert!(drain(&mut b.outbox).is_empty(), "nothing reached the peer");
    assert_eq!(
        hub.handle_text(&a.handle, &offer(2)),
        Ok(RelayOutcome::Relayed),
        "still connected"
    );
    assert_eq!(texts(&mut b.outbox)[0]["type"], "offer");
}

#[test]
fn a_new_connection_replaces_the_old_one() {
    let hub = hub();
    let mut a1 = join(&hub, 1);
    let mut b = join(&hub, 2);
    drain(&mut a1.outbox);
    drain(&mut b.outbox);
    // Something still queued for the old connection is pre-empted by its close.
    hub.handle_text(&b.handle, &offer(1)).unwrap();

    let mut a2 = join(&hub, 1);
    assert!(a2.replaced);
    assert_ne!(a2.handle.id(), a1.handle.id());
    assert_eq!(
        a1.outbox.try_recv(),
        Some(Outbound::Close {
            code: close::REPLACED,
            reason: close::REASON_REPLACED.into()
        })
    );
    assert_eq!(a1.outbox.try_recv(), None);

    assert_eq!(
        types(&texts(&mut a2.outbox)),
        ["call_metadata", "participants_snapshot"]
    );
    let b_frames = texts(&mut b.outbox);
    assert_eq!(
        types(&b_frames),
        ["user_joined"],
        "user_joined again, no user_left"
    );
    assert_eq!(b_frames[0]["user"]["id"], 1);

    // The old connection's late cleanup does not evict the new one.
    assert!(!hub.leave(&a1.handle));
    assert!(drain(&mut b.outbox).is_empty());
    let ids: Vec<i64> = hub
        .room_participants(ROOM)
        .iter()
        .map(|u| u.id.get())
        .collect();
    assert_eq!(ids, [2, 1]);
    assert_eq!(hub.stats().connections, 2);

    // Relays go to the new connection; the old one can no longer send.
    hub.handle_text(&b.handle, &offer(1)).unwrap();
    assert_eq!(types(&texts(&mut a2.outbox)), ["offer"]);
    assert_eq!(
        hub.handle_text(&a1.handle, &offer(2)),
        Ok(RelayOutcome::SenderNotInRoom)
    );
    assert!(drain(&mut b.outbox).is_empty());

    assert!(hub.leave(&a2.handle));
    assert_eq!(types(&texts(&mut b.outbox)), ["user_left"]);
}

#[test]
fn capacity_is_enforced_but_replacement_is_not_a_new_seat() {
    let hub = Hub::new(HubConfig {
        max_participants: 2,
        ..HubConfig::default()
    });
    let a = hub.join(ROOM, user(1)).unwrap();
    let _b = hub.join(ROOM, user(2)).unwrap();
    assert_eq!(hub.join(ROOM, user(3)).unwrap_err(), JoinError::RoomFull);
    assert_eq!(JoinError::RoomFull.to_string(), "Call is full");
    assert!(
        hub.join(ROOM, user(1)).unwrap().replaced,
        "the same user may reconnect when full"
    );
    assert_eq!(hub.stats().connections, 2);
    assert!(
        hub.join("another-room", user(3)).is_ok(),
        "capacity is per room"
    );

    assert!(!hub.leave(&a.handle), "a was replaced");
    let ids: Vec<i64> = hub
        .room_participants(ROOM)
        .iter()
        .map(|u| u.id.get())
        .collect();
    assert_eq!(ids, [2, 1]);
}

#[test]
fn end_room_sends_call_ended_then_close_and_removes_the_room() {
    let hub = hub();
    let mut joined: Vec<Joined> = (1..=3).map(|id| join(&hub, id)).collect();
    let mut other = hub.join("other", user(9)).unwrap();
    for j in &mut joined {
        drain(&mut j.outbox);
    }
    drain(&mut other.outbox);

    let reason = EndReason::MaxDuration { hours: 12 };
    let removed = hub.end_room(ROOM, reason.clone());
    assert_eq!(
        removed.iter().map(|u| u.id.get()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for j in &mut joined {
        assert_eq!(
            drain(&mut j.outbox),
            [
                Outbound::Text(
                    r#"{"type":"call_ended","reason":"Maximum call duration (12 hours) exceeded"}"#
                        .into()
                ),
                Outbound::Close {
                    code: close::NORMAL,
                    reason: close::REASON_CALL_ENDED.into()
                },
            ]
        );
        assert!(j.outbox.is_done());
        assert!(!hub.leave(&j.handle), "already removed by end_room");
    }
    assert!(
        drain(&mut other.outbox).is_empty(),
        "other rooms are untouched"
    );
    assert_eq!(hub.stats().rooms, 1);
    assert_eq!(hub.stats().connections, 1);
    assert!(hub.room_participants(ROOM).is_empty());
    assert!(hub.end_room("no-such-room", EndReason::Ended).is_empty());

    // The ended room is not opened again: a join (a handshake that read the call just
    // before it ended) is refused with the end's reason.
    assert_eq!(
        hub.join(ROOM, user(1)).err(),
        Some(JoinError::Ended {
            reason: reason.to_string()
        })
    );
    assert_eq!(hub.stats().connections, 1);
    assert_eq!(hub.user_connections(UserId::new(1)), 0);
    // Other rooms are joined as before.
    let mut third = hub.join("third", user(1)).unwrap();
    assert_eq!(types(&texts(&mut third.outbox)), ["call_metadata"]);
}

#[tokio::test]
async fn close_all_closes_everyone_and_refuses_new_joins() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let mut b = hub.join("second", user(2)).unwrap();
    assert_eq!(hub.close_all(close::GOING_AWAY, close::REASON_SHUTDOWN), 2);
    for outbox in [&mut a.outbox, &mut b.outbox] {
        // The close pre-empts the queued call_metadata.
        assert_eq!(
            outbox.recv().await,
            Some(Outbound::Close {
                code: close::GOING_AWAY,
                reason: close::REASON_SHUTDOWN.into()
            })
        );
        assert_eq!(outbox.recv().await, None);
    }
    assert!(stats_zero(&hub));
    assert_eq!(
        hub.join(ROOM, user(3)).unwrap_err(),
        JoinError::ShuttingDown
    );
    assert!(!hub.leave(&a.handle));
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_the_others_keep_receiving() {
    let capacity = 8;
    let hub = Hub::new(HubConfig {
        outbound_capacity: capacity,
        ..HubConfig::default()
    });
    let mut sender = hub.join(ROOM, user(1)).unwrap();
    let mut slow = hub.join(ROOM, user(2)).unwrap();
    let mut fast = hub.join(ROOM, user(3)).unwrap();
    drain(&mut sender.outbox);
    drain(&mut fast.outbox);
    // `slow` never reads: it holds call_metadata, the snapshot and user_joined(3).

    let rounds = 100;
    for i in 0..rounds {
        let to_slow = format!(r#"{{"type":"ice_candidate","payload":{i},"to_user_id":2}}"#);
        assert_eq!(
            hub.handle_text(&sender.handle, &to_slow),
            Ok(RelayOutcome::Relayed)
        );
        let to_fast = format!(r#"{{"type":"ice_candidate","payload":{i},"to_user_id":3}}"#);
        hub.handle_text(&sender.handle, &to_fast).unwrap();
        // The fast peer reads as it goes and gets every message.
        let got = texts(&mut fast.outbox);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["payload"], i);
    }
    let stats = hub.stats();
    assert_eq!(
        stats.messages_dropped, 1,
        "one drop cuts the connection off; nothing more is queued"
    );
    assert_eq!(
        stats.messages_relayed,
        (rounds + capacity as i64 - 3) as u64
    );

    // The slow peer's outbox yields the 1013 close first, then ends.
    assert_eq!(
        slow.outbox.recv().await,
        Some(Outbound::Close {
            code: close::TRY_AGAIN_LATER,
            reason: close::REASON_TOO_SLOW.into()
        })
    );
    assert_eq!(slow.outbox.recv().await, None);

    // The transport then leaves; the others learn it.
    assert!(hub.leave(&slow.handle));
    assert_eq!(types(&texts(&mut fast.outbox)), ["user_left"]);
    assert_eq!(types(&texts(&mut sender.outbox)), ["user_left"]);
}

#[test]
fn a_sender_that_never_reads_its_errors_is_cut_off_too() {
    let hub = Hub::new(HubConfig {
        outbound_capacity: 4,
        ..HubConfig::default()
    });
    let mut flooder = hub.join(ROOM, user(1)).unwrap();
    for _ in 0..10 {
        let _ = hub.handle_text(&flooder.handle, "garbage");
    }
    assert_eq!(hub.stats().messages_dropped, 1);
    assert_eq!(
        flooder.outbox.try_recv(),
        Some(Outbound::Close {
            code: close::TRY_AGAIN_LATER,
            reason: close::REASON_TOO_SLOW.into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_people_each_offer_to_everyone_else_exactly_once() {
    const N: i64 = 30;
    let hub = hub();
    let mut joined: Vec<Joined> = (1..=N).map(|id| join(&hub, id)).collect();
    for j in &mut joined {
        let frames = texts(&mut j.outbox);
        let id = j.handle.user().id.get();
        // metadata, snapshot (unless first) and a user_joined for everyone after them.
        let expected = 1 + usize::from(id > 1) + (N - id) as usize;
        assert_eq!(frames.len(), expected, "user {id}");
    }

    let mut tasks = Vec::new();
    for mut j in joined {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let me = j.handle.user().id.get();
            for to in (1..=N).filter(|&to| to != me) {
                let text = format!(
                    r#"{{"type":"offer","payload":{{"from":{me},"to":{to}}},"to_user_id":{to}}}"#
                );
                assert_eq!(hub.handle_text(&j.handle, &text), Ok(RelayOutcome::Relayed));
            }
            let mut senders = HashSet::new();
            while senders.len() < (N - 1) as usize {
                let Some(Outbound::Text(frame)) = j.outbox.recv().await else {
                    panic!("outbox closed")
                };
                let v: Value = serde_json::from_str(&frame).unwrap();
                assert_eq!(v["type"], "offer");
                assert_eq!(v["payload"]["to"], me);
                let from = v["from_user"]["id"].as_i64().unwrap();
                assert_eq!(v["payload"]["from"], from);
                assert!(senders.insert(from), "duplicate from {from}");
            }
            (j, senders)
        }));
    }
    let mut finished = Vec::new();
    for task in tasks {
        let (j, senders) = task.await.unwrap();
        let me = j.handle.user().id.get();
        assert_eq!(senders, (1..=N).filter(|&u| u != me).collect());
        finished.push(j);
    }
    // Nothing extra arrived once everyone was done.
    for j in &mut finished {
        assert!(drain(&mut j.outbox).is_empty());
    }
    let stats = hub.stats();
    assert_eq!(stats.messages_relayed, (N * (N - 1)) as u64);
    assert_eq!(stats.messages_dropped, 0);
    for j in &finished {
        assert!(hub.leave(&j.handle));
    }
    assert!(stats_zero(&hub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_join_leave_cycles_leave_nothing_behind() {
    let hub = hub();
    // Sequential, in one room and many.
    for i in 0..1_000_i64 {
        let room = format!("room-{}", i % 7);
        let a = hub.join(&room, user(i % 13)).unwrap();
        let b = hub.join(&room, user(1_000 + i % 5)).unwrap();
        assert!(hub.leave(&b.handle));
        assert!(hub.leave(&a.handle));
    }
    assert!(stats_zero(&hub));

    // Concurrent, with replacements of the same users along the way.
    let hub = Arc::new(hub);
    let tasks: Vec<_> = (0..8_i64)
        .map(|t| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..125_i64 {
                    let room = format!("shared-{}", i % 3);
                    // Tasks t and t + 4 share users, so connections replace each other.
                    let base = (t % 4) * 10;
                    let j = hub.join(&room, user(base + i % 2)).unwrap();
                    hub.handle_text(&j.handle, &offer(base + (i + 1) % 2)).ok();
                    hub.leave(&j.handle);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(stats_zero(&hub), "{:?}", hub.stats());
}

#[test]
fn stale_handles_and_unknown_rooms_are_harmless() {
    let hub = hub();
    let a = join(&hub, 1);
    assert!(hub.leave(&a.handle));
    assert_eq!(
        hub.handle_text(&a.handle, &offer(2)),
        Ok(RelayOutcome::SenderNotInRoom)
    );
    assert!(hub.room_participants("nope").is_empty());
    assert!(stats_zero(&hub));
}

#[test]
fn server_message_parse_reads_hub_frames() {
    let hub = hub();
    let mut a = join(&hub, 1);
    let _b = join(&hub, 2);
    for item in drain(&mut a.outbox) {
        let Outbound::Text(frame) = item else {
            panic!()
        };
        assert!(ServerMessage::parse(&frame).is_some(), "{frame}");
    }
}

#[test]
fn a_stale_leave_tells_replaced_from_removed() {
    // A connection cut off (1013) and then replaced never sees its 4409: only the hub can
    // say its stay goes on, on the newer connection.
    let hub = Hub::new(HubConfig {
        outbound_capacity: 4,
        ..HubConfig::default()
    });
    let mut a1 = join(&hub, 1);
    for _ in 0..10 {
        let _ = hub.handle_text(&a1.handle, "garbage");
    }
    assert_eq!(
        a1.outbox.try_recv(),
        Some(Outbound::Close {
            code: close::TRY_AGAIN_LATER,
            reason: close::REASON_TOO_SLOW.into()
        })
    );
    assert!(!a1.handle.is_replaced());
    let a2 = join(&hub, 1);
    assert!(a2.replaced);
    assert!(a1.handle.is_replaced());
    assert!(!hub.leave(&a1.handle));

    // Removed by the end of the call (or a shutdown): stale too, but not replaced.
    let b = join(&hub, 2);
    hub.end_room(ROOM, EndReason::Ended);
    for handle in [&a2.handle, &b.handle] {
        assert!(!hub.leave(handle));
        assert!(!handle.is_replaced());
    }
    let c = hub.join("another", user(3)).unwrap();
    hub.close_all(close::GOING_AWAY, close::REASON_SHUTDOWN);
    assert!(!hub.leave(&c.handle));
    assert!(!c.handle.is_replaced());
}

#[tokio::test]
async fn the_byte_budget_cuts_off_a_peer_long_before_the_frame_bound() {
    let hub = Hub::new(HubConfig {
        outbound_capacity: 10_000,
        outbound_bytes: 64 * 1024,
        max_message_size: 1 << 20,
        ..HubConfig::default()
    });
    let mut sender = hub.join(ROOM, user(1)).unwrap();
    let mut slow = hub.join(ROOM, user(2)).unwrap();
    drain(&mut sender.outbox);
    let blob = "b".repeat(20_000);
    let big = format!(r#"{{"type":"offer","payload":"{blob}","to_user_id":2}}"#);
    let mut relayed = 0;
    while hub.stats().messages_dropped == 0 {
        assert!(relayed < 10, "never cut off by bytes");
        hub.handle_text(&sender.handle, &big).unwrap();
        relayed += 1;
    }
    // 64 KiB hold three of these frames (plus the joiner's first ones); the fourth is one
    // too many.
    assert_eq!(relayed, 4);
    assert!(slow.outbox.queued_bytes() <= 64 * 1024);
    assert_eq!(
        slow.outbox.recv().await,
        Some(Outbound::Close {
            code: close::TRY_AGAIN_LATER,
            reason: close::REASON_TOO_SLOW.into()
        })
    );

    // A single frame larger than the whole budget still reaches a peer that keeps up.
    let hub = Hub::new(HubConfig {
        outbound_bytes: 1024,
        max_message_size: 1 << 20,
        ..HubConfig::default()
    });
    let mut sender = hub.join(ROOM, user(1)).unwrap();
    let mut reader = hub.join(ROOM, user(2)).unwrap();
    drain(&mut sender.outbox);
    drain(&mut reader.outbox);
    for _ in 0..3 {
        hub.handle_text(&sender.handle, &big).unwrap();
        let got = texts(&mut reader.outbox);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["payload"].as_str().unwrap().len(), 20_000);
        assert_eq!(reader.outbox.queued_bytes(), 0);
    }
    assert_eq!(hub.stats().messages_dropped, 0);
}

#[test]
fn one_user_holds_at_most_the_configured_connections_across_rooms() {
    let hub = Hub::new(HubConfig {
        max_connections_per_user: 2,
        ..HubConfig::default()
    });
    let a = hub.join("room-a", user(1)).unwrap();
    let _b = hub.join("room-b", user(1)).unwrap();
    assert_eq!(
        hub.join("room-c", user(1)).unwrap_err(),
        JoinError::TooManyConnections
    );
    // The refused join left nothing behind, and other users are not affected.
    assert!(hub.room_participants("room-c").is_empty());
    let _other = hub.join("room-c", user(2)).unwrap();
    assert_eq!(hub.user_connections(UserId::new(1)), 2);

    // Replacing one's own connection in a room is not one more.
    let a2 = hub.join("room-a", user(1)).unwrap();
    assert!(a2.replaced);
    assert!(!hub.leave(&a.handle));
    assert_eq!(hub.user_connections(UserId::new(1)), 2);

    // Leaving frees a slot; so does the end of a room.
    assert!(hub.leave(&a2.handle));
    assert_eq!(hub.user_connections(UserId::new(1)), 1);
    let _c = hub.join("room-c", user(1)).unwrap();
    hub.end_room("room-b", EndReason::Ended);
    assert_eq!(hub.user_connections(UserId::new(1)), 1);
    let _d = hub.join("room-d", user(1)).unwrap();
    assert_eq!(hub.user_connections(UserId::new(1)), 2);
    hub.close_all(close::GOING_AWAY, close::REASON_SHUTDOWN);
    assert_eq!(hub.user_connections(UserId::new(1)), 0);
}
