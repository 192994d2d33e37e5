//! The Telegram bot through `POST /api/telegram/webhook` (and the polling mode), with the
//! Bot API played by wiremock: the secret check, inline "Share" answers for active, ended,
//! expired and unknown calls, `/start` signing the sender in exactly like the Mini App,
//! `/help`, both languages, re-deliveries, concurrency, bad input and a Bot API outage.

use std::time::Duration;
use telcall_domain::CallCode;

use serde_json::{Value, json};
use telcall_telegram::WebhookSecret;
use telcall_telegram::texts::{self, Lang};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{BOT_TOKEN, TestApp, TestAppBuilder, session_cookie};

const SECRET: &str = "test-webhook-secret_0123";
const WEBHOOK: &str = "/api/telegram/webhook";
const HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// A Bot API that accepts every method.
async fn bot_api() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .mount(&server)
        .await;
    server
}

fn builder(api: &MockServer) -> TestAppBuilder {
    TestAppBuilder::default()
        .env("TELEGRAM_API_BASE", &api.uri())
        .env("BOT_WEBHOOK_SECRET", SECRET)
}

async fn post_update(app: &TestApp, secret: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.client.post(app.url(WEBHOOK)).json(body);
    if let Some(s) = secret {
        req = req.header(HEADER, s);
    }
    req.send().await.unwrap()
}

/// Posts an update with the right secret and checks the 200 `{"ok": true}`.
async fn deliver(app: &TestApp, body: &Value) {
    let resp = post_update(app, Some(SECRET), body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"ok": true}));
}

/// Bodies the Bot API received for `method`, in order.
async fn sent(api: &MockServer, bot_method: &str) -> Vec<Value> {
    let suffix = format!("/bot{BOT_TOKEN}/{bot_method}");
    api.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == suffix)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn all_sent(api: &MockServer) -> usize {
    api.received_requests().await.unwrap().len()
}

fn inline(update_id: i64, from: Value, query: &str) -> Value {
    json!({
        "update_id": update_id,
        "inline_query": {"id": format!("q{update_id}"), "from": from, "query": query, "offset": ""}
    })
}

fn message(update_id: i64, from: Value, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": 10,
            "date": 1_700_000_000,
            "from": from,
            "chat": {"id": from["id"], "type": "private", "first_name": from["first_name"]},
            "text": text
        }
    })
}

fn ada(lang: &str) -> Value {
    json!({"id": 4242, "is_bot": false, "first_name": "Ada", "username": "ada_lovelace", "language_code": lang})
}

fn share_answer(query_id: &str, lang: Lang, caller: &str, code: &str, join_url: &str) -> Value {
    json!({
        "inline_query_id": query_id,
        "results": [{
            "type": "article",
            "id": code,
            "title": texts::share_title(lang, caller),
            "description": texts::share_description(lang, true),
            "input_message_content": {"message_text": texts::share_message(lang, caller, true)},
            "reply_markup": {"inline_keyboard": [[{"text": texts::join_button(lang), "url": join_url}]]}
        }],
        "is_personal": true,
        "cache_time": 10
    })
}

fn empty_answer(query_id: &str) -> Value {
    json!({"inline_query_id": query_id, "results": [], "is_personal": true, "cache_time": 10})
}

/// Creates a video call organised by a fresh user; returns its code.
async fn active_call(app: &TestApp) -> String {
    let owner = app.sign_in(9001, "Owner").await;
    let resp = app
        .post("/api/calls/", &owner, &json!({"is_video_enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let call: Value = resp.json().await.unwrap();
    call["call_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sharing_an_active_call_answers_one_article_with_the_join_button() {
    for mini_app in [None, Some("callapp")] {
        let api = bot_api().await;
        let mut b = builder(&api);
        if let Some(name) = mini_app {
            b = b.env("MINI_APP_NAME", name);
        }
        let app = b.spawn().await;
        let code = active_call(&app).await;
        deliver(&app, &inline(1, ada("en"), &format!("call_{code}"))).await;
        let join_url = match mini_app {
            None => format!("https://t.me/telcall_test_bot?startapp={code}"),
            Some(name) => format!("https://t.me/telcall_test_bot/{name}?startapp={code}"),
        };
        assert_eq!(
            sent(&api, "answerInlineQuery").await,
            vec![share_answer("q1", Lang::En, "Ada", &code, &join_url)]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn sharing_in_russian_and_naming_the_caller_by_username_without_a_first_name() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let code = active_call(&app).await;
    let from = json!({"id": 5, "is_bot": false, "first_name": "", "username": "ivan_p", "language_code": "ru"});
    deliver(&app, &inline(2, from, &format!("  call_{code} "))).await;
    let join_url = format!("https://t.me/telcall_test_bot?startapp={code}");
    let answers = sent(&api, "answerInlineQuery").await;
    assert_eq!(
        answers,
        vec![share_answer("q2", Lang::Ru, "@ivan_p", &code, &join_url)]
    );
    assert!(
        answers[0]["results"][0]["title"]
            .as_str()
            .unwrap()
            .contains("приглашает")
    );
}

#[tokio::test]
async fn ended_expired_unknown_and_foreign_queries_get_an_empty_answer() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let owner = app.sign_in(9100, "Owner").await;
    let ended = app.create_call(&owner).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .post(&format!("/api/calls/{ended}/end"), &owner, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let expired = app.create_call(&owner).await["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock.advance(chrono::Duration::hours(25));

    let queries = [
        format!("call_{ended}"),
        format!("call_{expired}"),
        "call_NoSuchCallCode1234".to_owned(),
        "hello".to_owned(),
        String::new(),
        "call_".to_owned(),
        "call_../../etc/passwd".to_owned(),
        "call_' OR 1=1 --".to_owned(),
    ];
    for (i, q) in queries.iter().enumerate() {
        let id = 10 + i64::try_from(i).unwrap();
        deliver(&app, &inline(id, ada("en"), q)).await;
    }
    let answers = sent(&api, "answerInlineQuery").await;
    let expected: Vec<Value> = (0..queries.len())
        .map(|i| empty_answer(&format!("q{}", 10 + i)))
        .collect();
    assert_eq!(answers, expected);
    // Reading the expired call through the bot marked it expired, as the API does.
    let stored = app
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&expired))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, telcall_domain::CallStatus::Expired);
}

#[tokio::test]
async fn start_signs_the_sender_in_like_the_mini_app_and_opens_the_app() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let from = json!({"id": 777_000_111, "is_bot": false, "first_name": "Grace", "last_name": "Hopper",
                      "username": "grace_h", "language_code": "en"});
    deliver(&app, &message(1, from.clone(), "/start")).await;

    let created = app
        .state
        .repo
        .find_user_by_telegram_id(777_000_111)
        .await
        .unwrap()
        .expect("/start created the user");
    assert_eq!(created.username.as_deref(), Some("grace_h"));
    assert_eq!(created.first_name.as_deref(), Some("Grace"));
    assert_eq!(created.last_name.as_deref(), Some("Hopper"));
    assert_eq!(
        sent(&api, "sendMessage").await,
        vec![json!({
            "chat_id": 777_000_111,
            "text": texts::welcome(Lang::En),
            "reply_markup": {"inline_keyboard": [[{"text": "Open the app", "url": "https://t.me/telcall_test_bot?startapp"}]]}
        })]
    );

    // A later sign-in in the Mini App finds the same user (same internal id).
    let signed_in = app
        .sign_in_as(
            &json!({"id": 777_000_111, "first_name": "Grace", "username": "grace_h",
                            "photo_url": "https://t.me/i/userpic/320/grace.jpg"}),
        )
        .await;
    assert_eq!(signed_in.user_id(), created.id);

    // /start again keeps the photo the sign-in stored (updates carry none) and applies the
    // sign-in's username rule: an invalid username is stored as null.
    let renamed = json!({"id": 777_000_111, "is_bot": false, "first_name": "G.", "username": "no"});
    deliver(&app, &message(2, renamed, "/start")).await;
    let user = app.state.repo.find_user(created.id).await.unwrap().unwrap();
    assert_eq!(user.first_name.as_deref(), Some("G."));
    assert_eq!(user.username, None);
    assert_eq!(
        user.photo_url.as_deref(),
        Some("https://t.me/i/userpic/320/grace.jpg")
    );
}

#[tokio::test]
async fn start_with_a_call_code_offers_that_call_and_welcomes_in_russian() {
    let api = bot_api().await;
    let app = builder(&api).env("MINI_APP_NAME", "callapp").spawn().await;
    let code = active_call(&app).await;
    let from = json!({"id": 31, "is_bot": false, "first_name": "Пётр", "language_code": "ru"});
    deliver(&app, &message(1, from.clone(), &format!("/start {code}"))).await;
    deliver(&app, &message(2, from.clone(), "/start NoSuchCall123")).await;
    deliver(&app, &message(3, from, "/start@telcall_test_bot")).await;
    assert_eq!(
        sent(&api, "sendMessage").await,
        vec![
            json!({
                "chat_id": 31,
                "text": texts::welcome_to_call(Lang::Ru),
                "reply_markup": {"inline_keyboard": [[{"text": "Присоединиться",
                    "url": format!("https://t.me/telcall_test_bot/callapp?startapp={code}")}]]}
            }),
            json!({
                "chat_id": 31,
                "text": texts::welcome(Lang::Ru),
                "reply_markup": {"inline_keyboard": [[{"text": "Открыть приложение",
                    "url": "https://t.me/telcall_test_bot/callapp"}]]}
            }),
            json!({
                "chat_id": 31,
                "text": texts::welcome(Lang::Ru),
                "reply_markup": {"inline_keyboard": [[{"text": "Открыть приложение",
                    "url": "https://t.me/telcall_test_bot/callapp"}]]}
            }),
        ]
    );
}

#[tokio::test]
async fn help_names_the_support_contact_in_the_senders_language() {
    let api = bot_api().await;
    let app = builder(&api)
        .env("BOT_SUPPORT_CONTACT", "@telcall_support")
        .spawn()
        .await;
    deliver(&app, &message(1, ada("en"), "/help")).await;
    deliver(&app, &message(2, ada("ru"), "/help")).await;
    let help = sent(&api, "sendMessage").await;
    assert_eq!(
        help,
        vec![
            json!({"chat_id": 4242, "text": texts::help(Lang::En, Some("@telcall_support"))}),
            json!({"chat_id": 4242, "text": texts::help(Lang::Ru, Some("@telcall_support"))}),
        ]
    );
    assert!(
        help[0]["text"]
            .as_str()
            .unwrap()
            .contains("@telcall_support")
    );
    assert!(help[1]["text"].as_str().unwrap().contains("Команды"));
    // /help signs nobody in.
    assert!(
        app.state
            .repo
            .find_user_by_telegram_id(4242)
            .await
            .unwrap()
            .is_none()
    );

    // Without a contact the text stays neutral.
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    deliver(&app, &message(1, ada("en"), "/help")).await;
    let text = sent(&api, "sendMessage").await[0]["text"].clone();
    assert_eq!(text, json!(texts::help(Lang::En, None)));
}

#[tokio::test]
async fn the_secret_is_required_and_nothing_is_done_without_it() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let start = message(1, ada("en"), "/start");
    for secret in [
        None,
        Some("wrong"),
        Some(""),
        Some("test-webhook-secret_012"),
    ] {
        let resp = post_update(&app, secret, &start).await;
        assert_eq!(resp.status(), 401, "{secret:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["detail"], "Invalid webhook secret");
    }
    assert_eq!(all_sent(&api).await, 0);
    assert!(
        app.state
            .repo
            .find_user_by_telegram_id(4242)
            .await
            .unwrap()
            .is_none()
    );
    // The refused deliveries did not use up the update id.
    deliver(&app, &start).await;
    assert_eq!(sent(&api, "sendMessage").await.len(), 1);
}

#[tokio::test]
async fn without_a_configured_secret_the_one_derived_from_the_token_is_required() {
    let api = bot_api().await;
    let app = TestAppBuilder::default()
        .env("TELEGRAM_API_BASE", &api.uri())
        .spawn()
        .await;
    let derived = WebhookSecret::derive(&secrecy::SecretString::from(BOT_TOKEN.to_owned()));
    let derived = secrecy::ExposeSecret::expose_secret(derived.expose()).to_owned();
    assert!(
        derived
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    );
    let update = message(1, ada("en"), "/help");
    assert_eq!(post_update(&app, None, &update).await.status(), 401);
    assert_eq!(post_update(&app, Some(SECRET), &update).await.status(), 401);
    assert_eq!(
        post_update(&app, Some(BOT_TOKEN), &update).await.status(),
        401
    );
    assert_eq!(all_sent(&api).await, 0);
    assert_eq!(
        post_update(&app, Some(&derived), &update).await.status(),
        200
    );
    assert_eq!(sent(&api, "sendMessage").await.len(), 1);
}

#[tokio::test]
async fn a_redelivered_update_is_handled_once() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let update = message(77, ada("en"), "/help");
    for _ in 0..3 {
        deliver(&app, &update).await;
    }
    deliver(&app, &message(78, ada("en"), "/help")).await;
    assert_eq!(sent(&api, "sendMessage").await.len(), 2);
}

#[tokio::test]
async fn fifty_concurrent_updates_are_all_answered() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let code = active_call(&app).await;
    let mut tasks = Vec::new();
    for i in 0..50i64 {
        let client = app.client.clone();
        let url = app.url(WEBHOOK);
        let update = if i % 2 == 0 {
            inline(
                1000 + i,
                json!({"id": 50_000 + i, "first_name": format!("U{i}")}),
                &format!("call_{code}"),
            )
        } else {
            message(
                1000 + i,
                json!({"id": 50_000 + i, "first_name": format!("U{i}")}),
                "/start",
            )
        };
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header(HEADER, SECRET)
                .json(&update)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let answers = sent(&api, "answerInlineQuery").await;
    assert_eq!(answers.len(), 25);
    assert!(
        answers
            .iter()
            .all(|a| a["results"].as_array().unwrap().len() == 1)
    );
    assert_eq!(sent(&api, "sendMessage").await.len(), 25);
    for i in (1..50i64).step_by(2) {
        assert!(
            app.state
                .repo
                .find_user_by_telegram_id(50_000 + i)
                .await
                .unwrap()
                .is_some()
        );
    }
}

#[tokio::test]
async fn bad_input_is_answered_without_5xx_and_without_bot_api_calls() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    // Not JSON at all: 400.
    for body in ["", "not json", "{\"update_id\": 1,", "\u{0}\u{1}"] {
        let resp = app
            .client
            .post(app.url(WEBHOOK))
            .header(HEADER, SECRET)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body:?}");
    }
    // JSON that is no update we answer: 200, nothing done.
    let long_query = "x".repeat(10 * 1024);
    let bodies = [
        json!([1, 2, 3]),
        json!("update"),
        json!(null),
        json!({}),
        json!({"update_id": "1"}),
        json!({"update_id": 2, "edited_message": {"text": "/start"}}),
        json!({"update_id": 3, "callback_query": {"id": "x"}}),
        json!({"update_id": 4, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}}}),
        json!({"update_id": 5, "message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "text": "/start"}}),
        message(6, ada("en"), "hello there"),
        json!({"update_id": 7, "message": {"from": "nobody", "chat": 5, "text": "/start"}}),
        json!({"update_id": 8, "inline_query": {"id": "q", "from": {"id": 1}, "query": long_query}}),
        json!({"update_id": 9, "message": {"message_id": 1, "from": {"id": 9, "is_bot": true, "first_name": "B"},
                                            "chat": {"id": 9, "type": "private"}, "text": "/start"}}),
        json!({"update_id": 10, "message": {"message_id": 1, "from": {"id": 10, "first_name": "G"},
                                             "chat": {"id": -100, "type": "group"}, "text": "/start"}}),
        json!({"update_id": 11, "message": {"message_id": 1, "from": {"id": 11, "first_name": "G"},
                                             "chat": {"id": 11, "type": "private"}, "text": "/start@other_bot"}}),
    ];
    for body in &bodies {
        deliver(&app, body).await;
    }
    assert_eq!(all_sent(&api).await, 0);
    for id in [1, 9, 10, 11] {
        assert!(
            app.state
                .repo
                .find_user_by_telegram_id(id)
                .await
                .unwrap()
                .is_none()
        );
    }
    // A huge first name is cut in the article title.
    let code = active_call(&app).await;
    let from = json!({"id": 12, "first_name": "N".repeat(5000)});
    deliver(&app, &inline(12, from, &format!("call_{code}"))).await;
    let answer = &sent(&api, "answerInlineQuery").await[0];
    let title = answer["results"][0]["title"].as_str().unwrap();
    assert!(title.chars().count() < 100, "{title}");
    assert!(title.contains('…'));
    // Over the 1 MiB limit: refused before parsing.
    let big = json!({"update_id": 13, "message": {"text": "y".repeat(1_100_000)}});
    let resp = post_update(&app, Some(SECRET), &big).await;
    assert_eq!(resp.status(), 413);
    // A body between the global JSON limit and 1 MiB is still accepted.
    let medium = json!({"update_id": 14, "message": {"text": "y".repeat(200_000)}});
    deliver(&app, &medium).await;
}

#[tokio::test]
async fn bot_api_failures_still_answer_200() {
    // Nothing listens on the default test TELEGRAM_API_BASE.
    let app = TestAppBuilder::default()
        .env("BOT_WEBHOOK_SECRET", SECRET)
        .spawn()
        .await;
    deliver(&app, &message(1, ada("en"), "/start")).await;
    // The user was signed in even though the welcome could not be sent.
    assert!(
        app.state
            .repo
            .find_user_by_telegram_id(4242)
            .await
            .unwrap()
            .is_some()
    );

    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&api)
        .await;
    let app = builder(&api).spawn().await;
    deliver(&app, &message(1, ada("en"), "/help")).await;
    deliver(&app, &inline(2, ada("en"), "hello")).await;
    assert_eq!(all_sent(&api).await, 2);
}

#[tokio::test]
async fn verified_updates_are_not_rate_limited_but_refused_ones_are() {
    let api = bot_api().await;
    let app = builder(&api)
        .env("RATE_LIMIT_DEFAULT_PER_MINUTE", "5")
        .spawn()
        .await;
    for i in 0..30 {
        deliver(&app, &json!({"update_id": i})).await;
    }
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(
            post_update(&app, Some("wrong"), &json!({"update_id": 100 + i}))
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&401), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn the_webhook_is_exempt_from_the_csrf_origin_check() {
    let api = bot_api().await;
    let app = builder(&api).spawn().await;
    let user = app.sign_in(1, "Ada").await;
    let resp = app
        .client
        .post(app.url(WEBHOOK))
        .header(HEADER, SECRET)
        .header("Origin", "https://evil.example.com")
        .header("Cookie", session_cookie(&user.token))
        .json(&message(1, ada("en"), "/help"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Other writes still are checked.
    let resp = app
        .client
        .post(app.url("/api/calls/"))
        .header("Origin", "https://evil.example.com")
        .header("Cookie", session_cookie(&user.token))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// Waits (bounded) until `check` holds.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached in time");
}

#[tokio::test]
async fn the_webhook_is_registered_in_the_background_with_the_secret() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/setWebhook")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ok": true, "result": true, "description": "Webhook was set"}),
            ),
        )
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getWebhookInfo")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {
            "url": "https://calls.example.com/api/telegram/webhook", "pending_update_count": 3,
            "last_error_message": "Connection refused"}})),
        )
        .expect(1)
        .mount(&api)
        .await;
    let app = builder(&api)
        .env(
            "BOT_WEBHOOK_URL",
            "https://calls.example.com/api/telegram/webhook",
        )
        .spawn()
        .await;
    eventually(|| async { !sent(&api, "getWebhookInfo").await.is_empty() }).await;
    assert_eq!(
        sent(&api, "setWebhook").await,
        vec![json!({
            "url": "https://calls.example.com/api/telegram/webhook",
            "secret_token": SECRET,
            "allowed_updates": ["message", "inline_query"]
        })]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_bot_api_never_holds_up_start_up() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": true}))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&api)
        .await;
    let app = builder(&api)
        .env(
            "BOT_WEBHOOK_URL",
            "https://calls.example.com/api/telegram/webhook",
        )
        .spawn()
        .await;
    // The app serves while setWebhook hangs, and stops without waiting for it.
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually(|| async { !sent(&api, "setWebhook").await.is_empty() }).await;
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("shutdown is not held up by a hanging Bot API");
}

#[tokio::test]
async fn polling_feeds_updates_to_the_bot_and_stops_on_shutdown() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/deleteWebhook")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/sendMessage")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": {}})))
        .mount(&api)
        .await;
    // First poll: two updates. Later polls: nothing, after a long-poll pause.
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getUpdates")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": [
                message(500, ada("en"), "/start"),
                message(501, ada("ru"), "/help"),
            ]})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getUpdates")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": []}))
                .set_delay(Duration::from_millis(300)),
        )
        .with_priority(2)
        .mount(&api)
        .await;
    let app = builder(&api).env("BOT_UPDATES", "polling").spawn().await;
    eventually(|| async { sent(&api, "sendMessage").await.len() == 2 }).await;
    // The next poll starts once both updates are handled, with the offset past them.
    eventually(|| async { sent(&api, "getUpdates").await.len() >= 2 }).await;
    let polls = sent(&api, "getUpdates").await;
    assert!(polls.len() >= 2, "{polls:?}");
    assert_eq!(polls[0]["offset"], 0);
    assert_eq!(polls[1]["offset"], 502);
    assert_eq!(
        polls[0]["allowed_updates"],
        json!(["message", "inline_query"])
    );
    assert_eq!(sent(&api, "deleteWebhook").await.len(), 1);
    let messages = sent(&api, "sendMessage").await;
    assert_eq!(messages[0]["text"], texts::welcome(Lang::En));
    assert_eq!(messages[1]["text"], json!(texts::help(Lang::Ru, None)));
    assert!(
        app.state
            .repo
            .find_user_by_telegram_id(4242)
            .await
            .unwrap()
            .is_some()
    );

    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("polling stops on shutdown");
    let after = all_sent(&api).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        all_sent(&api).await,
        after,
        "no Bot API call after shutdown"
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn with_several_instances_one_polls_and_another_takes_over_when_it_stops() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/deleteWebhook")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})))
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{BOT_TOKEN}/getUpdates")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": []}))
                .set_delay(Duration::from_millis(200)),
        )
        .mount(&api)
        .await;
    let polling = || builder(&api).env("BOT_UPDATES", "polling");
    let mut cluster = crate::common::cluster::Cluster::spawn(1, polling).await;
    eventually(|| async { !sent(&api, "getUpdates").await.is_empty() }).await;
    // A second instance starts while the first polls: it waits.
    let second = polling()
        .database_url(&cluster.db.url())
        .env("REDIS_URL", &crate::common::cluster::redis_url())
        .env("REDIS_KEY_PREFIX", &cluster.prefix)
        .spawn()
        .await;
    eventually(|| async { sent(&api, "getUpdates").await.len() >= 5 }).await;
    let before = sent(&api, "getUpdates").await.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = sent(&api, "getUpdates").await.len() - before;
    assert!(
        polls <= 6,
        "{polls} polls of 200 ms in one second: more than one poller"
    );
    assert_eq!(sent(&api, "deleteWebhook").await.len(), 1);

    // The first stops: the second takes the lease over and polls.
    cluster.apps.remove(0).stop().await;
    eventually(|| async { sent(&api, "deleteWebhook").await.len() == 2 }).await;
    let polls_then = sent(&api, "getUpdates").await.len();
    eventually(|| async { sent(&api, "getUpdates").await.len() >= polls_then + 3 }).await;
    second.stop().await;
}
