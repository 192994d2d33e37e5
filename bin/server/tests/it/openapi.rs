//! The OpenAPI document: the committed `docs/openapi.json` matches the generated one, the
//! app serves it publicly at `GET /api/openapi.json`, and it describes every route the app
//! registers (and nothing the app does not route).
//!
//! After changing a handler's annotations or a DTO, regenerate the committed copy with
//! `UPDATE_OPENAPI=1 cargo test -p telcall-server --test it -- openapi`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::spawn_app;
use serde_json::{Value, json};

/// Methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every route of CONTRACT.md (plus the beyond-contract ones), as the document spells it.
const CONTRACT_ROUTES: [(&str, &str); 21] = [
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
    ("post", "/api/telegram/webhook"),
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

/// (method, normalized path) of every `web::resource(<paths>)….route(web::<method>()…)`
/// registration in the server's sources (all of `src/`), so a new route without
/// documentation fails this test. Paths are string literals, a list of them, or one of the
/// path constants the document also uses.
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
    let constants = [
        ("OPENAPI_PATH", telcall_server::openapi::OPENAPI_PATH),
        (
            "WEBHOOK_PATH",
            telcall_server::routes::telegram::WEBHOOK_PATH,
        ),
        ("crate::openapi::WS_PATH", telcall_server::openapi::WS_PATH),
    ];
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("cfg.route(") && !text.contains(".route(\""),
            "{}: register routes as `web::resource(path).route(…)`, so that a wrong method \
             answers 405 with Allow",
            file.display()
        );
        for registration in text.split("web::resource(").skip(1) {
            let (args, chain) = registration.split_once(')').unwrap();
            let args = args.trim();
            let paths: Vec<String> = if args.starts_with('"') || args.starts_with('[') {
                args.split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect()
            } else {
                let (_, value) = constants
                    .iter()
                    .find(|(name, _)| *name == args)
                    .unwrap_or_else(|| panic!("{}: unknown path constant {args}", file.display()));
                vec![(*value).to_owned()]
            };
            // The methods are the `.route(web::<method>()` calls chained onto this resource.
            let methods: Vec<String> = chain
                .split(".route(")
                .skip(1)
                .filter_map(|r| r.trim_start().strip_prefix("web::"))
                .filter_map(|r| r.split_once("()"))
                .map(|(m, _)| m.to_owned())
                .collect();
            assert!(
                !methods.is_empty(),
                "{}: resource {paths:?} without a route",
                file.display()
            );
            for path in &paths {
                for method in &methods {
                    // actix spells path parameters as the document does: `{call_id}`.
                    out.insert((method.clone(), normalize(path)));
                }
            }
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
            "{} is missing ({e}); run UPDATE_OPENAPI=1 cargo test -p telcall-server --test it -- openapi",
            path.display()
        )
    });
    let committed: Value = serde_json::from_str(&committed).unwrap();
    let fresh: Value = serde_json::from_str(&fresh).unwrap();
    assert!(
        committed == fresh,
        "docs/openapi.json is stale; regenerate it with \
         UPDATE_OPENAPI=1 cargo test -p telcall-server --test it -- openapi"
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
            let secured = (path.starts_with("/api/")
                && path != "/api/openapi.json"
                && path != "/api/telegram/webhook")
                || path == "/auth/ws-token";
            if path == "/api/telegram/webhook" {
                assert_eq!(op["security"], json!([{"telegramWebhookSecret": []}]));
                assert!(op["responses"]["401"].is_object());
            } else if secured {
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
fn stats_figures_schema_publishes_the_enforced_bounds() {
    // Every numeric figure carries the minimum and maximum the server enforces (422
    // outside them), and video_resolution its length limit.
    let doc = generated();
    let properties = &doc["components"]["schemas"]["StatsFigures"]["properties"];
    for bound in telcall_domain::CallStatsInput::BOUNDS {
        let schema = &properties[bound.name];
        assert_eq!(schema["minimum"].as_f64(), Some(0.0), "{}", bound.name);
        assert_eq!(
            schema["maximum"].as_f64(),
            Some(bound.maximum),
            "{}",
            bound.name
        );
        let kind = if bound.integer { "integer" } else { "number" };
        assert_eq!(
            schema["type"],
            serde_json::json!([kind, "null"]),
            "{}",
            bound.name
        );
    }
    assert_eq!(
        properties["video_resolution"]["maxLength"].as_u64(),
        Some(telcall_domain::CallStatsInput::MAX_RESOLUTION_LEN as u64)
    );
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

/// A documented path asked with a method it does not serve answers 405, with `Allow`
/// naming exactly the documented methods and a JSON `{"detail"}` body (not the 404 of an
/// unknown path).
#[tokio::test]
async fn wrong_method_on_a_documented_path_is_405_with_allow() {
    let app = spawn_app().await;
    let doc = generated();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_ascii_uppercase())
            .collect();
        let url = app.url(&path.replace("{call_id}", "no-such-call-000000"));
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if documented.contains(method) {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = app
                .client
                .request(method.clone(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 405, "{method} {path}");
            let allow: BTreeSet<String> = resp.headers()["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(allow, documented, "{method} {path}");
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["detail"], "Method Not Allowed", "{method} {path}");
        }
    }
    let resp = app
        .client
        .delete(app.url("/api/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    app.stop().await;
}

/// The WebSocket route is documented as an opening handshake: with the four documented
/// headers the server switches protocols (101; refusals then arrive as close codes), and a
/// request missing any of them, or with one outside its schema, is a 400 with a JSON body,
/// a plain GET included.
#[tokio::test]
async fn websocket_route_answers_as_documented() {
    use telcall_server::openapi::{CONNECTION_PATTERN, UPGRADE_PATTERN, WEBSOCKET_KEY_PATTERN};
    let doc = generated();
    let op = &doc["paths"]["/ws/calls/{call_id}"]["get"];
    let required: Vec<(String, Value)> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header" && p["required"] == true)
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["schema"].clone()))
        .collect();
    let schema_of = |name: &str| {
        required
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{name} is not a required header"))
    };
    assert_eq!(required.len(), 4, "{required:?}");
    assert_eq!(schema_of("Upgrade")["pattern"], UPGRADE_PATTERN);
    assert_eq!(schema_of("Connection")["pattern"], CONNECTION_PATTERN);
    assert_eq!(schema_of("Sec-WebSocket-Version")["enum"], json!(["13"]));
    assert_eq!(
        schema_of("Sec-WebSocket-Key")["pattern"],
        WEBSOCKET_KEY_PATTERN
    );

    let app = spawn_app().await;
    let url = app.url("/ws/calls/no-such-call-000000");
    let handshake = [
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    // One connection per request: a handshake is the last request of its connection.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let send = |headers: Vec<(&'static str, &'static str)>| {
        let mut req = client.get(&url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send()
    };
    assert_eq!(send(handshake.to_vec()).await.unwrap().status(), 101);

    let mut refused: Vec<Vec<(&str, &str)>> = vec![vec![]];
    for skip in 0..handshake.len() {
        let mut headers = handshake.to_vec();
        headers.remove(skip);
        refused.push(headers);
    }
    for (name, bad) in [
        ("Upgrade", "h2c"),
        ("Connection", "close"),
        ("Sec-WebSocket-Version", "8"),
        // 16 bytes, but not in canonical base64 (the last character carries stray bits).
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="),
        ("Sec-WebSocket-Key", "c2hvcnQ="),
    ] {
        let headers = handshake
            .iter()
            .map(|&(n, v)| (n, if n == name { bad } else { v }))
            .collect();
        refused.push(headers);
    }
    for headers in refused {
        let resp = send(headers.clone())
            .await
            .unwrap_or_else(|e| panic!("{headers:?}: {e:?}"));
        assert_eq!(resp.status(), 400, "{headers:?}");
        assert!(op["responses"]["400"].is_object());
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].is_string(), "{headers:?}: {body}");
    }
    app.stop().await;
}

/// The bounds the document publishes for request fields and query parameters are the
/// constants the server enforces.
#[test]
fn request_bounds_are_the_enforced_constants() {
    use telcall_domain::services::{
        DEFAULT_PAGE_SIZE, MAX_CODE_CHARS, MAX_PAGE_SIZE, MAX_SEARCH_CHARS, MAX_TITLE_CHARS,
    };
    use telcall_server::openapi::{NO_CONTROL_CHARACTERS, NOT_BLANK};
    let doc = generated();
    let schemas = &doc["components"]["schemas"];
    let title = &schemas["CreateCallRequest"]["properties"]["title"];
    assert_eq!(title["maxLength"], MAX_TITLE_CHARS);
    assert_eq!(title["pattern"], NO_CONTROL_CHARACTERS);
    let code = &schemas["JoinByCodeRequest"]["properties"]["call_code"];
    assert_eq!(code["minLength"], 1);
    assert_eq!(code["maxLength"], MAX_CODE_CHARS);
    assert_eq!(code["pattern"], NOT_BLANK);
    let ids = &schemas["DeleteFriendsRequest"]["properties"]["friend_ids"];
    assert_eq!(
        ids["maxItems"],
        telcall_server::routes::friends::MAX_DELETE_IDS
    );
    for int in [
        &ids["items"],
        &schemas["CallFriendRequest"]["properties"]["friend_id"],
    ] {
        assert_eq!(int["type"], "integer");
        assert_eq!(int["minimum"], i64::MIN);
        assert_eq!(int["maximum"], i64::MAX);
    }
    assert_eq!(
        schemas["StatsFigures"]["properties"]["video_resolution"]["pattern"],
        NO_CONTROL_CHARACTERS
    );
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))["schema"]
            .clone()
    };
    for path in ["/api/friends", "/api/call-stats/"] {
        let limit = param(path, "limit");
        assert_eq!(limit["minimum"], 1, "{path}");
        assert_eq!(limit["maximum"], MAX_PAGE_SIZE, "{path}");
        assert_eq!(limit["default"], DEFAULT_PAGE_SIZE, "{path}");
    }
    assert_eq!(param("/api/friends", "offset")["minimum"], 0);
    let query = param("/api/friends", "query");
    assert_eq!(query["maxLength"], MAX_SEARCH_CHARS);
    assert_eq!(query["pattern"], NO_CONTROL_CHARACTERS);
}

/// At each published bound the server accepts, and just past it refuses, so a client
/// generated from the document and the server agree on which requests are valid.
#[tokio::test]
async fn published_bounds_hold_at_their_edges() {
    let app = spawn_app().await;
    let ada = app.sign_in(4101, "Ada").await;
    let status = |resp: reqwest::Response| resp.status().as_u16();
    for (query, expected) in [
        ("limit=1", 200),
        ("limit=100", 200),
        ("limit=0", 422),
        ("limit=101", 422),
        ("offset=0", 200),
        ("offset=9223372036854775807", 200),
        ("offset=-1", 422),
        ("query=%C2%A0ada", 200),
        ("query=a%C2%85", 422),
        ("query=a%7F", 422),
    ] {
        let resp = app
            .get(&format!("/api/friends?{query}"), &ada)
            .send()
            .await
            .unwrap();
        assert_eq!(status(resp), expected, "/api/friends?{query}");
    }
    for (query, expected) in [
        ("limit=1", 200),
        ("limit=100", 200),
        ("limit=0", 422),
        ("limit=101", 422),
    ] {
        let resp = app
            .get(&format!("/api/call-stats/?{query}"), &ada)
            .send()
            .await
            .unwrap();
        assert_eq!(status(resp), expected, "/api/call-stats/?{query}");
    }
    for (title, expected) in [
        (json!("a".repeat(255)), 201),
        (json!("\u{a0}ok\u{2028}"), 201),
        (json!(null), 201),
        (json!("a".repeat(256)), 422),
        (json!("bell\u{7}"), 422),
        (json!("nel\u{85}"), 422),
    ] {
        let resp = app
            .post("/api/calls/", &ada, &json!({"title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(status(resp), expected, "title {title}");
    }
    // A code that is blank once trimmed is refused (400, CONTRACT's text); any other code
    // up to the maximum length is looked up.
    for (code, expected) in [
        (String::new(), 400),
        (" \t ".to_owned(), 400),
        ("x".to_owned(), 404),
        ("x".repeat(255), 404),
        ("\u{feff}".to_owned(), 404),
    ] {
        let resp = app
            .post("/api/calls/join_by_code", &ada, &json!({"call_code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(status(resp), expected, "call_code {code:?}");
    }
    let resp = app
        .post(
            "/api/friends/delete",
            &ada,
            &json!({"friend_ids": vec![1; 500]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(status(resp), 200);
    let resp = app
        .post(
            "/api/friends/delete",
            &ada,
            &json!({"friend_ids": vec![1; 501]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(status(resp), 422);
    for id in [i64::MIN, i64::MAX] {
        let resp = app
            .post("/api/calls/friend", &ada, &json!({"friend_id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(status(resp), 404, "friend_id {id}");
    }
    app.stop().await;
}

/// A JSON body must be a JSON object: an array or a scalar is refused with 422 and changes
/// nothing (serde would otherwise read `[null, null]` as a struct written positionally).
#[tokio::test]
async fn json_bodies_must_be_objects() {
    let app = spawn_app().await;
    let ada = app.sign_in(4102, "Ada").await;
    for (path, body) in [
        ("/api/calls/", json!([null, null])),
        ("/api/calls/", json!([])),
        ("/api/calls/", json!(7)),
        ("/api/calls/join_by_code", json!(["x"])),
        ("/api/calls/friend", json!([5])),
        ("/api/friends/delete", json!([[1]])),
        ("/api/call-stats/", json!(["x"])),
    ] {
        let resp = app.post(path, &ada, &body).send().await.unwrap();
        assert_eq!(resp.status(), 422, "{path} {body}");
        assert_eq!(
            crate::common::detail(resp).await,
            "Invalid request body: expected a JSON object",
            "{path} {body}"
        );
    }
    let resp = app
        .client
        .post(app.url("/auth/telegram"))
        .json(&json!(["query_id=x"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(
        app.state
            .repo
            .list_active_calls_by_creator(ada.user_id())
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}
