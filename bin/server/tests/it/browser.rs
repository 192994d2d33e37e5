//! The real frontend path in a real browser: headless Chromium opens
//! `new WebSocket(url, ["token.<credential>"])` the way the Mini App does. The connection
//! must survive the browser's subprotocol check (the server selects the offered value),
//! `call_metadata` must arrive first, and a refused connection's close code and reason
//! must be readable by JavaScript (the frontend tells "call ended" from a network error by
//! them).
//!
//! Needs Chromium (`apt-get install chromium`; `CHROMIUM` names another binary), so it is
//! ignored by default; CI installs Chromium and runs it with `--include-ignored`.

use std::time::Duration;

use crate::common::TestAppBuilder;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Ends the browser when the test ends, whatever happens.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long the browser gets to report back.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

fn page(live_url: &str, ticket: &str, ended_url: &str, jwt: &str) -> String {
    format!(
        r#"<!doctype html><html><body><script>
const out = {{}};
function firstEvent(ws) {{
  return new Promise((resolve) => {{
    ws.onmessage = (e) => resolve({{ kind: "message", data: JSON.parse(e.data) }});
    ws.onclose = (e) => resolve({{ kind: "close", code: e.code, reason: e.reason }});
  }});
}}
(async () => {{
  try {{
    const live = new WebSocket({live}, ["token." + {ticket}]);
    const first = await firstEvent(live);
    out.protocol = live.protocol;
    out.first = first;
    live.close(1000);
    const ended = new WebSocket({ended}, ["token." + {jwt}]);
    out.ended = await new Promise((resolve) => {{
      ended.onclose = (e) => resolve({{ code: e.code, reason: e.reason, wasClean: e.wasClean }});
    }});
  }} catch (e) {{
    out.error = String(e);
  }}
  await fetch("/report", {{ method: "POST", headers: {{ "content-type": "application/json" }}, body: JSON.stringify(out) }});
}})();
</script></body></html>"#,
        live = json!(live_url),
        ticket = json!(ticket),
        ended = json!(ended_url),
        jwt = json!(jwt),
    )
}

#[tokio::test]
#[ignore = "needs Chromium (apt-get install chromium): run with --include-ignored"]
async fn a_browser_connects_with_the_token_subprotocol_and_reads_close_codes() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let site = MockServer::start().await;
    let app = TestAppBuilder::default()
        .env("CORS_ALLOW_ORIGINS", &site.uri())
        .spawn()
        .await;
    let ada = app.sign_in(9001, "Ada").await;
    let live = app.create_call(&ada).await;
    let ended = app.create_call(&ada).await;
    let ended_code = ended["call_id"].as_str().unwrap();
    let resp = app
        .post(&format!("/api/calls/{ended_code}/end"), &ada, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ticket = app.ws_ticket(&ada).await;

    let html = page(
        &app.ws_url(live["call_id"].as_str().unwrap()),
        &ticket,
        &app.ws_url(ended_code),
        &ada.token,
    );
    Mock::given(method("GET"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(html, "text/html"))
        .mount(&site)
        .await;
    Mock::given(method("POST"))
        .and(path("/report"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&site)
        .await;

    let profile = tempfile::tempdir().unwrap();
    let browser = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{}/page", site.uri()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {chromium}: {e}"));
    let _browser = KillOnDrop(browser);

    let deadline = tokio::time::Instant::now() + BROWSER_DEADLINE;
    let report: Value = loop {
        let requests = site.received_requests().await.unwrap();
        if let Some(r) = requests.iter().find(|r| r.url.path() == "/report") {
            break serde_json::from_slice(&r.body).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the browser did not report back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(report.get("error"), None, "{report}");
    assert_eq!(report["protocol"], format!("token.{ticket}"));
    assert_eq!(report["first"]["kind"], "message", "{report}");
    assert_eq!(report["first"]["data"]["type"], "call_metadata");
    assert_eq!(report["ended"]["code"], 4404, "{report}");
    assert_eq!(
        report["ended"]["reason"],
        "Call has ended. Please create a new call."
    );
}
