//! `GET /ws/calls/{call_id}`: the WebSocket bridge between a browser and the signaling hub.

use actix_web::web;

/// Registers the WebSocket route.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
