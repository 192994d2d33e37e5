//! Several instances behind one load balancer (`REDIS_URL`): tickets single-use across
//! instances, rate limits counted across instances with the single-instance 429 answer, and
//! what an instance does while its Redis is unreachable (readiness 503, tickets refused,
//! rate limits open).
//!
//! The cluster tests need PostgreSQL and Redis (`TEST_DATABASE_URL`, `TEST_REDIS_URL`) and
//! run with `--include-ignored`; the unreachable-Redis tests need neither.

use serde_json::{Value, json};
use telcall_domain::CallCode;

use crate::common::cluster::Cluster;
use crate::common::ws::{Ending, eventually, user_id};
use crate::common::{BOT_TOKEN, TestAppBuilder, detail, init_data_for};

fn tg_user(id: i64) -> Value {
    json!({"id": id, "first_name": "Multi", "username": format!("multi_{id}")})
}

/// Checks a 429 exactly as the single-instance limits answer it.
async fn assert_limited(resp: reqwest::Response, max_wait: u64) {
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=max_wait).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.headers()["x-ratelimit-after"].to_str().unwrap(),
        retry.to_string()
    );
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        detail(resp).await,
        format!("Too many requests. Retry in {retry} seconds.")
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_ticket_issued_on_one_instance_is_spent_once_on_any() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let ada = a.sign_in(7001, "Ada").await;
    let call = a.new_call(&ada).await;
    let ticket = a.ws_ticket(&ada).await;

    // Spent on B…
    let mut first = b.ws(&call).token(&ticket).connect().await;
    first.expect("call_metadata").await;
    first.close().await;
    // …it is refused on A, and on B again.
    let mut again_on_a = a.ws(&call).token(&ticket).connect().await;
    assert_eq!(
        again_on_a.expect_close().await,
        (4401, "Invalid token".into())
    );
    let mut again_on_b = b.ws(&call).token(&ticket).connect().await;
    assert_eq!(
        again_on_b.expect_close().await,
        (4401, "Invalid token".into())
    );

    // Both instances are ready, Redis included.
    for app in &cluster.apps {
        let resp = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn the_sign_in_limit_is_reached_by_alternating_instances() {
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default()
            .env("RATE_LIMIT_AUTH_PER_MINUTE", "3")
            .env("RATE_LIMIT_AUTH_PER_HOUR", "20")
    })
    .await;
    let apps = &cluster.apps;
    let sign_in = |i: usize, id: i64| {
        let app = &apps[i % 2];
        let init = init_data_for(BOT_TOKEN, &tg_user(id), chrono::Utc::now().timestamp());
        app.client_from("127.0.0.1")
            .post(app.url("/auth/telegram"))
            .json(&json!({ "initData": init }))
            .send()
    };
    // A, B, A pass: three of three per minute…
    for i in 0..3 {
        let resp = sign_in(i, 7100 + i as i64).await.unwrap();
        assert_eq!(resp.status(), 200, "sign-in {i}");
    }
    // …so B refuses the fourth, although it saw only one.
    assert_limited(sign_in(3, 7103).await.unwrap(), 20).await;
    assert_limited(sign_in(4, 7104).await.unwrap(), 20).await;
    // Another client address has its own bucket on every instance.
    let other = apps[1].client_from("127.0.0.2");
    let init = init_data_for(BOT_TOKEN, &tg_user(7105), chrono::Utc::now().timestamp());
    let resp = other
        .post(apps[1].url("/auth/telegram"))
        .json(&json!({ "initData": init }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn websocket_upgrades_count_in_the_shared_default_limit() {
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default().env("RATE_LIMIT_DEFAULT_PER_MINUTE", "4")
    })
    .await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    // Sign-in and call creation have limits of their own; they do not count here.
    let ada = a.sign_in(7201, "Ada").await;
    let call = a.new_call(&ada).await;

    let me = |app: &crate::common::TestApp| app.get("/api/friends", &ada).send();
    assert_eq!(me(a).await.unwrap().status(), 200);
    let mut on_b = b.ws(&call).token(&ada.token).connect().await;
    on_b.expect("call_metadata").await;
    on_b.close().await;
    assert_eq!(me(b).await.unwrap().status(), 200);
    let mut on_a = a.ws(&call).token(&ada.token).connect().await;
    on_a.expect("call_metadata").await;
    on_a.close().await;
    // Four requests, two on each instance: the fifth upgrade is refused before it happens.
    match b.ws(&call).token(&ada.token).try_connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
        }
        Err(other) => panic!("expected a 429, got {other}"),
        Ok(_) => panic!("expected a 429, the upgrade succeeded"),
    }
    assert_limited(me(a).await.unwrap(), 15).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn verified_telegram_updates_are_not_limited_across_instances_either() {
    const SECRET: &str = "cluster-webhook-secret_01";
    let api = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": true})),
        )
        .mount(&api)
        .await;
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default()
            .env("RATE_LIMIT_DEFAULT_PER_MINUTE", "3")
            .env("TELEGRAM_API_BASE", &api.uri())
            .env("BOT_WEBHOOK_SECRET", SECRET)
    })
    .await;
    let post = |i: usize, secret: &str| {
        let app = &cluster.apps[i % 2];
        app.client
            .post(app.url("/api/telegram/webhook"))
            .header("X-Telegram-Bot-Api-Secret-Token", secret)
            .json(&json!({"update_id": i}))
            .send()
    };
    // Telegram delivers from a few addresses at whatever rate users produce: twenty updates
    // with the secret, alternating instances, all pass a default limit of three.
    for i in 0..20 {
        let resp = post(i, SECRET).await.unwrap();
        assert_eq!(resp.status(), 200, "update {i}");
    }
    // Without the secret they count like any request, in the shared bucket.
    let mut statuses = Vec::new();
    for i in 100..106 {
        statuses.push(post(i, "wrong").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[3..], [429, 429, 429], "{statuses:?}");
}

/// Waits until `app`'s broker listens to the channels of all its rooms.
async fn subscribed(app: &crate::common::TestApp) {
    let broker = app.state.broker.clone().expect("a Redis broker");
    eventually("room subscriptions", || {
        let stats = broker.stats();
        std::future::ready((stats.rooms > 0 && stats.subscriptions == stats.rooms).then_some(()))
    })
    .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_call_ended_through_another_instance_ends_its_room() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let ada = a.sign_in(7501, "Ada").await;
    let bob = a.sign_in(7502, "Bob").await;
    let call = a.new_call(&ada).await;
    let mut ada_ws = a.ws_join(&call, &ada).await;
    let mut bob_ws = a.ws_join(&call, &bob).await;
    bob_ws.expect("participants_snapshot").await;
    ada_ws.expect("user_joined").await;
    subscribed(a).await;

    // The organizer ends the call through the other instance.
    let resp = b
        .post(&format!("/api/calls/{call}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    for client in [&mut ada_ws, &mut bob_ws] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![json!({"type": "call_ended", "reason": "ended"})]
        );
        assert_eq!(
            ending,
            Ending::Close(1000, "Call has ended. Please create a new call.".into())
        );
    }
    // B published it (its counter moves once Redis has acknowledged, which may be after A
    // delivered it).
    let broker = b.state.broker.clone().unwrap();
    eventually("B's publication counted", || {
        std::future::ready((broker.stats().published >= 1).then_some(()))
    })
    .await;
    assert_eq!(a.state.hub.stats().connections, 0);
}

/// Every instance hears of every end, also where nobody was in the room: an instance that
/// read the call (and would keep it for five minutes) answers "not available" as soon as the
/// end reaches it, and refuses joins.
#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn an_end_through_one_instance_reaches_the_others_with_nobody_in_the_room() {
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default().env("CALL_CACHE_SECONDS", "300")
    })
    .await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let ada = a.sign_in(7551, "Ada").await;
    let bob = a.sign_in(7552, "Bob").await;
    let call = a.new_call(&ada).await;
    let read_on_b = || async {
        b.get(&format!("/api/calls/{call}"), &bob)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(read_on_b().await.status(), 200);

    let resp = a
        .post(&format!("/api/calls/{call}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = eventually("B sees the call ended", || async {
        let resp = read_on_b().await;
        (resp.status() == 404).then_some(resp)
    })
    .await;
    assert_eq!(detail(resp).await, "Call is not available");
    assert!(b.state.hub.has_ended(&call));
    let mut bob_ws = b.ws(&call).token(&bob.token).connect().await;
    assert_eq!(
        bob_ws.expect_close().await,
        (4404, "Call has ended. Please create a new call.".into())
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn the_sweeper_of_another_instance_ends_the_room() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let ada = a.sign_in(7601, "Ada").await;
    let call = a.new_call(&ada).await;
    let mut ada_ws = a.ws_join(&call, &ada).await;
    subscribed(a).await;

    // B's clock passes the expiry first: its sweeper expires the call.
    b.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    assert_eq!(telcall_server::sweeper::sweep_once(&b.state.calls).await, 1);
    let (messages, ending) = ada_ws.read_to_end().await;
    assert_eq!(
        messages,
        vec![json!({"type": "call_ended", "reason": "expired"})]
    );
    assert!(matches!(ending, Ending::Close(1000, _)), "{ending:?}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_relay_between_sockets_of_one_instance_stays_local() {
    let cluster = Cluster::pair().await;
    let a = &cluster.apps[0];
    let ada = a.sign_in(7701, "Ada").await;
    let bob = a.sign_in(7702, "Bob").await;
    let call = a.new_call(&ada).await;
    let mut ada_ws = a.ws_join(&call, &ada).await;
    let mut bob_ws = a.ws_join(&call, &bob).await;
    bob_ws.expect("participants_snapshot").await;
    ada_ws.expect("user_joined").await;
    let broker = a.state.broker.clone().unwrap();
    // Both joins are announced to the other instances.
    eventually("the joins published", || {
        std::future::ready((broker.stats().published >= 2).then_some(()))
    })
    .await;
    let before = broker.stats().published;
    for i in 0..20 {
        ada_ws
            .signal("ice_candidate", bob.id, json!({"candidate": i}))
            .await;
    }
    for _ in 0..20 {
        bob_ws.expect("ice_candidate").await;
    }
    // Twenty relays, no Redis publication.
    assert_eq!(broker.stats().published, before);
}

/// An instance whose `REDIS_URL` points where nothing answers.
fn without_reachable_redis() -> TestAppBuilder {
    // Nothing listens on port 1.
    TestAppBuilder::default().env("REDIS_URL", "redis://127.0.0.1:1")
}

#[tokio::test]
async fn without_redis_the_instance_is_not_ready_and_refuses_tickets() {
    let app = without_reachable_redis().spawn().await;
    let resp = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(detail(resp).await, "Redis unavailable");
    // Liveness does not depend on Redis.
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A ticket cannot be marked used: it is refused (fail closed), the session JWT still
    // works.
    let ada = app.sign_in(7301, "Ada").await;
    let call = app.new_call(&ada).await;
    let ticket = app.ws_ticket(&ada).await;
    let mut refused = app.ws(&call).token(&ticket).connect().await;
    assert_eq!(
        refused.expect_close().await,
        (1011, "Internal server error".into())
    );
    app.ws_join(&call, &ada).await.close().await;

    // The failures are counted in /metrics.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("telcall_redis_errors_total "))
        .expect("telcall_redis_errors_total")
        .parse()
        .unwrap();
    assert!(errors >= 2, "{metrics}");
}

#[tokio::test]
async fn without_redis_rate_limits_fail_open() {
    let app = without_reachable_redis()
        .env("RATE_LIMIT_AUTH_PER_MINUTE", "1")
        .spawn()
        .await;
    // One sign-in per minute, yet both pass: nothing can count them.
    app.sign_in(7401, "Ada").await;
    app.sign_in(7402, "Bob").await;
}

/// Ada and Bob in one call, Ada connected to A and Bob to B, each past the greetings.
async fn across_two_instances(
    a: &crate::common::TestApp,
    b: &crate::common::TestApp,
    ids: (i64, i64),
) -> (
    crate::common::TestUser,
    crate::common::TestUser,
    String,
    crate::common::ws::WsClient,
    crate::common::ws::WsClient,
) {
    let ada = a.sign_in(ids.0, "Ada").await;
    let bob = a.sign_in(ids.1, "Bob").await;
    let call = a.new_call(&ada).await;
    let mut ada_ws = a.ws_join(&call, &ada).await;
    let mut bob_ws = b.ws_join(&call, &bob).await;
    let snapshot = bob_ws.expect("participants_snapshot").await;
    assert_eq!(
        snapshot["participants"],
        json!([{"id": ada.id, "username": format!("user_{}", ids.0), "first_name": "Ada",
                "last_name": "Tester", "photo_url": null}]),
        "Bob, on B, sees Ada, on A"
    );
    let joined = ada_ws.expect("user_joined").await;
    assert_eq!(user_id(&joined["user"]), bob.id);
    (ada, bob, call, ada_ws, bob_ws)
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn two_peers_on_different_instances_see_and_reach_each_other() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let (ada, bob, call, mut ada_ws, mut bob_ws) = across_two_instances(a, b, (7801, 7802)).await;

    // Relays both ways, with from_user.
    ada_ws
        .signal("offer", bob.id, json!({"sdp": "from A"}))
        .await;
    let offer = bob_ws.expect("offer").await;
    assert_eq!(offer["payload"], json!({"sdp": "from A"}));
    assert_eq!(user_id(&offer["from_user"]), ada.id);
    bob_ws
        .signal("answer", ada.id, json!({"sdp": "from B"}))
        .await;
    let answer = ada_ws.expect("answer").await;
    assert_eq!(answer["payload"], json!({"sdp": "from B"}));
    assert_eq!(user_id(&answer["from_user"]), bob.id);

    // Somebody in no instance's room is offline, on both.
    ada_ws.signal("offer", 987_654, json!({})).await;
    ada_ws.expect_error("Target user is offline").await;
    bob_ws.signal("offer", 987_654, json!({})).await;
    bob_ws.expect_error("Target user is offline").await;

    // A third person on B is greeted with both, wherever they are.
    let cy = a.sign_in(7803, "Cy").await;
    let mut cy_ws = b.ws_join(&call, &cy).await;
    let snapshot = cy_ws.expect("participants_snapshot").await;
    let mut ids: Vec<i64> = snapshot["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(user_id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [ada.id, bob.id]);
    assert_eq!(user_id(&ada_ws.expect("user_joined").await["user"]), cy.id);
    assert_eq!(user_id(&bob_ws.expect("user_joined").await["user"]), cy.id);

    // Bob leaves B: Ada, on A, is told, and he is offline for her.
    bob_ws.close().await;
    assert_eq!(user_id(&ada_ws.expect("user_left").await["user"]), bob.id);
    assert_eq!(user_id(&cy_ws.expect("user_left").await["user"]), bob.id);
    // At once: the `user_left` she was just given means an offer to him is answered.
    ada_ws.signal("offer", bob.id, json!({})).await;
    ada_ws.expect_error("Target user is offline").await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn capacity_holds_across_instances_even_for_simultaneous_joins() {
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default().env("MAX_PARTICIPANTS_PER_CALL", "3")
    })
    .await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let (_ada, _bob, call, _ada_ws, _bob_ws) = across_two_instances(a, b, (7901, 7902)).await;
    let cy = a.sign_in(7903, "Cy").await;
    let dee = a.sign_in(7904, "Dee").await;

    // The third and the fourth person arrive at once, one on each instance: one seat left.
    for round in 0..5 {
        let (on_a, on_b) = tokio::join!(
            a.ws(&call).token(&cy.token).connect(),
            b.ws(&call).token(&dee.token).connect()
        );
        let mut outcomes = Vec::new();
        for mut client in [on_a, on_b] {
            let first = client.next_frame().await;
            match first {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(message["type"], "call_metadata");
                    outcomes.push(("joined", Some(client)));
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
                    assert_eq!(
                        (u16::from(frame.code), frame.reason.as_str()),
                        (4429, "Call is full")
                    );
                    outcomes.push(("full", None));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut kinds: Vec<&str> = outcomes.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["full", "joined"], "round {round}");
        // The one who got in leaves again for the next round.
        for (_, client) in outcomes {
            if let Some(client) = client {
                client.close().await;
            }
        }
        let broker = a.state.broker.clone().unwrap();
        eventually("the seat is free again", || async {
            (broker.roster_len(&call).await.unwrap() == 2).then_some(())
        })
        .await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_second_connection_on_another_instance_replaces_the_first() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let (ada, bob, call, mut ada_ws, mut bob_ws) = across_two_instances(a, b, (8001, 8002)).await;

    // Ada opens the call again, on B: her connection on A is replaced.
    let mut ada_again = b.ws_join(&call, &ada).await;
    let snapshot = ada_again.expect("participants_snapshot").await;
    assert_eq!(
        snapshot["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(user_id)
            .collect::<Vec<_>>(),
        [bob.id]
    );
    let (rest, ending) = ada_ws.read_to_end().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        ending,
        Ending::Close(4409, "Replaced by a newer connection".into())
    );
    // Bob is told she joined again, never that she left.
    assert_eq!(user_id(&bob_ws.expect("user_joined").await["user"]), ada.id);
    bob_ws.assert_nothing_pending().await;
    // And his signals reach her new connection.
    bob_ws.signal("offer", ada.id, json!({"n": 1})).await;
    assert_eq!(ada_again.expect("offer").await["payload"], json!({"n": 1}));
    assert_eq!(a.state.hub.stats().connections, 0);
}

/// A `telcall serve` process of the cluster: same database, Redis, keys and secrets as the
/// in-process instances.
fn cluster_process(cluster: &Cluster) -> crate::common::process::Server {
    use crate::common::process::{Server, base_env, free_port, telcall};
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&cluster.db.url());
    env.extend(
        [
            ("BOT_TOKEN", BOT_TOKEN),
            ("SECRET_KEY", crate::common::SECRET_KEY),
            ("REDIS_URL", &crate::common::cluster::redis_url()),
            ("REDIS_KEY_PREFIX", &cluster.prefix),
            ("RATE_LIMIT_DEFAULT_PER_MINUTE", "100000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let port = free_port();
    let server = Server::spawn(telcall(dir.path(), &env, &["serve"]), port);
    // The process runs in the directory; it is only read at start-up.
    std::mem::forget(dir);
    server
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_killed_instances_participants_leave_within_ten_seconds_for_good() {
    let cluster = Cluster::spawn(1, TestAppBuilder::default).await;
    let b = &cluster.apps[0];
    let mut a = cluster_process(&cluster);
    a.wait_ready().await;
    let ada = b.sign_in(8101, "Ada").await;
    let bob = b.sign_in(8102, "Bob").await;
    let call = b.new_call(&ada).await;
    let mut bob_ws = b.ws_join(&call, &bob).await;
    let mut ada_ws = b.ws_on(a.port, &call).token(&ada.token).connect().await;
    ada_ws.expect("call_metadata").await;
    ada_ws.expect("participants_snapshot").await;
    assert_eq!(user_id(&bob_ws.expect("user_joined").await["user"]), ada.id);

    // The instance holding Ada dies without a word.
    a.kill();
    let killed = std::time::Instant::now();
    let left = tokio::time::timeout(std::time::Duration::from_secs(10), bob_ws.recv())
        .await
        .expect("no user_left within 10 s of the kill");
    assert_eq!(left["type"], "user_left", "{left}");
    assert_eq!(user_id(&left["user"]), ada.id);
    tracing::info!(
        elapsed_ms = killed.elapsed().as_millis() as u64,
        "user_left after the kill"
    );
    bob_ws.signal("offer", ada.id, json!({})).await;
    bob_ws.expect_error("Target user is offline").await;

    // A process started again (on a fresh port, with a fresh identity) brings nobody back.
    let mut again = cluster_process(&cluster);
    again.wait_ready().await;
    let cy = b.sign_in(8103, "Cy").await;
    let mut cy_ws = b.ws_on(again.port, &call).token(&cy.token).connect().await;
    cy_ws.expect("call_metadata").await;
    let snapshot = cy_ws.expect("participants_snapshot").await;
    assert_eq!(
        snapshot["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(user_id)
            .collect::<Vec<_>>(),
        [bob.id]
    );
    assert_eq!(user_id(&bob_ws.expect("user_joined").await["user"]), cy.id);
    bob_ws.assert_nothing_pending().await;
    let broker = b.state.broker.clone().unwrap();
    assert_eq!(broker.roster_len(&call).await.unwrap(), 2);
    again.terminate();
    again.wait_exit(std::time::Duration::from_secs(30)).await;
    // A graceful stop takes Cy out of the roster, and tells Bob.
    assert_eq!(user_id(&bob_ws.expect("user_left").await["user"]), cy.id);
    assert_eq!(broker.roster_len(&call).await.unwrap(), 1);
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_logout_on_one_instance_ends_the_session_on_all() {
    let cluster = Cluster::pair().await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let ada = a.sign_in(8201, "Ada").await;
    let call = a.new_call(&ada).await;
    // A ticket obtained before the logout, and a WebSocket on B opened with the session.
    let ticket = b.ws_ticket(&ada).await;
    let mut on_b = b.ws_join(&call, &ada).await;
    assert_eq!(
        b.get("/api/friends", &ada).send().await.unwrap().status(),
        200
    );

    let resp = a
        .client
        .post(a.url("/auth/logout"))
        .bearer_auth(&ada.token)
        .header("Origin", crate::common::ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    // B refuses the token at once, over HTTP and for new WebSockets, tickets included…
    let resp = b.get("/api/friends", &ada).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(detail(resp).await, "Invalid token");
    let resp = b.get("/auth/ws-token", &ada).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let mut again = b.ws(&call).token(&ada.token).connect().await;
    assert_eq!(again.expect_close().await, (4401, "Invalid token".into()));
    let mut with_ticket = b.ws(&call).token(&ticket).connect().await;
    assert_eq!(
        with_ticket.expect_close().await,
        (4401, "Invalid token".into())
    );
    // …and closes the WebSocket the session had open there.
    let (_, ending) = on_b.read_to_end().await;
    assert_eq!(ending, Ending::Close(4401, "Invalid token".into()));
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn a_starting_instance_closes_only_rows_no_live_instance_holds() {
    let cluster = Cluster::spawn(1, TestAppBuilder::default).await;
    let a = &cluster.apps[0];
    let ada = a.sign_in(8301, "Ada").await;
    let bob = a.sign_in(8302, "Bob").await;
    // Ada is in a call on A: her row is open, and must stay so.
    let live = a.new_call(&ada).await;
    let _ada_ws = a.ws_join(&live, &ada).await;
    crate::common::ws::wait_for_rows(a, &live, |rows| {
        rows.len() == 1 && rows[0].left_at.is_none()
    })
    .await;
    // Bob's row in another call was left open by an instance that is gone.
    let abandoned = a.new_call(&bob).await;
    let stored = a
        .state
        .repo
        .find_call_by_code(&CallCode::from_raw(&abandoned))
        .await
        .unwrap()
        .unwrap();
    a.state
        .repo
        .record_join(stored.id, bob.user_id(), a.clock_now())
        .await
        .unwrap();

    // A second instance starts.
    let b = TestAppBuilder::default()
        .database_url(&cluster.db.url())
        .env("REDIS_URL", &crate::common::cluster::redis_url())
        .env("REDIS_KEY_PREFIX", &cluster.prefix)
        .spawn()
        .await;
    let rows = crate::common::ws::participants(&b, &live).await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].left_at.is_none(),
        "a row of a room A holds was closed"
    );
    let rows = crate::common::ws::participants(&b, &abandoned).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].left_at.is_some(), "the abandoned row stayed open");
    b.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn the_duration_cap_reached_on_one_instance_ends_the_call_everywhere() {
    let cluster = Cluster::spawn(2, || {
        TestAppBuilder::default()
            .env("MAX_CALL_DURATION_HOURS", "2")
            .env("CALL_SWEEP_INTERVAL_SECONDS", "86400")
    })
    .await;
    let (a, b) = (&cluster.apps[0], &cluster.apps[1]);
    let (ada, _bob, call, mut ada_ws, mut bob_ws) = across_two_instances(a, b, (8401, 8402)).await;
    subscribed(a).await;
    subscribed(b).await;

    // B's clock passes the cap first: its sweeper ends the call, for both rooms.
    b.clock
        .advance(chrono::Duration::hours(2) + chrono::Duration::seconds(1));
    assert_eq!(telcall_server::sweeper::sweep_once(&b.state.calls).await, 1);
    for client in [&mut ada_ws, &mut bob_ws] {
        let (messages, ending) = client.read_to_end().await;
        assert_eq!(
            messages,
            vec![
                json!({"type": "call_ended", "reason": "Maximum call duration (2 hours) exceeded"})
            ]
        );
        assert!(matches!(ending, Ending::Close(1000, _)), "{ending:?}");
    }
    // A sees the call ended too (whatever its own clock says).
    assert_eq!(telcall_server::sweeper::sweep_once(&a.state.calls).await, 0);
    let mut again = a.ws(&call).token(&ada.token).connect().await;
    assert_eq!(
        again.expect_close().await,
        (4404, "Call has ended. Please create a new call.".into())
    );
}

/// An instance that cannot hear the others' ends (its Redis is unreachable) does not vouch
/// for any call it keeps: an end made elsewhere meanwhile is seen at the next read, during
/// the outage and after it.
#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn an_instance_cut_off_from_redis_reads_its_kept_calls_again() {
    use crate::common::cluster::{RedisProxy, redis_url, unique_prefix};
    let db = crate::common::pg::TestDb::create().await;
    let prefix = unique_prefix();
    let proxy = RedisProxy::start().await;
    let spawn = |url: String| {
        let db_url = db.url();
        let prefix = prefix.clone();
        async move {
            TestAppBuilder::default()
                .database_url(&db_url)
                .env("REDIS_URL", &url)
                .env("REDIS_KEY_PREFIX", &prefix)
                .env("CALL_CACHE_SECONDS", "300")
                .spawn()
                .await
        }
    };
    let a = spawn(redis_url()).await;
    let b = spawn(proxy.url.clone()).await;
    let ada = a.sign_in(7561, "Ada").await;
    let call = a.new_call(&ada).await;
    let other = a.new_call(&ada).await;
    let (a, b, ada) = (&a, &b, &ada);
    let read_on_b = |call: String| async move {
        b.get(&format!("/api/calls/{call}"), ada)
            .send()
            .await
            .unwrap()
    };
    let end_on_a = |call: String| async move {
        let resp = a
            .post(&format!("/api/calls/{call}/end"), ada, &json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    };
    eventually("B hears every end", || {
        std::future::ready(b.state.hub.hears_every_end().then_some(()))
    })
    .await;
    assert_eq!(read_on_b(call.clone()).await.status(), 200);
    assert_eq!(read_on_b(other.clone()).await.status(), 200);

    proxy.cut();
    eventually("B knows it no longer hears the others", || {
        std::future::ready((!b.state.hub.hears_every_end()).then_some(()))
    })
    .await;
    end_on_a(call.clone()).await;
    // B never hears of it, yet does not serve its kept copy.
    let resp = read_on_b(call).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");

    // An end B missed during the outage: once B hears the others again, what it kept from
    // before is read again.
    end_on_a(other.clone()).await;
    proxy.restore();
    eventually("B hears every end again", || {
        std::future::ready(b.state.hub.hears_every_end().then_some(()))
    })
    .await;
    let resp = read_on_b(other).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(detail(resp).await, "Call is not available");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: set TEST_DATABASE_URL and TEST_REDIS_URL and run with --include-ignored"]
async fn an_instance_cut_off_from_redis_keeps_its_calls_and_rejoins_the_others() {
    use crate::common::cluster::{RedisProxy, redis_url, unique_prefix};
    let db = crate::common::pg::TestDb::create().await;
    let prefix = unique_prefix();
    let proxy = RedisProxy::start().await;
    let a = TestAppBuilder::default()
        .database_url(&db.url())
        .env("REDIS_URL", &proxy.url)
        .env("REDIS_KEY_PREFIX", &prefix)
        .spawn()
        .await;
    let b = TestAppBuilder::default()
        .database_url(&db.url())
        .env("REDIS_URL", &redis_url())
        .env("REDIS_KEY_PREFIX", &prefix)
        .spawn()
        .await;
    let (ada, bob, call, mut ada_ws, mut bob_ws) = across_two_instances(&a, &b, (8501, 8502)).await;

    // A loses Redis. B cannot tell that from a crash: Ada leaves for Bob.
    proxy.cut();
    let left = tokio::time::timeout(std::time::Duration::from_secs(10), bob_ws.recv())
        .await
        .expect("no user_left for the unreachable instance's participant");
    assert_eq!(left["type"], "user_left", "{left}");
    assert_eq!(user_id(&left["user"]), ada.id);

    // Meanwhile A keeps serving its own: Cy joins Ada there, and they reach each other.
    let cy = a.sign_in(8503, "Cy").await;
    let mut cy_ws = a.ws_join(&call, &cy).await;
    assert_eq!(user_id(&ada_ws.expect("user_joined").await["user"]), cy.id);
    cy_ws.expect("participants_snapshot").await;
    ada_ws.signal("offer", cy.id, json!({"local": true})).await;
    assert_eq!(
        cy_ws.expect("offer").await["payload"],
        json!({"local": true})
    );

    // Redis is back for A: it takes its seats again and B's room hears of both.
    proxy.restore();
    let mut joined = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(15), bob_ws.recv())
            .await
            .expect("A's participants never came back for B");
        assert_eq!(message["type"], "user_joined", "{message}");
        joined.push(user_id(&message["user"]));
    }
    joined.sort_unstable();
    assert_eq!(joined, [ada.id, cy.id]);
    // Relays cross again, both ways.
    bob_ws.signal("offer", ada.id, json!({"back": 1})).await;
    assert_eq!(ada_ws.expect("offer").await["payload"], json!({"back": 1}));
    ada_ws.signal("answer", bob.id, json!({"back": 2})).await;
    assert_eq!(bob_ws.expect("answer").await["payload"], json!({"back": 2}));
    let broker = b.state.broker.clone().unwrap();
    assert_eq!(broker.roster_len(&call).await.unwrap(), 3);
}
