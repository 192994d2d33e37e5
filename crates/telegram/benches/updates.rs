//! Criterion benchmarks of the bot service handling updates end to end: a real SQLite
//! database (built by the migrations) and a local HTTP server playing the Bot API, so one
//! iteration is what the webhook does per update after the secret check. A bare round trip
//! to the same Bot API stand-in is measured beside them as the reference.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use serde_json::json;
use telcall_domain::{
    CallCode, CallEvents, CallPolicy, CallService, EndReason, Repositories, SystemClock,
    TelegramAccount, UserService,
};
use telcall_telegram::{Bot, BotApi, BotConfig, MiniAppLinks, Outcome, WebhookSecret};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "123456:bench-token";

/// No rooms here: ended calls have nobody to tell.
struct NoRooms;

impl CallEvents for NoRooms {
    fn call_ended(&self, _code: &CallCode, _reason: EndReason) {}

    fn has_ended(&self, _code: &CallCode) -> bool {
        false
    }
}

struct Fixture {
    bot: Bot,
    code: String,
    _dir: tempfile::TempDir,
    api: MockServer,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let store = telcall_persistence::SeaStore::connect(&url, &Default::default())
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    let repo: Arc<dyn Repositories> = Arc::new(store);
    let clock = Arc::new(SystemClock);
    let users = UserService::new(repo.clone(), clock.clone());
    let calls = CallService::new(repo, clock, Arc::new(NoRooms), CallPolicy::default());
    let owner = users
        .sign_in(&TelegramAccount {
            id: 1,
            first_name: Some("Owner".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let call = calls.create_call(owner.id, None, true).await.unwrap();
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .mount(&api)
        .await;
    let bot = Bot::new(
        BotApi::new(&api.uri(), SecretString::from(TOKEN)).unwrap(),
        users,
        calls,
        BotConfig {
            links: MiniAppLinks::new("bench_bot", None),
            support_contact: None,
        },
    );
    Fixture {
        bot,
        code: call.code.as_str().to_owned(),
        _dir: dir,
        api,
    }
}

fn updates(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(fixture());
    let next = AtomicI64::new(1);
    let mut group = c.benchmark_group("bot_update");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inline_share_active_call", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let update = json!({"update_id": id, "inline_query": {"id": format!("q{id}"),
                "from": {"id": 7, "first_name": "Ada", "language_code": "en"},
                "query": format!("call_{}", f.code)}});
            assert_eq!(
                f.bot.handle_value(&update).await.unwrap(),
                Outcome::SharedCall
            );
        });
    });
    group.bench_function("start_signs_in", |b| {
        b.to_async(&rt).iter(|| async {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let update = json!({"update_id": id, "message": {"message_id": 1,
                "from": {"id": 1000 + id % 500, "first_name": "Ada", "username": "ada_lovelace"},
                "chat": {"id": 1000 + id % 500, "type": "private"}, "text": "/start"}});
            assert_eq!(
                f.bot.handle_value(&update).await.unwrap(),
                Outcome::Welcomed
            );
        });
    });
    group.bench_function("duplicate_ignored", |b| {
        // A fresh id, seen once here: the bounded recent-ids set may have forgotten older ones.
        let id = next.fetch_add(1, Ordering::Relaxed);
        let update = json!({"update_id": id, "message": {"text": "/help"}});
        assert_eq!(
            rt.block_on(f.bot.handle_value(&update)).unwrap(),
            Outcome::Ignored
        );
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                f.bot.handle_value(&update).await.unwrap(),
                Outcome::Duplicate
            );
        });
    });
    // The reference: one bare POST to the same local Bot API stand-in, the round trip that
    // a shared call or a welcome includes once. A handled update costs this plus the bot's own
    // work (parsing, a database read or upsert, building the answer).
    let client = reqwest::Client::new();
    let answer_url = format!("{}/bot{TOKEN}/answerInlineQuery", f.api.uri());
    group.bench_function("reference_bot_api_round_trip", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = client
                .post(&answer_url)
                .json(&json!({"inline_query_id": "q", "results": []}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            resp.bytes().await.unwrap();
        });
    });
    group.finish();

    let secret = WebhookSecret::derive(&SecretString::from(TOKEN));
    let presented = secrecy::ExposeSecret::expose_secret(secret.expose()).to_owned();
    c.bench_function("webhook_secret_check", |b| {
        b.iter(|| assert!(secret.verify(Some(std::hint::black_box(presented.as_bytes())))));
    });
}

criterion_group!(benches, updates);
criterion_main!(benches);
