//! Criterion benchmarks of the signaling relay path: parse, relay between two peers, fan-out in 30.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use telcall_signaling::{
    Broker, Hub, HubConfig, Joined, LocalBroker, RoomEvent, ServerMessage, SignalingUser, UserId,
    parse_client_message,
};

const ICE: &str = r#"{"type":"ice_candidate","payload":{"candidate":"candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sXBk network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"sXBk"},"to_user_id":2}"#;

fn user(id: i64) -> SignalingUser {
    SignalingUser {
        id: UserId::new(id),
        username: Some(format!("user_{id}")),
        first_name: Some("Ada".into()),
        last_name: Some("Lovelace".into()),
        photo_url: Some(format!("https://t.me/i/userpic/320/{id}.jpg")),
    }
}

fn drain(joined: &mut Joined) {
    while joined.outbox.try_recv().is_some() {}
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse_ice_candidate", |b| {
        b.iter(|| parse_client_message(black_box(ICE), 65_536).unwrap())
    });
}

fn relay_two_peers(c: &mut Criterion) {
    let hub = Hub::new(HubConfig::default());
    let mut a = hub.join("bench", user(1)).unwrap();
    let mut b = hub.join("bench", user(2)).unwrap();
    drain(&mut a);
    drain(&mut b);
    c.bench_function("relay_ice_candidate_2_peers", |bench| {
        bench.iter(|| {
            hub.handle_text(&a.handle, black_box(ICE)).unwrap();
            black_box(b.outbox.try_recv().unwrap());
        })
    });
}

fn fan_out_30(c: &mut Criterion) {
    const N: i64 = 30;
    let broker = Arc::new(LocalBroker::new());
    let hub = Hub::with_broker(HubConfig::default(), broker.clone());
    let mut joined: Vec<Joined> = (1..=N)
        .map(|id| hub.join("bench", user(id)).unwrap())
        .collect();
    joined.iter_mut().for_each(drain);

    let mut group = c.benchmark_group("fan_out_30");
    group.throughput(Throughput::Elements((N - 1) as u64));
    // One broadcast (e.g. user_joined) to the 29 others, and each of them reading it.
    group.bench_function("broadcast_to_29", |bench| {
        let frame = ServerMessage::UserJoined { user: user(1) }.to_frame();
        bench.iter(|| {
            broker.publish(RoomEvent::Broadcast {
                room: "bench".into(),
                except_user: Some(UserId::new(1)),
                frame: frame.clone(),
            });
            for j in &mut joined[1..] {
                black_box(j.outbox.try_recv().unwrap());
            }
        })
    });
    // One participant sending its offer to each of the 29 others (parse + relay each).
    let offers: Vec<String> = (2..=N)
        .map(|to| format!(r#"{{"type":"offer","payload":{{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}},"to_user_id":{to}}}"#))
        .collect();
    group.bench_function("offer_to_each_of_29", |bench| {
        bench.iter(|| {
            for text in &offers {
                hub.handle_text(&joined[0].handle, text).unwrap();
            }
            for j in &mut joined[1..] {
                black_box(j.outbox.try_recv().unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse, relay_two_peers, fan_out_30);
criterion_main!(benches);
