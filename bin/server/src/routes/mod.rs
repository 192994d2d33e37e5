//! HTTP routes, one module per resource; [`configure`] mounts them all.

pub mod auth;
pub mod calls;
pub mod friends;
pub mod health;
pub mod stats;
pub mod webrtc;

use actix_web::web;

/// Mounts every HTTP and WebSocket route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    auth::configure(cfg);
    calls::configure(cfg);
    friends::configure(cfg);
    stats::configure(cfg);
    webrtc::configure(cfg);
    crate::openapi::configure(cfg);
    crate::ws::configure(cfg);
}
