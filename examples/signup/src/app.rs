//! Starting and stopping the components together on one data directory.
//!
//! The components share one store: embedded in this process by default,
//! or a running `stele serve` (`Config::server`), which they then reach
//! over gRPC. Every other piece of state is the component's own, each with
//! its own checkpoint:
//!
//! ```text
//! <data dir>/store/           the event log (steledb), when embedded
//! <data dir>/users.sqlite     read model + its checkpoint (projection)
//! <data dir>/mail.sqlite      mail gateway checkpoint
//! <data dir>/reminders.sqlite reminder process manager checkpoint
//! ```
//!
//! Components talk only through the log: the HTTP API appends, the
//! projection, the reminder scheduler and the mailer each subscribe.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use steledb::{Clock, Store, StoreConfig, SystemClock};
use steledb_sdk::{
    connect, open_database, Backend, Backoff, BreakerConfig, EventStore, GatewayRunner, ProjectionRunner,
    SqliteCheckpoints, StopHandle, SystemGatewayClock,
};
use tokio::sync::oneshot;

use crate::commands::UserCommands;
use crate::http::{router, ApiState};
use crate::mail::{Mailer, MAIL_DOMAIN};
use crate::read_model::{UserQueries, UsersProjection};
use crate::reminders::ReminderLoop;
use crate::smtp::SmtpClient;

/// A day: how long a new account has before the reminder goes out.
pub const REMINDER_DELAY_US_DEFAULT: u64 = 24 * 60 * 60 * 1_000_000;
/// How often the reminder component looks at the clock.
pub const TIMER_TICK_MS_DEFAULT: u64 = 1_000;
/// How long the consumers wait for new events before checking for a stop.
pub const POLL_INTERVAL_MS_DEFAULT: u64 = steledb_sdk::limits::POLL_INTERVAL_MS_DEFAULT;
/// Bounds each SMTP connect, read and write.
pub const SMTP_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// HTTP API worker threads: handlers only hand work to the blocking pool.
const HTTP_WORKER_THREADS: usize = 2;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A running server's connection string
    /// (`kurrentdb://127.0.0.1:2113?tls=false`) to keep the events in;
    /// `None` embeds the store in `<data_dir>/store`.
    pub server: Option<String>,
    /// Where the HTTP API listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// `host:port` of the SMTP server.
    pub smtp_address: String,
    pub mail_from: String,
    pub reminder_delay_us: u64,
    /// The time of commands, of the store's stamps and of timers: the
    /// system clock, or a simulated one in tests.
    pub clock: Arc<dyn Clock>,
    pub timer_tick_ms: u64,
    pub poll_interval_ms: u64,
    pub smtp_timeout_ms: u64,
    pub mail_backoff: Backoff,
    pub mail_breaker: BreakerConfig,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr, smtp_address: impl Into<String>) -> Self {
        Self {
            data_dir: data_dir.into(),
            server: None,
            listen,
            smtp_address: smtp_address.into(),
            mail_from: format!("no-reply@{MAIL_DOMAIN}"),
            reminder_delay_us: REMINDER_DELAY_US_DEFAULT,
            clock: Arc::new(SystemClock),
            timer_tick_ms: TIMER_TICK_MS_DEFAULT,
            poll_interval_ms: POLL_INTERVAL_MS_DEFAULT,
            smtp_timeout_ms: SMTP_TIMEOUT_MS_DEFAULT,
            mail_backoff: Backoff::default(),
            mail_breaker: BreakerConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the store: {0}")]
    Store(#[from] steledb::OpenError),
    #[error("connecting to the store: {0}")]
    Connect(#[from] steledb_sdk::ConnectError),
    #[error("opening {what}: {source}")]
    Database { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("listening on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the reminder component: {0}")]
    Reminders(#[from] crate::reminders::ReminderError),
    #[error("starting thread: {0}")]
    Thread(std::io::Error),
}

/// A component that stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("component '{component}' failed: {message}")]
pub struct ComponentError {
    pub component: &'static str,
    pub message: String,
}

/// The running application. Stop it with [`App::shutdown`], which saves
/// every checkpoint and closes the store (dropping it instead leaves the
/// component threads running).
pub struct App {
    store: Arc<dyn EventStore>,
    http_address: SocketAddr,
    runtime: tokio::runtime::Runtime,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    server_stop: oneshot::Sender<()>,
    stop: StopHandle,
    components: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    timer_ticks: Arc<AtomicU64>,
}

impl App {
    /// Opens the store and the component databases, then starts the HTTP
    /// API, the projection, the reminder component and the mailer.
    pub fn start(config: Config) -> Result<Self, StartError> {
        let database =
            |what: &'static str| move |e: rusqlite::Error| StartError::Database { what, source: Box::new(e) };
        let checkpoint_error = |what: &'static str| {
            move |e: steledb_sdk::CheckpointError| StartError::Database { what, source: Box::new(e) }
        };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::Database { what: "the data directory", source: Box::new(e) })?;
        let store: Arc<dyn EventStore> = match &config.server {
            Some(connection_string) => connect(&Backend::Remote(connection_string.clone()))?,
            None => {
                // Embedded, the store stamps events with the app's clock
                // (a server uses its own).
                let mut store_config = StoreConfig::new(config.data_dir.join("store"));
                store_config.clock = Arc::clone(&config.clock);
                Arc::new(Store::open_with(store_config)?)
            }
        };

        let users_path = config.data_dir.join("users.sqlite");
        let users_db = open_database(&users_path).map_err(database("the read model"))?;
        let queries = UserQueries::open(&users_path)
            .map_err(|e| StartError::Database { what: "the read model", source: Box::new(e) })?;
        let mail_checkpoints =
            SqliteCheckpoints::open(config.data_dir.join("mail.sqlite")).map_err(checkpoint_error("mail"))?;
        let reminder_checkpoints =
            SqliteCheckpoints::open(config.data_dir.join("reminders.sqlite")).map_err(checkpoint_error("reminders"))?;

        let listener = std::net::TcpListener::bind(config.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| StartError::Listen { address: config.listen, source })?;
        let http_address =
            listener.local_addr().map_err(|source| StartError::Listen { address: config.listen, source })?;

        let stop = StopHandle::new();
        let timer_ticks = Arc::new(AtomicU64::new(0));
        let mut components = Vec::new();
        components.push(("users-projection", spawn_projection(&store, users_db, &config, &stop)?));
        components.push((
            "reminders",
            spawn_reminders(&store, reminder_checkpoints, &config, &stop, Arc::clone(&timer_ticks))?,
        ));
        let base_url = format!("http://{http_address}");
        components.push(("mail", spawn_mailer(&store, mail_checkpoints, &config, base_url, &stop)?));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(HTTP_WORKER_THREADS)
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let state = Arc::new(ApiState {
            commands: UserCommands::new(Arc::clone(&store)),
            queries,
            clock: Arc::clone(&config.clock),
        });
        let (server_stop, stopped) = oneshot::channel::<()>();
        let server = {
            let _entered = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| StartError::Listen { address: config.listen, source })?;
            runtime.spawn(async move {
                axum::serve(listener, router(state))
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        };
        Ok(Self { store, http_address, runtime, server, server_stop, stop, components, timer_ticks })
    }

    pub fn http_address(&self) -> SocketAddr {
        self.http_address
    }

    /// The shared store (tests read the log through it).
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// How many times the reminder component has ticked its timers.
    pub fn timer_ticks(&self) -> u64 {
        self.timer_ticks.load(Ordering::SeqCst)
    }

    /// Blocks until Ctrl-C (SIGINT) or, on Unix, SIGTERM.
    pub fn wait_for_stop_signal(&self) -> std::io::Result<()> {
        self.runtime.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let mut terminate = signal(SignalKind::terminate())?;
                tokio::select! {
                    interrupted = tokio::signal::ctrl_c() => interrupted,
                    _ = terminate.recv() => Ok(()),
                }
            }
            #[cfg(not(unix))]
            tokio::signal::ctrl_c().await
        })
    }

    /// Stops the HTTP API (finishing requests in flight), then the
    /// components (each saves its checkpoint), then closes the store.
    /// Returns the errors of components that had failed.
    pub fn shutdown(self) -> Vec<ComponentError> {
        let Self { store, runtime, server, server_stop, stop, components, .. } = self;
        let mut errors = Vec::new();
        let _ = server_stop.send(());
        match runtime.block_on(server) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(ComponentError { component: "http", message: e.to_string() }),
            Err(e) => errors.push(ComponentError { component: "http", message: e.to_string() }),
        }
        // Dropping the runtime drops the handlers' state and its store handle.
        drop(runtime);
        stop.stop();
        for (component, thread) in components {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => errors.push(ComponentError { component, message }),
                Err(_) => errors.push(ComponentError { component, message: "panicked".to_owned() }),
            }
        }
        // The last handle: dropping it finishes queued appends and releases the directory lock.
        drop(store);
        errors
    }
}

fn spawn(
    name: &str,
    work: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<JoinHandle<Result<(), String>>, StartError> {
    std::thread::Builder::new().name(name.to_owned()).spawn(work).map_err(StartError::Thread)
}

fn spawn_projection(
    store: &Arc<dyn EventStore>,
    db: rusqlite::Connection,
    config: &Config,
    stop: &StopHandle,
) -> Result<JoinHandle<Result<(), String>>, StartError> {
    let (store, stop, poll_interval_ms) = (Arc::clone(store), stop.clone(), config.poll_interval_ms);
    spawn("users-projection", move || {
        let runner = ProjectionRunner::new(&*store, db, UsersProjection::default()).map_err(|e| e.to_string())?;
        let mut runner = runner.with_poll_interval_ms(poll_interval_ms);
        runner.run(&stop).map(drop).map_err(|e| e.to_string())
    })
}

fn spawn_reminders(
    store: &Arc<dyn EventStore>,
    checkpoints: SqliteCheckpoints,
    config: &Config,
    stop: &StopHandle,
    ticks: Arc<AtomicU64>,
) -> Result<JoinHandle<Result<(), String>>, StartError> {
    let (store, stop, clock) = (Arc::clone(store), stop.clone(), Arc::clone(&config.clock));
    let (delay_us, tick) = (config.reminder_delay_us, Duration::from_millis(config.timer_tick_ms));
    spawn("reminders", move || {
        let mut reminders = ReminderLoop::new(&store, checkpoints, delay_us, clock).map_err(|e| e.to_string())?;
        while !stop.is_stopped() {
            reminders.step().map_err(|e| e.to_string())?;
            ticks.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(tick);
        }
        Ok(())
    })
}

fn spawn_mailer(
    store: &Arc<dyn EventStore>,
    checkpoints: SqliteCheckpoints,
    config: &Config,
    base_url: String,
    stop: &StopHandle,
) -> Result<JoinHandle<Result<(), String>>, StartError> {
    let smtp_timeout = Duration::from_millis(config.smtp_timeout_ms);
    let smtp = SmtpClient::new(config.smtp_address.clone(), MAIL_DOMAIN, smtp_timeout);
    let mailer = Mailer::new(smtp, config.mail_from.clone(), base_url);
    let (store, stop) = (Arc::clone(store), stop.clone());
    let (backoff, breaker, poll_interval_ms) = (config.mail_backoff, config.mail_breaker, config.poll_interval_ms);
    spawn("mail", move || {
        // A mailbox refused for good (5xx) is recorded as a dead letter;
        // everyone else's mail goes on.
        let mut runner = GatewayRunner::new(&*store, mailer, checkpoints, SystemGatewayClock::default())
            .with_dead_letters()
            .with_backoff(backoff)
            .with_breaker(breaker)
            .with_poll_interval_ms(poll_interval_ms);
        runner.run(&stop).map(drop).map_err(|e| e.to_string())
    })
}
