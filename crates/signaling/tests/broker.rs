//! The Broker seam: the hub publishes every room event through it and takes deliveries from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, OnceLock, Weak};

use telcall_signaling::{
    Broker, Hub, HubConfig, JoinError, Outbound, RelayOutcome, RoomEvent, RoomEventSink,
    SignalingUser, UserId, close,
};

/// A broker that records what the hub publishes, delivers it locally like `LocalBroker`,
/// and pretends user 99 is connected to room "r" on another instance.
#[derive(Default)]
struct RecordingBroker {
    sink: OnceLock<Weak<dyn RoomEventSink>>,
    published: Mutex<Vec<RoomEvent>>,
    opened: Mutex<Vec<String>>,
    closed: Mutex<Vec<String>>,
    /// A room whose end "arrives from another instance" while a join into it is under way
    /// (when the hub asks for the room's remote members, between its checks and its insert).
    end_during_join: Mutex<Option<String>>,
}

impl RecordingBroker {
    /// What another instance would hand this one.
    fn deliver_from_remote(&self, event: &RoomEvent) {
        self.sink
            .get()
            .and_then(Weak::upgrade)
            .unwrap()
            .deliver(event);
    }
}

impl Broker for RecordingBroker {
    fn attach(&self, sink: Weak<dyn RoomEventSink>) {
        assert!(self.sink.set(sink).is_ok());
    }

    fn publish(&self, event: RoomEvent) {
        self.published.lock().unwrap().push(event.clone());
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(&event);
        }
    }

    fn has_remote_member(&self, room: &str, user_id: UserId) -> bool {
        room == "r" && user_id == UserId::new(99)
    }

    fn remote_members(&self, room: &str) -> Vec<SignalingUser> {
        let ending = self.end_during_join.lock().unwrap().take_if(|r| r == room);
        if let Some(room) = ending {
            self.deliver_from_remote(&RoomEvent::EndRoom {
                room: room.into(),
                reason: "ended".into(),
            });
        }
        if room == "m" {
            vec![SignalingUser::with_id(UserId::new(99))]
        } else {
            Vec::new()
        }
    }

    fn room_opened(&self, room: &str) {
        self.opened.lock().unwrap().push(room.to_owned());
    }

    fn room_closed(&self, room: &str) {
        self.closed.lock().unwrap().push(room.to_owned());
    }
}

fn drain_texts(outbox: &mut telcall_signaling::Outbox) -> Vec<String> {
    std::iter::from_fn(|| outbox.try_recv())
        .map(|item| match item {
            Outbound::Text(frame) => frame.to_string(),
            Outbound::Close { code, .. } => format!("close {code}"),
        })
        .collect()
}

#[test]
fn every_room_event_goes_through_the_broker() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    let mut a = hub
        .join("r", SignalingUser::with_id(UserId::new(1)))
        .unwrap();
    let mut b = hub
        .join("r", SignalingUser::with_id(UserId::new(2)))
        .unwrap();
    drain_texts(&mut a.outbox);
    drain_texts(&mut b.outbox);

    hub.handle_text(&a.handle, r#"{"type":"offer","payload":1,"to_user_id":2}"#)
        .unwrap();
    // User 99 is elsewhere: the relay is published for the other instance, not refused.
    assert_eq!(
        hub.handle_text(&a.handle, r#"{"type":"offer","payload":2,"to_user_id":99}"#),
        Ok(RelayOutcome::Relayed)
    );
    assert!(hub.leave(&b.handle));
    hub.end_room("r", "ended");

    let published = broker.published.lock().unwrap().clone();
    let kinds: Vec<String> = published
        .iter()
        .map(|e| match e {
            RoomEvent::ToUser { user_id, .. } => format!("to {user_id}"),
            RoomEvent::Broadcast { except_user, .. } => {
                format!("broadcast except {:?}", except_user.map(UserId::get))
            }
            RoomEvent::EndRoom { reason, .. } => format!("end {reason}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "broadcast except Some(1)",
            "broadcast except Some(2)",
            "to 2",
            "to 99",
            "broadcast except Some(2)",
            "end ended"
        ]
    );
    assert!(published.iter().all(|e| e.room() == "r"));
    assert_eq!(*broker.opened.lock().unwrap(), ["r"]);
    assert_eq!(*broker.closed.lock().unwrap(), ["r"]);

    // The events are plain data that a networked broker can ship as JSON.
    for event in &published {
        let json = serde_json::to_string(event).unwrap();
        let back: RoomEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, event);
    }
}

#[test]
fn events_from_other_instances_reach_local_connections() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    let mut a = hub
        .join("r", SignalingUser::with_id(UserId::new(1)))
        .unwrap();
    drain_texts(&mut a.outbox);

    broker.deliver_from_remote(&RoomEvent::ToUser {
        room: "r".into(),
        user_id: UserId::new(1),
        frame: "{\"x\":1}".into(),
    });
    broker.deliver_from_remote(&RoomEvent::ToUser {
        room: "r".into(),
        user_id: UserId::new(5),
        frame: "{\"x\":2}".into(),
    });
    broker.deliver_from_remote(&RoomEvent::ToUser {
        room: "q".into(),
        user_id: UserId::new(1),
        frame: "{\"x\":3}".into(),
    });
    broker.deliver_from_remote(&RoomEvent::Broadcast {
        room: "r".into(),
        except_user: None,
        frame: "{\"x\":4}".into(),
    });
    broker.deliver_from_remote(&RoomEvent::Broadcast {
        room: "r".into(),
        except_user: Some(UserId::new(1)),
        frame: "{\"x\":5}".into(),
    });
    broker.deliver_from_remote(&RoomEvent::EndRoom {
        room: "r".into(),
        reason: "expired".into(),
    });
    assert_eq!(
        drain_texts(&mut a.outbox),
        [
            "{\"x\":1}",
            "{\"x\":4}",
            r#"{"type":"call_ended","reason":"expired"}"#,
            &format!("close {}", close::NORMAL)
        ]
    );
    // The local roster clears when the transport leaves.
    assert!(hub.leave(&a.handle));
    assert_eq!(hub.stats().rooms, 0);
}

#[test]
fn remote_members_are_in_the_snapshot_and_a_replacement_elsewhere_closes_with_4409() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    let mut a = hub
        .join("m", SignalingUser::with_id(UserId::new(1)))
        .unwrap();
    let first = drain_texts(&mut a.outbox);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(
        first[1].contains(r#""participants":[{"id":99"#),
        "{first:?}"
    );
    let mut b = hub
        .join("m", SignalingUser::with_id(UserId::new(2)))
        .unwrap();
    let snapshot = drain_texts(&mut b.outbox);
    assert!(snapshot[1].contains(r#""id":1"#) && snapshot[1].contains(r#""id":99"#));
    drain_texts(&mut a.outbox);

    // User 1 connected on another instance: here, their connection is replaced, and user 2
    // hears nothing (the other instance announces the new connection).
    broker
        .sink
        .get()
        .and_then(Weak::upgrade)
        .unwrap()
        .replaced_elsewhere("m", UserId::new(1));
    assert_eq!(
        a.outbox.try_recv(),
        Some(Outbound::Close {
            code: close::REPLACED,
            reason: close::REASON_REPLACED.to_owned()
        })
    );
    assert!(a.handle.is_replaced());
    assert!(
        !hub.leave(&a.handle),
        "a replaced connection has no leave of its own"
    );
    assert!(drain_texts(&mut b.outbox).is_empty());
    assert_eq!(
        hub.room_participants("m"),
        vec![SignalingUser::with_id(UserId::new(2))]
    );
    assert_eq!(hub.stats().connections, 1);
    // Unknown rooms and users are ignored.
    let sink = broker.sink.get().and_then(Weak::upgrade).unwrap();
    sink.replaced_elsewhere("m", UserId::new(5));
    sink.replaced_elsewhere("nowhere", UserId::new(2));
    assert_eq!(hub.stats().connections, 1);
}

#[test]
fn an_end_delivered_from_another_instance_refuses_later_joins() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    // The call ended on another instance; this one had nobody in it.
    broker.deliver_from_remote(&RoomEvent::EndRoom {
        room: "gone".into(),
        reason: "expired".into(),
    });
    assert_eq!(
        hub.join("gone", SignalingUser::with_id(UserId::new(1)))
            .err(),
        Some(JoinError::Ended {
            reason: "expired".into()
        })
    );
    assert_eq!((hub.stats().rooms, hub.stats().connections), (0, 0));
    assert_eq!(hub.user_connections(UserId::new(1)), 0);
    assert!(broker.opened.lock().unwrap().is_empty(), "no room opened");
}

#[test]
fn an_end_delivered_while_a_join_is_under_way_ends_that_connection() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    *broker.end_during_join.lock().unwrap() = Some("racing".into());
    let mut joined = hub
        .join("racing", SignalingUser::with_id(UserId::new(1)))
        .unwrap();
    // It ends as the room's members did: call_ended, then the normal close.
    let texts = drain_texts(&mut joined.outbox);
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts[0].contains("call_metadata"), "{texts:?}");
    assert_eq!(texts[1], r#"{"type":"call_ended","reason":"ended"}"#);
    assert_eq!(texts[2], format!("close {}", close::NORMAL));
    // Its transport then leaves, and the room is gone for good.
    hub.leave(&joined.handle);
    assert_eq!((hub.stats().rooms, hub.stats().connections), (0, 0));
    assert!(matches!(
        hub.join("racing", SignalingUser::with_id(UserId::new(2))),
        Err(JoinError::Ended { .. })
    ));
}
