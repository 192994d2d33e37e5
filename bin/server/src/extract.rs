//! Request extractors: [`CurrentUser`] (the signed-in user of every `/api/...` route) and
//! [`JsonObject`] (a JSON body that must be an object); and [`client_ip`], the address rate
//! limits and logs see (the peer, or the forwarded address from a trusted proxy).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use ipnet::IpNet;
use telcall_domain::{User, UserId};

use crate::auth::request_token;
use crate::error::ApiError;
use crate::state::AppState;

/// The signed-in user: cookie `access_token` first, else `Authorization: Bearer`.
/// Missing → 401 "Not authenticated"; expired → "Token has expired"; otherwise bad →
/// "Invalid token" (a revoked session included); a deleted user → "User not found".
/// The verified [`telcall_auth::SessionClaims`] are left in the request's extensions.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = request_token(req);
        let req = req.clone();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let token =
                token.ok_or_else(|| ApiError::Unauthorized("Not authenticated".to_owned()))?;
            let claims = state
                .sessions
                .verify_live_session(&token, state.revocations.as_ref())
                .await?;
            let user = state
                .users
                .authenticate(UserId::new(claims.user_id))
                .await?;
            tracing::Span::current().record("user", user.id.get());
            // For handlers that need the session itself (tickets are bound to it).
            req.extensions_mut().insert(claims);
            Ok(CurrentUser(user))
        })
    }
}

/// A JSON request body that must be a JSON object, read into `T`. Like `web::Json` (same
/// size limit, `Content-Type` check and 413 / 415 / 422 answers), but a body that is valid
/// JSON yet not an object (`[null, null]`, `7`) is refused with 422 instead of being read
/// as a struct written positionally.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            if !value.is_object() {
                return Err(ApiError::Unprocessable(
                    "Invalid request body: expected a JSON object".to_owned(),
                )
                .into());
            }
            serde_json::from_value(value)
                .map(JsonObject)
                .map_err(|e| ApiError::Unprocessable(format!("Invalid request body: {e}")).into())
        })
    }
}

/// The client IP of `req`: the socket peer, unless the peer is a trusted proxy, in which
/// case the right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
/// A client cannot choose its own address by sending the header: from an untrusted peer it
/// is ignored.
pub fn client_ip(req: &actix_web::dev::ServiceRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    resolve_client_ip(
        req.peer_addr().map(|a| a.ip()),
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok()),
        trusted,
    )
}

/// [`client_ip`] on plain values.
pub fn resolve_client_ip<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = forwarded_for
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_header_ignored() {
        let ip = resolve_client_ip(
            Some("203.0.113.9".parse().unwrap()),
            ["1.2.3.4"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_rightmost_untrusted_hop() {
        let ip = resolve_client_ip(
            Some("10.0.0.1".parse().unwrap()),
            ["6.6.6.6, 198.51.100.7", "10.0.0.2"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, Some("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_without_header_is_peer() {
        let ip = resolve_client_ip(
            Some("10.0.0.1".parse().unwrap()),
            std::iter::empty(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, Some("10.0.0.1".parse().unwrap()));
    }
}
