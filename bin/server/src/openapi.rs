//! The OpenAPI 3.1 document of the HTTP API (generated with utoipa from the handlers'
//! `#[utoipa::path]` annotations), served at `GET /api/openapi.json` and committed as
//! `docs/openapi.json`.
//!
//! The handlers describe their own bodies and statuses; [`ApiDoc`]'s modifiers add what is
//! common to many routes in one place: the security schemes and where they apply, the
//! rate-limit / unavailable-database / body-size errors, and the WebSocket route, which is
//! not an HTTP handler utoipa could read.

use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::schema::{Array, ArrayBuilder, KnownFormat, Object, SchemaFormat, SchemaType};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Content, Header, ObjectBuilder, PathItem, Ref, RefOr, Required, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

/// Path the document is served at.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// Name of the security scheme for the `access_token` session cookie.
pub const COOKIE_SCHEME: &str = "cookieAuth";
/// Name of the security scheme for `Authorization: Bearer <jwt>`.
pub const BEARER_SCHEME: &str = "bearerAuth";
/// Name of the security scheme for Telegram's webhook secret header.
pub const TELEGRAM_SECRET_SCHEME: &str = "telegramWebhookSecret";
/// Name of the security scheme for the WebSocket subprotocol credential.
pub const WS_SUBPROTOCOL_SCHEME: &str = "wsSubprotocol";

use crate::routes::telegram::WEBHOOK_PATH;

/// Path of the WebSocket signaling route, as the document spells it.
pub const WS_PATH: &str = "/ws/calls/{call_id}";

const DESCRIPTION: &str = r#"REST and WebSocket signaling backend for group voice and video calls in
Telegram Mini Apps.

**Authentication.** `POST /auth/telegram` verifies Telegram's signed `initData` and starts a
session: a JWT in the httpOnly cookie `access_token`. Every `/api/...` route (except this
document) and `GET /auth/ws-token` take the cookie first, else `Authorization: Bearer <jwt>`.
Missing, malformed, expired or forged credentials answer 401 with `"Not authenticated"`,
`"Token has expired"` or `"Invalid token"`; a token of a user that no longer exists answers
401 `"User not found"`.

**Errors.** Every error body is JSON `{"detail": "<human readable message>"}` (422 and 429
included). A database outage answers 503 `{"detail": "Database unavailable"}`.

**Rate limits** (per client IP): `POST /auth/telegram` 3/minute and 20/hour, call creation
5/minute and 30/hour, everything else 100/minute; 429 carries `Retry-After`.

**Timestamps** are RFC 3339 with an explicit UTC offset.

**WebSocket signaling** lives at `GET /ws/calls/{call_id}` (see that path): the browser offers
exactly one subprotocol, `token.<credential>`, where the credential is a token from
`GET /auth/ws-token` (single use, at most 60 s) or the session JWT. The server accepts the
upgrade and then closes with 4403 (origin not allowed), 4401 (missing or invalid
credential), 4404 (call not found, expired or ended; the reason ends in "Please create a new
call."), 4429 (call is full) or 4409 (the same user connected again elsewhere)."#;

const WS_DESCRIPTION: &str = r#"Upgrades to the WebSocket that relays WebRTC signaling between the
participants of a call. The server accepts the upgrade first and reports refusals as close
codes, so the browser can tell them from a network error.

**Handshake**, checked in this order:
1. `Origin`, when present, must be an allowed origin (as CORS), else close **4403**
   "Origin not allowed".
2. Credential: the last value of `Sec-WebSocket-Protocol` with a `token.` (or `bearer `)
   prefix stripped, else `Authorization: Bearer <jwt>`. The frontend sends exactly one
   subprotocol, `token.<credential>`, and the server selects the first offered value. The
   credential is a token from `GET /auth/ws-token` or a session JWT. A token in the query
   string is not accepted. Missing or invalid: close **4401**.
3. The call must exist, be active and unexpired, else close **4404** "Call not found. Please
   create a new call." / "Call has expired. Please create a new call." / "Call has ended.
   Please create a new call.".
4. A full room: close **4429** "Call is full".
5. The same user connecting again replaces the older connection, which is closed with
   **4409**.

On server shutdown every connection is closed with **1001**.

**Server to client** (JSON text frames): `call_metadata` (always first, with
`room_start_time`), `participants_snapshot`, `user_joined`, `user_left`, relayed
`offer` / `answer` / `ice_candidate` (with `payload` and `from_user`), `call_ended` (with
`reason`, then the socket closes) and `error` (with `detail`; the connection stays open).

**Client to server**: `{"type": "offer" | "answer" | "ice_candidate", "payload": <any JSON>,
"to_user_id": <int or numeric string>}`."#;

/// A call's `status` on the wire (the schema of `telcall_domain::CallStatus`).
#[derive(utoipa::ToSchema)]
#[schema(as = CallStatus, rename_all = "lowercase")]
pub enum CallStatusSchema {
    /// Joinable.
    Active,
    /// Ended by its organizer, replaced by a newer call of the same organizer, or past the
    /// maximum call duration.
    Ended,
    /// Past its expiry time.
    Expired,
}

/// The JSON Schema `pattern` of text that must not contain a control character (Unicode
/// category Cc: U+0000–U+001F and U+007F–U+009F, what `char::is_control` finds).
pub const NO_CONTROL_CHARACTERS: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The JSON Schema `pattern` of text with at least one character that is not whitespace
/// (what is left after trimming is not empty).
pub const NOT_BLANK: &str = r"\S";

/// Schema of a call `title`: optional text, at most
/// [`MAX_TITLE_CHARS`](telcall_domain::services::MAX_TITLE_CHARS) characters, no control
/// characters.
pub fn title_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(
            [Type::String, Type::Null]
                .into_iter()
                .collect::<SchemaType>(),
        )
        .max_length(Some(telcall_domain::services::MAX_TITLE_CHARS))
        .pattern(Some(NO_CONTROL_CHARACTERS))
        .description(Some(
            "Optional title: at most 255 characters, no control characters; blank means none.",
        ))
        .build()
}

/// Schema of the code `POST /api/calls/join_by_code` takes: not blank once trimmed, at most
/// [`MAX_CODE_CHARS`](telcall_domain::services::MAX_CODE_CHARS) characters.
pub fn join_code_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(telcall_domain::services::MAX_CODE_CHARS))
        .pattern(Some(NOT_BLANK))
        .description(Some(
            "The call id, as shared in the link; surrounding whitespace is trimmed. A blank \
             code is refused with 400 \"Call code is required\".",
        ))
        .build()
}

/// Schema of a 64-bit signed integer (an internal id), with its range spelled out.
pub fn int64_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(i64::MIN))
        .maximum(Some(i64::MAX))
        .build()
}

/// Schema of a user's internal id in a request.
pub fn user_id_schema() -> Object {
    let mut schema = int64_schema();
    schema.description = Some("Internal user id (`FriendResponse.id`).".to_owned());
    schema
}

/// Schema of `friend_ids`: at most
/// [`MAX_DELETE_IDS`](crate::routes::friends::MAX_DELETE_IDS) internal ids.
pub fn friend_ids_schema() -> Array {
    ArrayBuilder::new()
        .items(int64_schema())
        .max_items(Some(crate::routes::friends::MAX_DELETE_IDS))
        .description(Some("Internal ids of the friends to remove (at most 500)."))
        .build()
}

/// Schema of a page size: 1 to [`MAX_PAGE_SIZE`](telcall_domain::services::MAX_PAGE_SIZE),
/// [`DEFAULT_PAGE_SIZE`](telcall_domain::services::DEFAULT_PAGE_SIZE) when omitted.
pub fn page_limit_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(telcall_domain::services::MAX_PAGE_SIZE))
        .default(Some(telcall_domain::services::DEFAULT_PAGE_SIZE.into()))
        .build()
}

/// Schema of a page offset: at least 0, 0 when omitted.
pub fn page_offset_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .default(Some(0.into()))
        .build()
}

/// Schema of the friend search text: at most
/// [`MAX_SEARCH_CHARS`](telcall_domain::services::MAX_SEARCH_CHARS) characters, no control
/// characters.
pub fn friend_search_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(telcall_domain::services::MAX_SEARCH_CHARS))
        .pattern(Some(NO_CONTROL_CHARACTERS))
        .build()
}

/// The OpenAPI document of every HTTP route, plus the WebSocket route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "telcall",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION,
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        crate::routes::health::root,
        crate::routes::health::health,
        crate::routes::health::ready,
        crate::routes::health::metrics,
        crate::routes::auth::telegram_auth,
        crate::routes::auth::ws_token,
        crate::routes::auth::logout,
        crate::routes::calls::create_call,
        crate::routes::calls::get_call,
        crate::routes::calls::end_call,
        crate::routes::calls::join_by_code,
        crate::routes::calls::call_friend,
        crate::routes::friends::list_friends,
        crate::routes::friends::delete_friends,
        crate::routes::stats::create_stats,
        crate::routes::stats::list_stats,
        crate::routes::stats::stats_summary,
        crate::routes::webrtc::webrtc_config,
        crate::routes::telegram::webhook,
        openapi_json,
    ),
    components(schemas(crate::error::ErrorBody, CallStatusSchema)),
    modifiers(&SecurityAddon, &CommonResponses, &WebSocketRoute),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Telegram sign-in, sessions and WebSocket tickets"),
        (name = "calls", description = "Creating, reading, joining and ending calls"),
        (name = "friends", description = "People the user shared a call with"),
        (name = "call-stats", description = "Call quality reports"),
        (name = "config", description = "Client configuration (ICE servers)"),
        (name = "signaling", description = "The WebSocket signaling route"),
        (name = "telegram", description = "Telegram bot updates (authenticated by the webhook secret)"),
        (name = "meta", description = "This document"),
    ),
)]
pub struct ApiDoc;

/// The document, built once.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// The OpenAPI document (a copy of the one served).
pub fn document() -> utoipa::openapi::OpenApi {
    DOCUMENT.clone()
}

/// The document as pretty-printed JSON with a trailing newline, as committed in
/// `docs/openapi.json`.
pub fn pretty_json() -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&*DOCUMENT)?;
    text.push('\n');
    Ok(text)
}

/// This OpenAPI document. Public: no authentication.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(&*DOCUMENT)
}

/// Registers `GET /api/openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(OPENAPI_PATH).route(web::get().to(openapi_json)));
}

/// Whether the operation at `path` needs a session (cookie or bearer).
fn needs_session(path: &str) -> bool {
    (path.starts_with("/api/") && path != OPENAPI_PATH && path != WEBHOOK_PATH)
        || path == "/auth/ws-token"
}

/// The operations of a path item, mutably.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

fn string_schema() -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn integer_schema() -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new().schema_type(Type::Integer).into()
}

/// What a 401 of an authenticated route means.
const UNAUTHORIZED: &str = "Not authenticated / Token has expired / Invalid token / User not found";

/// Adds `response` under `status` unless the handler already documents that status.
fn add_missing(op: &mut Operation, status: &str, response: impl FnOnce() -> Response) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(response()));
}

/// Declares the cookie, bearer and WebSocket-subprotocol schemes and requires a session on
/// every `/api/...` route (except the document) and on `GET /auth/ws-token`.
struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Session JWT set by `POST /auth/telegram` (httpOnly). Checked before the \
                 Authorization header.",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The session JWT in `Authorization: Bearer <jwt>` (for clients whose \
                         WebView drops cookies; see AUTH_TOKEN_IN_BODY).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            WS_SUBPROTOCOL_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Sec-WebSocket-Protocol",
                "WebSocket handshake only: the subprotocol `token.<credential>`, where the \
                 credential is a token from `GET /auth/ws-token` or a session JWT.",
            ))),
        );
        components.add_security_scheme(
            TELEGRAM_SECRET_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                telcall_telegram::secret::SECRET_HEADER,
                "Telegram bot updates only: BOT_WEBHOOK_SECRET, or (when unset) the secret \
                 derived from BOT_TOKEN that telcall registers with setWebhook.",
            ))),
        );
        for (path, item) in &mut openapi.paths.paths {
            if path == WEBHOOK_PATH {
                for op in operations_mut(item) {
                    op.security = Some(vec![SecurityRequirement::new(
                        TELEGRAM_SECRET_SCHEME,
                        Vec::<String>::new(),
                    )]);
                }
                continue;
            }
            if !needs_session(path) {
                continue;
            }
            for op in operations_mut(item) {
                op.security = Some(vec![
                    SecurityRequirement::new(COOKIE_SCHEME, Vec::<String>::new()),
                    SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new()),
                ]);
            }
        }
    }
}

/// Adds the errors many routes share, where the handler did not document them itself: 401
/// on authenticated routes, 429 on rate-limited ones, 503 where the database is read, and
/// 413 / 415 / 422 where a JSON body is parsed.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            let session = needs_session(path);
            let rate_limited = path.starts_with("/api/") || path.starts_with("/auth/");
            let database = session || path == "/auth/telegram" || path == "/health/ready";
            for op in operations_mut(item) {
                if session {
                    add_missing(op, "401", || error_response(UNAUTHORIZED));
                }
                if rate_limited {
                    add_missing(op, "429", || error_response(""));
                    if let Some(RefOr::T(r)) = op.responses.responses.get_mut("429") {
                        let mut header = Header::new(integer_schema());
                        header.description = Some("Seconds to wait before retrying".to_owned());
                        r.headers.insert("Retry-After".to_owned(), header);
                    }
                }
                if database {
                    add_missing(op, "503", || error_response(""));
                }
                // The webhook reads raw bytes: no Content-Type check, no JSON-shape 422.
                if op.request_body.is_some() && path != WEBHOOK_PATH {
                    for status in ["413", "415", "422"] {
                        add_missing(op, status, || error_response(""));
                    }
                }
                for (status, response) in &mut op.responses.responses {
                    if let RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        r.description = default_description(status).to_owned();
                    }
                }
            }
        }
    }
}

/// A description for a response a handler left undescribed: what the shared errors mean,
/// else the status's reason phrase.
fn default_description(status: &str) -> &'static str {
    match status {
        "401" => return UNAUTHORIZED,
        "413" => return "Request body is too large",
        "415" => return "Content-Type must be application/json",
        "422" => return "Malformed JSON body, or a field out of range",
        "429" => return "Too many requests from this client IP",
        "503" => return "Database unavailable",
        _ => {}
    }
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Response")
}

/// The `Sec-WebSocket-Key` of an opening handshake: 16 bytes in canonical base64 (22
/// characters, the last of them carrying 2 bits, then `==`), as the server checks it.
pub const WEBSOCKET_KEY_PATTERN: &str = "^[A-Za-z0-9+/]{21}[AQgw]==$";

/// The `Upgrade` header of an opening handshake names `websocket`, in any letter case.
pub const UPGRADE_PATTERN: &str = "[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]";

/// The `Connection` header of an opening handshake names `Upgrade`, in any letter case.
pub const CONNECTION_PATTERN: &str = "[Uu][Pp][Gg][Rr][Aa][Dd][Ee]";

/// A string schema with a pattern.
fn pattern_schema(pattern: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .into()
}

/// A required header parameter.
fn required_header(
    name: &str,
    description: &str,
    schema: RefOr<utoipa::openapi::schema::Schema>,
) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
}

/// A string schema with one allowed value.
fn enum_schema(value: &str) -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .into()
}

/// Documents `GET /ws/calls/{call_id}`: a 101 upgrade, the subprotocol credential and the
/// close codes.
struct WebSocketRoute;

impl Modify for WebSocketRoute {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let operation = OperationBuilder::new()
            .tag("signaling")
            .operation_id(Some("ws_calls"))
            .summary(Some("WebSocket signaling for one call"))
            .description(Some(WS_DESCRIPTION))
            .parameter(
                ParameterBuilder::new()
                    .name("call_id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("Public call id"))
                    .schema(Some(string_schema())),
            )
            .parameter(required_header(
                "Upgrade",
                "`websocket` (any letter case): this is a WebSocket opening handshake \
                 (RFC 6455)",
                pattern_schema(UPGRADE_PATTERN),
            ))
            .parameter(required_header(
                "Connection",
                "`Upgrade` (any letter case), possibly beside other tokens, as in \
                 `keep-alive, Upgrade`; not `close`",
                pattern_schema(CONNECTION_PATTERN),
            ))
            .parameter(required_header(
                "Sec-WebSocket-Version",
                "`13`, the only version served",
                enum_schema("13"),
            ))
            .parameter(required_header(
                "Sec-WebSocket-Key",
                "16 random bytes, base64-encoded (24 characters)",
                pattern_schema(WEBSOCKET_KEY_PATTERN),
            ))
            .parameter(
                ParameterBuilder::new()
                    .name("Sec-WebSocket-Protocol")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "`token.<credential>`: a `GET /auth/ws-token` token or a session JWT",
                    ))
                    .schema(Some(string_schema())),
            )
            .parameter(
                ParameterBuilder::new()
                    .name("Origin")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "When present, must be an allowed origin, else close 4403",
                    ))
                    .schema(Some(string_schema())),
            )
            .response(
                "101",
                ResponseBuilder::new()
                    .description(
                        "Switching Protocols. Refusals arrive as close codes after the \
                         upgrade: 4401 missing or invalid credential, 4403 origin not \
                         allowed, 4404 call not found / expired / ended (reason ends in \
                         \"Please create a new call.\"), 4409 replaced by a newer connection \
                         of the same user, 4429 call is full, 1001 server shutting down.",
                    )
                    .header("Sec-WebSocket-Protocol", Header::new(string_schema()))
                    .build(),
            )
            .response(
                "400",
                error_response(
                    "Not a WebSocket opening handshake (a plain GET, or an upgrade header \
                     missing or wrong), e.g. \"WebSocket upgrade is expected\"",
                ),
            )
            .security(SecurityRequirement::new(
                WS_SUBPROTOCOL_SCHEME,
                Vec::<String>::new(),
            ))
            .security(SecurityRequirement::new(
                BEARER_SCHEME,
                Vec::<String>::new(),
            ))
            .build();
        openapi.paths.paths.insert(
            WS_PATH.to_owned(),
            PathItem::new(HttpMethod::Get, operation),
        );
    }
}
