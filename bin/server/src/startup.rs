//! Building and running the application: database, migrations check, state, background
//! tasks, the actix-web server, and graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, web};
use anyhow::Context;
use secrecy::ExposeSecret;
use telcall_domain::{CallPolicy, CallService, Clock, FriendService, StatsService, SystemClock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::error::{detail_response, json_error_handler, path_error_handler, query_error_handler};
use crate::events::HubCallEvents;
use crate::notifier::TelegramNotifier;
use crate::state::AppState;
use crate::turn::TurnDirectory;

/// WebSocket close code sent to every client on shutdown ("going away").
pub const SHUTDOWN_CLOSE_CODE: u16 = 1001;

/// How the application is assembled beyond its settings.
#[derive(Clone)]
pub struct BuildOptions {
    /// Apply pending migrations instead of refusing to start.
    pub migrate: bool,
    /// Time source (tests pass a manual clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            migrate: false,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Asks a running [`Application`] to shut down gracefully.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Starts the graceful shutdown (as SIGTERM would).
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    store: telcall_persistence::SeaStore,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects to the database, checks (or applies) migrations, builds the state, starts
    /// the background tasks and binds the listener.
    pub async fn build(settings: Settings, options: BuildOptions) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        tracing::info!(database = %settings.database_url_redacted(), "connecting to the database");
        let store = telcall_persistence::SeaStore::connect(
            settings.database_url.expose_secret(),
            &telcall_persistence::DbOptions {
                max_connections: settings.db_max_connections,
                connect_timeout: settings.db_connect_timeout,
                acquire_timeout: settings.db_connect_timeout,
                ..Default::default()
            },
        )
        .await
        .context("cannot connect to the database")?;

        let pending = store
            .pending_migrations()
            .await
            .context("cannot read the migration status")?;
        if !pending.is_empty() {
            if options.migrate || settings.debug {
                tracing::info!(count = pending.len(), "applying pending migrations");
                store
                    .migrate_up()
                    .await
                    .context("applying migrations failed")?;
            } else {
                anyhow::bail!(
                    "the database has {} pending migration(s) ({}); run `just migrate` \
                     (or `telcall migrate up`), or start with `telcall serve --migrate`",
                    pending.len(),
                    pending.join(", ")
                );
            }
        }

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = build_state(settings.clone(), &store, options.clock.clone())?;
        let mut tasks = vec![
            crate::sweeper::spawn(
                state.calls.clone(),
                settings.call_sweep_interval,
                shutdown_rx.clone(),
            ),
            crate::turn::spawn_healthcheck(
                state.turn.clone(),
                settings.webrtc.turn_healthcheck_interval,
                shutdown_rx.clone(),
            ),
        ];
        // Joins and leaves of WebSocket sessions, written in order off the relay path.
        tasks.extend(state.presence.spawn_worker(shutdown_rx.clone()));

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let server = http_server(state.clone(), listener)?;
        tracing::info!(host = %settings.host, port, debug = settings.debug, "telcall listening");
        Ok(Self {
            port,
            server,
            state,
            store,
            shutdown_tx,
            tasks,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests inspect the hub and the clock through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// Serves until SIGINT/SIGTERM or [`ShutdownHandle::shutdown`], then closes every
    /// WebSocket with 1001, finishes in-flight requests, stops the background tasks and
    /// closes the database pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            state,
            store,
            shutdown_tx,
            tasks,
            ..
        } = self;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        let mut shutdown_rx = shutdown_tx.subscribe();
        let stopped_early = tokio::select! {
            res = &mut server => Some(res),
            () = crate::shutdown_signal() => None,
            () = crate::stopped(&mut shutdown_rx) => None,
        };
        if let Some(res) = stopped_early {
            res.context("server task failed")?
                .context("server failed")?;
        } else {
            tracing::info!("shutting down: closing WebSocket sessions");
            state.hub.close_all(
                SHUTDOWN_CLOSE_CODE,
                telcall_signaling::close::REASON_SHUTDOWN,
            );
            handle.stop(true).await;
            let _ = server.await;
        }
        let _ = shutdown_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        if let Err(e) = store.close().await {
            tracing::warn!(error = %e, "closing the database pool failed");
        }
        tracing::info!("telcall stopped");
        Ok(())
    }
}

/// Builds the shared state on top of an open store.
pub fn build_state(
    settings: Arc<Settings>,
    store: &telcall_persistence::SeaStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let repo: Arc<dyn telcall_domain::Repositories> = Arc::new(store.clone());
    let hub = Arc::new(telcall_signaling::Hub::new(telcall_signaling::HubConfig {
        max_participants: settings.ws.max_participants_per_call,
        outbound_capacity: settings.ws.outbound_queue,
        max_message_size: settings.ws.max_message_size,
    }));
    let events = Arc::new(HubCallEvents::new(hub.clone()));
    let calls = CallService::new(
        repo.clone(),
        clock.clone(),
        events,
        CallPolicy {
            max_active_calls_per_user: settings.max_active_calls_per_user,
            ..CallPolicy::default()
        },
    );
    let verifier = telcall_auth::InitDataVerifier::new(&settings.bot_token)
        .with_max_age(settings.init_data_max_age);
    let sessions = crate::auth::build_sessions(&settings)?;
    Ok(AppState {
        presence: crate::ws::Presence::new(calls.clone(), crate::ws::presence::PRESENCE_QUEUE),
        friends: FriendService::new(repo.clone()),
        stats: StatsService::new(repo.clone(), clock.clone()),
        calls,
        verifier: Arc::new(verifier),
        sessions: Arc::new(sessions),
        tickets: Arc::new(telcall_auth::MemoryTicketStore::new()),
        notifier: Arc::new(TelegramNotifier::new(
            &settings.telegram_api_base,
            settings.bot_token.clone(),
        )?),
        hub,
        turn: Arc::new(TurnDirectory::new(&settings.webrtc)),
        repo,
        clock,
        settings,
    })
}

fn http_server(state: AppState, listener: TcpListener) -> anyhow::Result<Server> {
    use crate::middleware::{Limit, RateLimits};
    use actix_web::middleware::from_fn;

    let settings = state.settings.clone();
    let data = web::Data::new(state);
    // Built once, outside the worker factory: every worker counts in the same buckets.
    let limits = RateLimits::new(&settings)?;
    let server = actix_web::HttpServer::new(move || {
        // Layer order: see `crate::middleware` (the last `wrap` is the outermost).
        App::new()
            .wrap(from_fn(crate::middleware::csrf_guard))
            .wrap(limits.layer(Limit::DefaultPerMinute))
            .wrap(limits.layer(Limit::CallsPerHour))
            .wrap(limits.layer(Limit::CallsPerMinute))
            .wrap(limits.layer(Limit::SignInPerHour))
            .wrap(limits.layer(Limit::SignInPerMinute))
            .wrap(crate::middleware::cors(&data.settings))
            .wrap(from_fn(crate::middleware::json_error_bodies))
            .wrap(crate::middleware::security_headers(&data.settings))
            .wrap(tracing_actix_web::TracingLogger::<
                crate::middleware::RequestSpans,
            >::new())
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(data.settings.max_body_size)
                    .error_handler(json_error_handler),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .app_data(web::PathConfig::default().error_handler(path_error_handler))
            .configure(crate::routes::configure)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout.as_secs())
    .listen(listener)?
    .run();
    Ok(server)
}

async fn not_found() -> HttpResponse {
    detail_response(actix_web::http::StatusCode::NOT_FOUND, "Not Found")
}
