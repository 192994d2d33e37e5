//! The telcall server: configuration, shared state, the actix-web application (REST API,
//! security layer, WebSocket signaling bridge) and background tasks.
//!
//! [`startup::Application`] builds and binds the server; `main.rs` is a thin CLI over it.

pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod extract;
pub mod import_legacy;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;
pub mod sweeper;
pub mod telegram;
pub mod telemetry;
pub mod turn;
pub mod ws;

pub use config::Settings;
pub use startup::{Application, BuildOptions, ShutdownHandle};

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Resolves once `shutdown` carries `true` (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
