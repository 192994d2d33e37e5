//! `GET /metrics`: the signaling hub's counters in the Prometheus text format.

use crate::common::ws::user_id;
use crate::common::{TestAppBuilder, spawn_app};
use serde_json::json;

/// The value of the series `name` (labels included, e.g. `x{source="cache"}`) in `/metrics`.
pub(crate) async fn metric(app: &crate::common::TestApp, name: &str) -> u64 {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = resp.text().await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from {body}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn hub_counters_follow_the_calls() {
    let app = spawn_app().await;
    assert_eq!(metric(&app, "telcall_rooms").await, 0);
    assert_eq!(metric(&app, "telcall_ws_connections").await, 0);

    let ada = app.sign_in(7001, "Ada").await;
    let bob = app.sign_in(7002, "Bob").await;
    let call = app.new_call(&ada).await;
    let mut a = app.ws_join(&call, &ada).await;
    let mut b = app.ws_join(&call, &bob).await;
    b.expect("participants_snapshot").await;
    let joined = a.expect("user_joined").await;
    assert_eq!(user_id(&joined["user"]), bob.id);

    a.signal("offer", bob.id, json!({"sdp": "v=0"})).await;
    b.expect("offer").await;
    assert_eq!(metric(&app, "telcall_rooms").await, 1);
    assert_eq!(metric(&app, "telcall_ws_connections").await, 2);
    assert_eq!(metric(&app, "telcall_messages_relayed_total").await, 1);
    assert_eq!(metric(&app, "telcall_messages_dropped_total").await, 0);

    b.close().await;
    a.expect("user_left").await;
    assert_eq!(metric(&app, "telcall_ws_connections").await, 1);
}

#[tokio::test]
async fn metrics_addr_moves_metrics_to_an_internal_listener() {
    let app = TestAppBuilder::default()
        .env("METRICS_ADDR", "127.0.0.1:0")
        .spawn()
        .await;
    // Not on the public listener any more.
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // On the internal one, alone.
    let internal = format!("http://{}", app.metrics_addr.expect("metrics listener"));
    let resp = app
        .client
        .get(format!("{internal}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("\ntelcall_rooms 0\n"), "{body}");
    let resp = app
        .client
        .get(format!("{internal}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
