//! HTTP routes, one module per resource; [`configure`] mounts them all.

pub mod auth;
pub mod calls;
pub mod friends;
pub mod health;
pub mod stats;
pub mod telegram;
pub mod webrtc;

use actix_web::web;

/// Mounts every HTTP and WebSocket route of the main listener (`/metrics` only when it has
/// no listener of its own).
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    health::configure(cfg, with_metrics);
    auth::configure(cfg);
    calls::configure(cfg);
    friends::configure(cfg);
    stats::configure(cfg);
    telegram::configure(cfg);
    webrtc::configure(cfg);
    crate::openapi::configure(cfg);
    crate::ws::configure(cfg);
}
