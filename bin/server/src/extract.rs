//! Request extractors: [`CurrentUser`] (the signed-in user of every `/api/...` route) and
//! [`ClientIp`] (the peer, or the forwarded address from a trusted proxy).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use ipnet::IpNet;
use telcall_domain::User;

use crate::auth::request_token;
use crate::error::ApiError;
use crate::state::AppState;

/// The signed-in user: cookie `access_token` first, else `Authorization: Bearer`.
/// Missing → 401 "Not authenticated"; expired → "Token has expired"; otherwise bad →
/// "Invalid token"; a deleted user → "User not found".
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequest for CurrentUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = request_token(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let token =
                token.ok_or_else(|| ApiError::Unauthorized("Not authenticated".to_owned()))?;
            let claims = state.sessions.verify_session(&token).map_err(|e| {
                if e.is_server_error() {
                    ApiError::Internal(anyhow::anyhow!("session verification failed: {e}"))
                } else {
                    ApiError::Unauthorized(e.detail().to_owned())
                }
            })?;
            let user = state
                .repo
                .find_user(claims.user_id)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("User not found".to_owned()))?;
            tracing::Span::current().record("user", user.id);
            Ok(CurrentUser(user))
        })
    }
}

/// The client's IP address as rate limits and logs see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

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
