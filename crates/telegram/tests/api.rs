//! The Bot API client against a local server playing the Bot API: results, Telegram's
//! refusals, timeouts and unreachable hosts, and the token never showing in an error.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use secrecy::SecretString;
use serde_json::json;
use telcall_telegram::{BotApi, BotApiError};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "4242:SECRET-token-that-must-never-show";

fn api(base: &str) -> BotApi {
    BotApi::new(base, SecretString::from(TOKEN)).unwrap()
}

#[tokio::test]
async fn results_come_back_and_the_token_is_in_the_path_only() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getWebhookInfo")))
        .and(body_json(json!({})))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"ok": true, "result": {"url": "", "pending_update_count": 0}}),
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let info = api(&format!("{}/", server.uri()))
        .get_webhook_info()
        .await
        .unwrap();
    assert_eq!(info, json!({"url": "", "pending_update_count": 0}));
}

#[tokio::test]
async fn refusals_and_outages_are_errors_without_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/sendMessage")))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/bot{TOKEN}/getMe")))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy error</html>"))
        .mount(&server)
        .await;
    let client = api(&server.uri());
    let err = client
        .send_message(&json!({"chat_id": 1, "text": "hi"}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        BotApiError::Rejected {
            method: "sendMessage".into(),
            status: 403,
            description: "Forbidden: bot was blocked by the user".into()
        }
    );
    let err = client.get_me().await.unwrap_err();
    assert!(matches!(err, BotApiError::Malformed { .. }), "{err:?}");
    // Nothing listens on port 9.
    let err = api("http://127.0.0.1:9").get_me().await.unwrap_err();
    assert!(matches!(err, BotApiError::Unreachable { .. }), "{err:?}");
    for e in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!e.contains("SECRET-token"), "{e}");
    }
}
