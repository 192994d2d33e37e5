//! Building and running the application: database, migrations check, state, background
//! tasks, the actix-web server, and graceful shutdown.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, web};
use anyhow::Context;
use secrecy::ExposeSecret;
use telcall_domain::{
    CallPolicy, CallService, Clock, FriendService, StatsService, SystemClock, UserService,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::error::{detail_response, json_error_handler, path_error_handler, query_error_handler};
use crate::events::HubCallEvents;
use crate::state::AppState;
use crate::turn::TurnDirectory;

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
    metrics: Option<(std::net::SocketAddr, Server)>,
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
                sqlite_cache_kib: settings.db_sqlite_cache_kib,
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
        close_abandoned_stays(&state).await;
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
        // With several instances, a logout on another one closes this one's WebSockets too.
        if state.redis.is_some() {
            tasks.push(crate::ws::logout::spawn_revocation_watch(
                state.clone(),
                shutdown_rx.clone(),
            ));
        }
        // Joins and leaves of WebSocket sessions, written in order off the relay path.
        tasks.extend(state.presence.spawn_worker(shutdown_rx.clone()));
        // The bot: webhook registration or polling, never on the start-up path.
        tasks.extend(crate::telegram::spawn_update_source(
            &state,
            shutdown_rx.clone(),
        ));

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot listen on {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let server = http_server(state.clone(), listener)?;
        tracing::info!(host = %settings.host, port, debug = settings.debug, "telcall listening");
        let metrics = match settings.metrics_addr {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on METRICS_ADDR {addr}"))?;
                let bound = listener.local_addr()?;
                tracing::info!(addr = %bound, "metrics listening");
                Some((bound, metrics_server(state.clone(), listener)?))
            }
        };
        Ok(Self {
            port,
            server,
            metrics,
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

    /// The address of the `METRICS_ADDR` listener, when there is one.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
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
            metrics,
            state,
            store,
            shutdown_tx,
            tasks,
            ..
        } = self;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        let metrics = metrics.map(|(_, metrics)| {
            let handle = metrics.handle();
            (handle, tokio::spawn(metrics))
        });
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
                telcall_signaling::close::GOING_AWAY,
                telcall_signaling::close::REASON_SHUTDOWN,
            );
            // WebSockets run on tasks of their own, which the workers' graceful stop does
            // not wait for: they get the shutdown timeout to finish their closing handshake.
            let timeout = state.settings.shutdown_timeout;
            if tokio::time::timeout(timeout, state.upgraded.closed())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = state.upgraded.open(),
                    "WebSockets still open at the shutdown timeout"
                );
            }
            handle.stop(true).await;
            let _ = server.await;
        }
        // With several instances: this instance's members leave the shared roster, and the
        // other instances tell their rooms.
        if let Some(broker) = &state.broker {
            broker.retire().await;
        }
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
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

/// Closes the participant rows a previous run left open (it stopped without recording the
/// leaves, e.g. killed): every room not held by a live instance. This instance holds none
/// yet; with several instances the shared roster names the rooms the others hold, and when
/// it cannot be read nothing is closed (rows of live rooms must stay open). A failure is
/// logged: the rows stay open until their call ends.
async fn close_abandoned_stays(state: &AppState) {
    let mut live: std::collections::HashSet<String> = state.hub.room_codes().into_iter().collect();
    if let Some(broker) = &state.broker {
        match broker.live_rooms().await {
            Ok(rooms) => live.extend(rooms),
            Err(error) => {
                tracing::warn!(%error, "Redis roster unavailable: participant stays left open by a previous run are kept");
                return;
            }
        }
    }
    match state.calls.close_abandoned_stays(&live).await {
        Ok(0) => {}
        Ok(closed) => tracing::info!(
            closed,
            "closed participant stays left open by a previous run"
        ),
        Err(error) => {
            tracing::warn!(%error, "could not close participant stays left open by a previous run")
        }
    }
}

/// Builds the shared state on top of an open store.
pub fn build_state(
    settings: Arc<Settings>,
    store: &telcall_persistence::SeaStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let repo: Arc<dyn telcall_domain::Repositories> = Arc::new(store.clone());
    let hub_config = telcall_signaling::HubConfig {
        max_participants: settings.ws.max_participants_per_call,
        outbound_capacity: settings.ws.outbound_queue,
        outbound_bytes: settings.ws.outbound_queue_bytes,
        max_connections_per_user: settings.ws.max_connections_per_user,
        max_message_size: settings.ws.max_message_size,
    };
    let redis = connect_redis(&settings)?;
    // With Redis, room events also reach the hubs of the other instances.
    let broker = redis.as_ref().map(|redis| {
        let instance = format!("{:016x}", rand::random::<u64>());
        tracing::info!(instance = %instance, "room events shared through Redis");
        telcall_redis::RedisBroker::start(redis.clone(), instance)
    });
    let hub_broker: Arc<dyn telcall_signaling::Broker> = match &broker {
        Some(broker) => broker.clone(),
        None => Arc::new(telcall_signaling::LocalBroker::new()),
    };
    let hub = Arc::new(telcall_signaling::Hub::with_clock(
        hub_config,
        hub_broker,
        clock.clone(),
    ));
    let events = Arc::new(HubCallEvents::new(hub.clone()));
    let calls = CallService::new(
        repo.clone(),
        clock.clone(),
        events,
        CallPolicy {
            max_active_calls_per_user: settings.max_active_calls_per_user,
            max_call_duration_hours: settings.max_call_duration_hours,
            ..CallPolicy::default()
        },
    )
    .with_cache(
        chrono::Duration::from_std(settings.call_cache)
            .unwrap_or_else(|_| chrono::Duration::zero()),
        CALL_CACHE_CAPACITY,
    );
    // One Bot API client (one base URL, one timeout) for notifications and the bot.
    let bot_api =
        telcall_telegram::BotApi::new(&settings.telegram_api_base, settings.bot_token.clone())?;
    let users = UserService::new(repo.clone(), clock.clone()).with_cache(
        chrono::Duration::from_std(settings.user_cache)
            .unwrap_or_else(|_| chrono::Duration::zero()),
        USER_CACHE_CAPACITY,
    );
    let bot = telcall_telegram::Bot::new(
        bot_api.clone(),
        users.clone(),
        calls.clone(),
        telcall_telegram::BotConfig {
            links: settings.links(),
            support_contact: settings.bot.support_contact.clone(),
        },
    );
    let verifier = telcall_auth::InitDataVerifier::new(&settings.bot_token)
        .with_max_age(settings.init_data_max_age);
    let sessions = crate::auth::build_sessions(&settings)?;
    let tickets: Arc<dyn telcall_auth::TicketStore> = match &redis {
        Some(redis) => Arc::new(telcall_redis::RedisTicketStore::new(redis.clone())),
        None => Arc::new(telcall_auth::MemoryTicketStore::new()),
    };
    let revocations: Arc<dyn telcall_auth::RevocationStore> = match &redis {
        Some(redis) => Arc::new(telcall_redis::RedisRevocationStore::new(redis.clone())),
        None => Arc::new(telcall_auth::MemoryRevocationStore::new()),
    };
    Ok(AppState {
        presence: crate::ws::Presence::new(calls.clone(), crate::ws::presence::PRESENCE_QUEUE),
        friends: FriendService::new(repo.clone()),
        stats: StatsService::new(repo.clone(), clock.clone()),
        calls,
        verifier: Arc::new(verifier),
        sessions: Arc::new(sessions),
        tickets,
        redis,
        broker,
        revocations,
        session_sockets: crate::ws::SessionSockets::default(),
        notifier: Arc::new(telcall_telegram::TelegramNotifier::new(bot_api)),
        bot: Arc::new(bot),
        webhook_secret: Arc::new(settings.webhook_secret()),
        users,
        hub,
        turn: Arc::new(TurnDirectory::new(&settings.webrtc)),
        connections: crate::connections::ConnectionLimiter::new(
            &settings.connections,
            &settings.trusted_proxies,
        ),
        upgraded: crate::ws::upgrade::UpgradedSockets::default(),
        repo,
        clock,
        settings,
    })
}

/// The Redis handle when `REDIS_URL` is set (connected lazily: the server starts while
/// Redis is away, `/health/ready` says so, and operations reconnect when it returns).
fn connect_redis(settings: &Settings) -> anyhow::Result<Option<telcall_redis::Redis>> {
    let Some(url) = &settings.redis_url else {
        return Ok(None);
    };
    let redis = telcall_redis::Redis::connect(
        url.expose_secret(),
        telcall_redis::RedisOptions {
            key_prefix: settings.redis_key_prefix.clone(),
            ..telcall_redis::RedisOptions::default()
        },
    )
    .context("REDIS_URL")?;
    tracing::info!(key_prefix = %settings.redis_key_prefix, "sharing tickets and rate limits through Redis");
    Ok(Some(redis))
}

/// The internal listener of `METRICS_ADDR`: `/metrics` and nothing else.
fn metrics_server(state: AppState, listener: TcpListener) -> anyhow::Result<Server> {
    let data = web::Data::new(state);
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(crate::routes::health::configure_metrics)
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Most users kept by the session-user cache (`USER_CACHE_SECONDS`).
const USER_CACHE_CAPACITY: usize = 100_000;
/// Most active calls kept by the call cache (`CALL_CACHE_SECONDS`).
const CALL_CACHE_CAPACITY: usize = 100_000;

/// How long a client may take to send a request head (actix-web's default).
const CLIENT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a connection stays open for the client to close it after the last response
/// (actix-web's default).
const CLIENT_DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The public HTTP server. It is assembled from actix-server and actix-http (as actix-web's
/// `HttpServer` would be, with the same timeouts) so that WebSocket upgrades go to
/// [`crate::ws::upgrade`], which serves them through the same application but lets an
/// upgraded socket leave the HTTP/1 dispatcher and its buffers.
fn http_server(state: AppState, listener: TcpListener) -> anyhow::Result<Server> {
    use crate::middleware::RateLimits;
    use actix_web::middleware::from_fn;

    let settings = state.settings.clone();
    let data = web::Data::new(state);
    // Built once, outside the worker factory: every worker counts in the same buckets.
    let limits = RateLimits::new(&settings, data.redis.clone())?;
    let limits_data = web::Data::new(limits);
    let connections = data.connections.clone();
    let upgraded = data.upgraded.clone();
    let with_metrics = settings.metrics_addr.is_none();
    let local_addr = listener.local_addr()?;
    let app = move || {
        // Layer order: see `crate::middleware` (the last `wrap` is the outermost).
        App::new()
            .wrap(from_fn(crate::middleware::csrf_guard))
            .wrap(from_fn(crate::middleware::rate_limit::rate_limits))
            .wrap(from_fn(crate::middleware::body_deadline))
            .wrap(crate::middleware::cors(&data.settings))
            .wrap(from_fn(crate::middleware::cors_only_for_allowed_origins))
            .wrap(from_fn(crate::middleware::json_error_bodies))
            .wrap(crate::middleware::security_headers(&data.settings))
            .wrap(tracing_actix_web::TracingLogger::<
                crate::middleware::RequestSpans,
            >::new())
            .app_data(data.clone())
            .app_data(limits_data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(data.settings.max_body_size)
                    .error_handler(json_error_handler),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .app_data(web::PathConfig::default().error_handler(path_error_handler))
            .configure(|cfg| crate::routes::configure(cfg, with_metrics))
            .default_service(web::to(not_found))
    };
    let builder = actix_server::Server::build();
    let graceful = builder.graceful_shutdown_signal();
    let server = builder
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        .listen("telcall-http", listener, move || {
            use actix_service::IntoServiceFactory as _;
            let connections = connections.clone();
            let graceful = graceful.clone();
            actix_http::HttpService::build()
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(local_addr)
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                // Connection caps, applied when a connection is accepted, before any HTTP
                // is read.
                .on_connect_ext(move |io: &actix_web::rt::net::TcpStream, ext| {
                    connections.on_connect(io, ext);
                })
                .upgrade(crate::ws::upgrade::service(
                    app().into_factory(),
                    upgraded.clone(),
                ))
                .finish(actix_service::map_config(app().into_factory(), |()| {
                    actix_web::dev::AppConfig::default()
                }))
                .tcp()
        })?
        .run();
    Ok(server)
}

async fn not_found() -> HttpResponse {
    detail_response(actix_web::http::StatusCode::NOT_FOUND, "Not Found")
}
