//! Criterion benchmarks: initData verification (HMAC and Ed25519) and JWT issue/verify.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use telcall_auth::{
    InitDataVerifier, MemoryTicketStore, SecretString, Sessions, TicketStore, TicketStoreError,
    sign_init_data,
};

const NOW: i64 = 1_795_000_000;
const USER: &str = r#"{"id":279058397,"first_name":"Ada","last_name":"Lovelace","username":"ada","language_code":"en","allows_write_to_pm":true}"#;

fn init_data(c: &mut Criterion) {
    let token = SecretString::from("7342181092:AAFq-test-only-vectors-not-a-real-token");
    let raw = sign_init_data(
        &token,
        &[
            ("query_id", "AAHdF6IQAAAAAN0XohDhrOrc"),
            ("user", USER),
            ("auth_date", "1794999940"),
        ],
    );
    let verifier = InitDataVerifier::new(&token);
    assert!(verifier.verify_at(&raw, NOW).is_ok());
    c.bench_function("initdata_verify_hmac", |b| {
        b.iter(|| verifier.verify_at(black_box(&raw), NOW).unwrap())
    });
    let forged = raw.replace("Ada", "Eve");
    c.bench_function("initdata_reject_forged_hmac", |b| {
        b.iter(|| verifier.verify_at(black_box(&forged), NOW).unwrap_err())
    });
    c.bench_function("initdata_verifier_new", |b| {
        b.iter(|| InitDataVerifier::new(black_box(&token)))
    });
}

fn jwt(c: &mut Criterion) {
    let sessions = Sessions::new(
        &SecretString::from("bench-secret-key-of-32-bytes!!!!"),
        Duration::from_secs(3600),
    )
    .unwrap();
    let token = sessions
        .issue_session(42, Some("0123456789abcdef"))
        .unwrap()
        .token;
    c.bench_function("jwt_verify_session", |b| {
        b.iter(|| sessions.verify_session(black_box(&token)).unwrap())
    });
    c.bench_function("jwt_issue_session", |b| {
        b.iter(|| {
            sessions
                .issue_session(black_box(42), Some("0123456789abcdef"))
                .unwrap()
        })
    });

    // JWT work of the handshake, isolated from the store (which accepts every id here).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("ws_ticket_issue_and_verify", |b| {
        b.iter(|| {
            let t = sessions.issue_ws_ticket(42).unwrap().token;
            rt.block_on(sessions.verify_ws_ticket(black_box(&t), &AcceptAll))
                .unwrap()
        })
    });
}

fn ticket_store(c: &mut Criterion) {
    // Steady state: a simulated clock advancing one second per 10,000 tickets, each ticket
    // living 2 s, so about 20,000 ids are remembered and older ones are purged as we go.
    let store = MemoryTicketStore::new();
    let mut i: u64 = 0;
    c.bench_function("memory_ticket_store_consume", |b| {
        b.iter(|| {
            i += 1;
            let now = i64::try_from(i / 10_000).unwrap();
            let jti = i.to_string();
            assert!(store.consume_at(black_box(&jti), now + 2, now).unwrap());
        })
    });
}

struct AcceptAll;

#[async_trait::async_trait]
impl TicketStore for AcceptAll {
    async fn consume(&self, _jti: &str, _expires_at: i64) -> Result<bool, TicketStoreError> {
        Ok(true)
    }
}

criterion_group!(benches, init_data, jwt, ticket_store);
criterion_main!(benches);
