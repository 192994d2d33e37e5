//! The OpenAPI document: the committed `docs/openapi.json` matches the generated one, the
//! app serves it publicly at `GET /api/openapi.json`, and it describes every route the app
//! registers (and nothing the app does not route).
//!
//! After changing a handler's annotations or a DTO, regenerate the committed copy with
//! `UPDATE_OPENAPI=1 cargo test -p telcall-server --test openapi`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::spawn_app;
use serde_json::{Value, json};

/// Methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every route of CONTRACT.md (plus the beyond-contract ones), as the document spells it.
const CONTRACT_ROUTES: [(&str, &str); 20] = [
    ("get", "/"),
    ("get", "/health"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("post", "/auth/telegram"),
    ("get", "/auth/ws-token"),
    ("post", "/auth/logout"),
    ("post", "/api/calls/"),
    ("get", "/api/calls/{call_id}"),
    ("post", "/api/calls/{call_id}/end"),
    ("post", "/api/calls/join_by_code"),
    ("post", "/api/calls/friend"),
    ("get", "/api/config/webrtc"),
    ("get", "/api/friends"),
    ("post", "/api/friends/delete"),
    ("post", "/api/call-stats/"),
    ("get", "/api/call-stats/{call_id}"),
    ("get", "/api/call-stats/"),
    ("get", "/api/openapi.json"),
    ("get", "/ws/calls/{call_id}"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn generated() -> Value {
    serde_json::from_str(&telcall_server::openapi::pretty_json().unwrap()).unwrap()
}

/// `/api/calls/` and `/api/calls` are the same route to the app.
fn normalize(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_owned()
    } else {
        path.to_owned()
    }
}

/// (method, normalized path) of every operation in `doc`.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_owned(), normalize(path)));
            }
        }
    }
    out
}

/// (method, normalized path) of every `.route("<path>", web::<method>()…)` registration in
/// the server's sources (all of `src/`), so a new route without documentation fails this
/// test.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let args = rest.trim_start();
            // Registrations through a constant, e.g. `.route(OPENAPI_PATH, …)`.
            let (path, after) = if let Some(lit) = args.strip_prefix('"') {
                let end = lit.find('"').unwrap();
                (lit[..end].to_owned(), &lit[end..])
            } else if let Some(after) = args.strip_prefix("OPENAPI_PATH") {
                (telcall_server::openapi::OPENAPI_PATH.to_owned(), after)
            } else {
                continue;
            };
            // The method is named right after the path: `web::get()`, `web::post()`, ….
            let window: String = after.chars().take(80).collect();
            let method = window
                .find("web::")
                .map(|i| &window[i + "web::".len()..])
                .and_then(|m| m.split_once("()"))
                .map(|(m, _)| m.to_owned())
                .unwrap_or_else(|| panic!("{}: cannot read the method of {path}", file.display()));
            // actix spells path parameters as the document does: `{call_id}`.
            out.insert((method, normalize(&path)));
        }
    }
    out
}

#[test]
fn committed_document_is_current() {
    let path = repo_root().join("docs/openapi.json");
    let fresh = telcall_server::openapi::pretty_json().unwrap();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run UPDATE_OPENAPI=1 cargo test -p telcall-server --test openapi",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&committed).unwrap();
    let fresh: Value = serde_json::from_str(&fresh).unwrap();
    assert!(
        committed == fresh,
        "docs/openapi.json is stale; regenerate it with \
         UPDATE_OPENAPI=1 cargo test -p telcall-server --test openapi"
    );
}

#[test]
fn document_describes_every_contract_route_and_only_those() {
    let doc = generated();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["title"], "telcall");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let expected: BTreeSet<(String, String)> = CONTRACT_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), normalize(p)))
        .collect();
    assert_eq!(documented_operations(&doc), expected);
}

#[test]
fn document_covers_every_registered_route() {
    let documented = documented_operations(&generated());
    let registered = registered_routes();
    // The scan must see the REST routes at least (guards against it silently finding none).
    assert!(registered.len() >= 17, "{registered:?}");
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without documentation: {missing:?}"
    );
}

#[test]
fn security_schemes_apply_to_api_routes_and_ws_token() {
    let doc = generated();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["cookieAuth"],
        json!({"type": "apiKey", "in": "cookie", "name": "access_token",
               "description": schemes["cookieAuth"]["description"]})
    );
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["bearerAuth"]["bearerFormat"], "JWT");
    assert_eq!(schemes["wsSubprotocol"]["in"], "header");
    assert_eq!(schemes["wsSubprotocol"]["name"], "Sec-WebSocket-Protocol");

    let session = json!([{"cookieAuth": []}, {"bearerAuth": []}]);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let secured = (path.starts_with("/api/") && path != "/api/openapi.json")
                || path == "/auth/ws-token";
            if secured {
                assert_eq!(op["security"], session, "{method} {path}");
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
                assert!(op["responses"]["503"].is_object(), "{method} {path}");
            } else if !path.starts_with("/ws/") {
                assert!(op.get("security").is_none(), "{method} {path} is public");
            }
            if path.starts_with("/api/") || path.starts_with("/auth/") {
                let r429 = &op["responses"]["429"];
                assert!(
                    r429["headers"]["Retry-After"].is_object(),
                    "{method} {path}"
                );
            }
            // Every error response carries CONTRACT's {"detail": …} body.
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    let detail = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(detail["required"], json!(["detail"]));
}

#[test]
fn schemas_carry_the_wire_fields() {
    let doc = generated();
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect()
    };
    for field in [
        "call_id",
        "title",
        "is_video_enabled",
        "status",
        "created_at",
        "expires_at",
        "join_url",
    ] {
        assert!(props("CallResponse").contains(field), "Call.{field}");
    }
    assert_eq!(
        schemas["CallStatus"]["enum"],
        json!(["active", "ended", "expired"])
    );
    assert_eq!(
        schemas["CallResponse"]["properties"]["created_at"]["format"],
        "date-time"
    );
    assert!(props("TelegramAuthRequest").contains("initData"));
    for field in ["user", "expires_in"] {
        assert!(props("TelegramAuthResponse").contains(field));
    }
    for field in [
        "id",
        "telegram_user_id",
        "username",
        "first_name",
        "last_name",
        "photo_url",
    ] {
        assert!(props("UserResponse").contains(field), "User.{field}");
    }
    assert!(props("WsTokenResponse").contains("token"));
    for field in [
        "id",
        "telegram_user_id",
        "display_name",
        "username",
        "photo_url",
        "last_call_at",
    ] {
        assert!(props("FriendResponse").contains(field), "Friend.{field}");
    }
    for field in [
        "call_id",
        "participant_count",
        "avg_duration_seconds",
        "avg_audio_bitrate_kbps",
        "total_audio_packets_lost",
        "avg_audio_jitter_ms",
        "avg_rtt_ms",
    ] {
        assert!(props("CallStatsSummaryResponse").contains(field), "{field}");
    }
    assert!(props("WebRtcConfigResponse").contains("turn_servers"));
    for field in ["url", "urls", "username", "credential"] {
        assert!(props("TurnServerEntry").contains(field), "{field}");
    }
    // Query parameters of the list routes.
    let friends_params: BTreeSet<String> = doc["paths"]["/api/friends"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|p| assert_eq!(p["in"], "query"))
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        friends_params,
        ["limit", "offset", "query"].map(String::from).into()
    );
}

#[test]
fn stats_figures_schema_names_the_fields_of_the_domain_type() {
    // The request and response flatten the domain's CallStatsInput; the document describes
    // it through the StatsFigures schema, which must not drift from it.
    let doc = generated();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["StatsFigures"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let on_the_wire: BTreeSet<String> =
        serde_json::to_value(telcall_domain::CallStatsInput::default())
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    assert_eq!(documented, on_the_wire);
    assert_eq!(documented.len(), 11);
}

#[test]
fn websocket_route_documents_the_handshake() {
    let doc = generated();
    let op = &doc["paths"]["/ws/calls/{call_id}"]["get"];
    assert!(op["responses"]["101"].is_object());
    let text = format!(
        "{} {}",
        op["description"], op["responses"]["101"]["description"]
    );
    assert!(text.contains("token.<credential>"));
    for code in ["4401", "4403", "4404", "4409", "4429"] {
        assert!(text.contains(code), "close code {code}");
    }
    assert_eq!(
        op["security"],
        json!([{"wsSubprotocol": []}, {"bearerAuth": []}])
    );
    let described = doc["info"]["description"].as_str().unwrap();
    assert!(described.contains("/ws/calls/{call_id}"));
}

#[tokio::test]
async fn served_publicly_and_equal_to_the_generated_document() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: Value = resp.json().await.unwrap();
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(served, generated());
    app.stop().await;
}

/// Without credentials, every documented operation is routed (not the default service's
/// 404 "Not Found", not 405) and answers a status its documentation lists.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = generated();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let url = app.url(&path.replace("{call_id}", "no-such-call-000000"));
            let req = match method {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                other => panic!("unexpected method {other}"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !(status == 404 && body.contains("\"Not Found\"")),
                "{method} {path} is documented but not routed: {status} {body}"
            );
            assert!(
                op["responses"].get(status.as_str()).is_some(),
                "{method} {path} answered {status}, which its documentation does not list: {body}"
            );
            if !status.is_success() {
                let body: Value = serde_json::from_str(&body).unwrap();
                assert!(body["detail"].is_string(), "{method} {path}: {body}");
            }
        }
    }
    app.stop().await;
}
