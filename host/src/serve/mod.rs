//! `sluice serve`: a long-running host for several jobs, controlled over an
//! HTTP API (axum, JSON under `/v1`, described by an OpenAPI document it
//! serves at `/v1/openapi.json`).
//!
//! - [`auth`]: the bearer token every request needs (`<data-dir>/token`,
//!   mode 0600, or `--token-file`), checked in constant time.
//! - [`registry`]: what the data directory keeps — uploaded components by
//!   digest, each job's deploy spec and versions — written atomically.
//! - [`jobs`]: the jobs and their supervisor; it keeps the registry in step
//!   with the running jobs and marks a job that fails as failed.
//! - [`routes`]: the HTTP routes and the OpenAPI document.
//! - [`api`]: the request and response bodies.
//! - `handle`: [`ControlLauncher`], the jobs started by the job control
//!   (`control::JobHandle`), mapped onto the API's types.
//!
//! On start the host resumes every job its registry says should run, each
//! from its checkpoint (every job checkpoints, by default under
//! `<data-dir>/jobs/<name>/checkpoint`); so a host killed even with SIGKILL
//! resumes its jobs when started again. The first SIGTERM or Ctrl-C stops
//! every job gracefully (in parallel: what was received is processed, a last
//! checkpoint written; the API answers meanwhile, refusing deploys and
//! starts), then the API (requests under way may end, 5 s at most), then
//! the host, which exits 0; a second exits at once.

pub mod api;
pub mod auth;
mod handle;
pub mod jobs;
pub mod registry;
pub mod routes;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use handle::ControlLauncher;

use crate::sources::StopSignal;
use auth::{Token, TokenError};
use jobs::{Jobs, Launcher};
use registry::{Registry, RegistryError};

/// How long the API may take to end the requests under way when the host
/// stops.
const SERVER_DRAIN: Duration = Duration::from_secs(5);

/// The address `sluice serve` listens on, and the CLI's default server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7077";

/// How `sluice serve` was started.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address to listen on.
    pub listen: String,
    /// The data directory [default: [`default_data_dir`]].
    pub data_dir: Option<PathBuf>,
    /// A file holding the token; required for a non-loopback address.
    pub token_file: Option<PathBuf>,
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address is not an address.
    #[error("--listen {listen}: {reason}")]
    Listen {
        /// As given.
        listen: String,
        /// Why.
        reason: String,
    },
    /// A non-loopback address without an explicit token.
    #[error(
        "--listen {listen} is not a loopback address: serving beyond this machine needs a \
         token chosen for it, given with --token-file FILE (the generated <data-dir>/token is \
         only for loopback)"
    )]
    NotLoopback {
        /// As given.
        listen: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token could not be read or created.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Threads or the runtime could not be started.
    #[error("cannot start the host: {0}")]
    Runtime(String),
}

/// Where Sluice keeps its deployed jobs: `$XDG_DATA_HOME/sluice`, else
/// `~/.local/share/sluice` (the host's, and where the CLI looks for the
/// token).
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("sluice")
}

/// Runs the host until `stop` is signalled; then stops every job gracefully
/// and returns.
pub fn serve(config: ServeConfig, stop: StopSignal) -> Result<(), ServeError> {
    let addresses: Vec<SocketAddr> = config
        .listen
        .to_socket_addrs()
        .map_err(|e| ServeError::Listen {
            listen: config.listen.clone(),
            reason: e.to_string(),
        })?
        .collect();
    let Some(&address) = addresses.first() else {
        return Err(ServeError::Listen {
            listen: config.listen,
            reason: "it names no address".into(),
        });
    };
    let data_dir = config.data_dir.clone().unwrap_or_else(default_data_dir);
    // Private: it holds the token, and job specs (grants' environment
    // variables among them).
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&data_dir)
        .map_err(|source| ServeError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
    let token = match &config.token_file {
        Some(file) => Token::read(file)?,
        None if !addresses.iter().all(|a| a.ip().is_loopback()) => {
            return Err(ServeError::NotLoopback {
                listen: config.listen,
            });
        }
        None => Token::read_or_create(&data_dir.join("token"))?,
    };
    let registry = Registry::open(&data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-http")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(address))
        .map_err(|e| ServeError::Listen {
            listen: config.listen.clone(),
            reason: e.to_string(),
        })?;
    let launcher: Arc<dyn Launcher> = Arc::new(ControlLauncher);
    let jobs = Jobs::new(registry, launcher);
    jobs.resume()?;
    let supervisor = jobs
        .supervise()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let (router, _) = routes::router(Arc::clone(&jobs), token);
    let local = listener.local_addr().unwrap_or(address);
    tracing::info!(
        "serving the API on http://{local} (data directory {})",
        data_dir.display()
    );
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        let closed = async {
            // An error means the sender is gone: close too.
            let _ = closed.await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(closed)
            .await
        {
            tracing::error!("the API server on {local} stopped: {e}");
        }
    });
    let mut stopped = stop.subscribe();
    runtime.block_on(async {
        // An error means the sender is gone: stop too.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    });
    tracing::info!("stopping every job gracefully");
    // The API answers while the jobs stop (a deploy or start is refused);
    // then it takes no more connections and lets the requests under way end
    // (a followed log ends with its job), for a few seconds at most.
    jobs.shutdown();
    let _ = supervisor.join();
    let _ = close.send(());
    // The timer is made inside the runtime, which it needs.
    let drained = runtime.block_on(async { tokio::time::timeout(SERVER_DRAIN, server).await });
    if drained.is_err() {
        tracing::warn!(
            "requests still under way after {}: dropping them",
            humantime::format_duration(SERVER_DRAIN)
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("every job stopped; the host stops");
    Ok(())
}
