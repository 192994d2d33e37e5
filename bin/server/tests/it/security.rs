//! The browser-facing security layer against the real app: CORS (preflights and actual
//! requests), the CSRF origin check for cookie sessions, the security headers on every kind
//! of response, and JSON error bodies where actix would answer without one.

use crate::common::detail;

use crate::common::{ALLOWED_ORIGIN, TestApp, TestAppBuilder, session_cookie, spawn_app};
use serde_json::{Value, json};

const STRANGER: &str = "https://evil.example.com";
const TELEGRAM: &str = "https://web.telegram.org";

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/calls/"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .unwrap()
}

fn assert_security_headers(resp: &reqwest::Response, what: &str) {
    assert_eq!(
        header(resp, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(resp, "referrer-policy"),
        Some("strict-origin-when-cross-origin"),
        "{what}"
    );
    let csp = header(resp, "content-security-policy").unwrap_or_default();
    let frame_ancestors = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("frame-ancestors"))
        .unwrap_or_else(|| panic!("{what}: no frame-ancestors in {csp:?}"));
    for origin in [
        "https://web.telegram.org",
        "https://k.web.telegram.org",
        "https://a.web.telegram.org",
        "https://z.web.telegram.org",
    ] {
        assert!(
            frame_ancestors.split_whitespace().any(|o| o == origin),
            "{what}: {origin} not in {frame_ancestors:?}"
        );
    }
    let permissions = header(resp, "permissions-policy").unwrap_or_default();
    assert!(
        permissions.contains("camera=(self)"),
        "{what}: {permissions}"
    );
    assert!(
        permissions.contains("microphone=(self)"),
        "{what}: {permissions}"
    );
    assert!(
        permissions.contains("geolocation=()"),
        "{what}: {permissions}"
    );
}

#[tokio::test]
async fn preflight_from_allowed_origins() {
    let app = spawn_app().await;
    for origin in [ALLOWED_ORIGIN, TELEGRAM, "https://k.web.telegram.org"] {
        let resp = preflight(&app, origin).await;
        assert_eq!(resp.status(), 200, "{origin}");
        assert_eq!(header(&resp, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&resp, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(header(&resp, "access-control-max-age"), Some("600"));
        let methods = header(&resp, "access-control-allow-methods").unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let headers = header(&resp, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(headers.contains("content-type") && headers.contains("authorization"));
        assert_security_headers(&resp, "preflight");
    }
}

#[tokio::test]
async fn preflight_from_a_stranger_gets_no_cors_grant() {
    let app = spawn_app().await;
    let resp = preflight(&app, STRANGER).await;
    assert!(header(&resp, "access-control-allow-origin").is_none());
    assert!(header(&resp, "access-control-allow-credentials").is_none());
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_security_headers(&resp, "refused preflight");
    // CONTRACT: every error body is JSON with a detail.
    assert!(!detail(resp).await.is_empty());
}

#[tokio::test]
async fn actual_requests_get_cors_headers_only_for_allowed_origins() {
    let app = spawn_app().await;
    for origin in [ALLOWED_ORIGIN, TELEGRAM] {
        let resp = app
            .client
            .get(app.url("/health"))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            header(&resp, "access-control-allow-credentials"),
            Some("true")
        );
        let exposed = header(&resp, "access-control-expose-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(exposed.contains("retry-after"), "{exposed}");
    }
    let resp = app
        .client
        .get(app.url("/health"))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    // Reads are answered (the browser withholds them from the stranger's page).
    assert_eq!(resp.status(), 200);
    assert_no_cors_headers(&resp, "stranger");
    // No origin at all (curl, a server): no CORS headers either, errors included.
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_no_cors_headers(&resp, "no origin");
    let resp = app
        .client
        .get(app.url("/api/calls/x"))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_no_cors_headers(&resp, "stranger, 401");
}

fn assert_no_cors_headers(resp: &reqwest::Response, what: &str) {
    let cors: Vec<_> = resp
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{what}: {cors:?}");
}

#[tokio::test]
async fn cookie_writes_from_a_foreign_origin_are_refused_before_anything_changes() {
    let app = spawn_app().await;
    let ada = app.sign_in(2001, "Ada").await;
    let cookie = session_cookie(&ada.token);
    let create = |headers: &[(&str, &str)]| {
        let mut req = app
            .client
            .post(app.url("/api/calls/"))
            .header("cookie", &cookie)
            .json(&json!({"title": "csrf"}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };

    for headers in [
        vec![("origin", STRANGER)],
        vec![("origin", "null")],
        vec![("referer", "https://evil.example.com/page?x=1")],
        // Origin wins over an allowed-looking Referer.
        vec![
            ("origin", STRANGER),
            ("referer", "https://app.example.com/"),
        ],
    ] {
        let resp = create(&headers).await.unwrap();
        assert_eq!(resp.status(), 403, "{headers:?}");
        assert_security_headers(&resp, "403");
        assert_eq!(detail(resp).await, "Origin not allowed");
    }
    let repo = &app.state.repo;
    assert!(
        repo.list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .is_empty()
    );

    // Allowed origins, the Telegram web client, a same-site Referer and no origin at all.
    for headers in [
        vec![("origin", ALLOWED_ORIGIN)],
        vec![("origin", TELEGRAM)],
        vec![("referer", "https://app.example.com/call/abc")],
        vec![],
    ] {
        let resp = create(&headers).await.unwrap();
        assert_eq!(resp.status(), 201, "{headers:?}");
    }
    assert_eq!(
        repo.list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn other_cookie_writes_are_guarded_too_but_reads_and_bearer_are_not() {
    let app = spawn_app().await;
    let ada = app.sign_in(2002, "Ada").await;
    let call = app.create_call(&ada).await;
    let code = call["call_id"].as_str().unwrap();
    let cookie = session_cookie(&ada.token);

    // Ending the call from a foreign page: refused, the call stays active.
    let resp = app
        .client
        .post(app.url(&format!("/api/calls/{code}/end")))
        .header("cookie", &cookie)
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .get(&format!("/api/calls/{code}"), &ada)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "active");

    // Logout and ws-token issuance from a foreign page.
    let resp = app
        .client
        .post(app.url("/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // A read with the cookie from a foreign origin is not a CSRF target.
    let resp = app
        .client
        .get(app.url(&format!("/api/calls/{code}")))
        .header("cookie", &cookie)
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Bearer without a cookie: not subject to the check.
    let resp = app
        .post("/api/calls/", &ada, &json!({}))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = app
        .post(&format!("/api/calls/{code}/end"), &ada, &json!({}))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn security_headers_on_200_404_and_429() {
    let app = TestAppBuilder::default()
        .env("RATE_LIMIT_DEFAULT_PER_MINUTE", "3")
        .spawn()
        .await;
    let ok = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok, "200");
    assert!(header(&ok, "strict-transport-security").is_some());

    let missing = app
        .client
        .get(app.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing, "404");
    assert_eq!(detail(missing).await, "Not Found");

    // A route that exists for another method only: a JSON 405 with Allow, CORS headers
    // kept.
    let wrong_method = app
        .client
        .get(app.url("/auth/telegram"))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_security_headers(&wrong_method, "405 for another method");
    assert_eq!(header(&wrong_method, "allow"), Some("POST"));
    assert_eq!(
        header(&wrong_method, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(detail(wrong_method).await, "Method Not Allowed");

    // The default bucket (3) is now empty: the fourth request is limited.
    let limited = app
        .client
        .get(app.url("/api/friends"))
        .header("origin", ALLOWED_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_security_headers(&limited, "429");
    assert_eq!(
        header(&limited, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(
        header(&limited, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(header(&limited, "retry-after").is_some());
    assert!(detail(limited).await.starts_with("Too many requests."));
}

#[tokio::test]
async fn security_headers_on_401_and_debug_mode_has_no_hsts() {
    let app = TestAppBuilder::default().env("DEBUG", "true").spawn().await;
    let resp = app
        .client
        .get(app.url("/api/friends"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_security_headers(&resp, "401");
    assert!(header(&resp, "strict-transport-security").is_none());
    assert_eq!(detail(resp).await, "Not authenticated");
}
