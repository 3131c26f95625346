//! From process start to serving: private directories, the one-daemon lock,
//! the cache, the socket, readiness, signals, and a clean exit.
//!
//! Order matters: the exclusive lock is taken before a stale socket is
//! removed (so a live daemon is never displaced), and the socket is bound
//! only once the cache is open (so a client that can connect is served).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::parsed_config::ParsedConfig;
use credcache_shared::paths::{self, Paths};
use credcache_shared::readiness::Readiness;
use interprocess::local_socket::tokio::Listener;

use crate::clock::SystemClock;
use crate::engine::{Engine, Loaded, Locations};
use crate::logging;
use crate::providers;
use crate::seal;
use crate::server::{self, Limits};
use crate::store::{Store, StoreError};
use crate::sys;
use crate::systemd;

/// How long a start waits for a cache database still held: a daemon
/// exiting as this one starts (`daemon restart`, a service restart) lets go
/// of it within milliseconds.
const CACHE_LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// How the daemon was asked to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config PATH`, beating `CREDCACHE_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--detach`: started by a client. Log to the log file, and report
    /// readiness as one line on stdout (`ready PID`, `running PID` or
    /// `error: MESSAGE`), then let go of stdout.
    pub detach: bool,
}

/// Why the daemon did not start.
#[derive(Debug)]
enum StartError {
    AlreadyRunning { pid: Option<u32> },
    Config(String, Vec<String>),
    Other(String),
}

impl StartError {
    fn line(&self) -> String {
        match self {
            Self::AlreadyRunning { pid: Some(pid) } => format!("already running (pid {pid})"),
            Self::AlreadyRunning { pid: None } => "already running".to_owned(),
            Self::Config(line, _) => line.clone(),
            Self::Other(why) => why.clone(),
        }
    }
}

/// Runs the daemon to completion.
pub fn run(options: Options) -> ExitCode {
    // First, while the process has one thread: it edits the environment.
    let activated = systemd::take_activated_socket();
    // Other processes of this user may not read its memory, everything it
    // creates is private, and a detached daemon outlives its terminal.
    let harden_warning = sys::harden(options.detach);
    let reporter = Reporter {
        detach: options.detach,
    };
    let paths = match Paths::from_env(options.config.clone()) {
        Ok(p) => p,
        Err(e) => return reporter.failed(&StartError::Other(e.to_string())),
    };
    let mut log_warning = None;
    let logged = if options.detach {
        let log_file = match usable_data_dir(&paths.data_dir) {
            Ok(()) => {
                logging::init(logging::Target::File(&paths.log_file)).map_err(|e| e.to_string())
            }
            Err(DataDir::Unsafe(e)) => Err(e.to_string()),
            Err(DataDir::Unwritable(e)) => Err(e.to_string()),
        };
        match log_file {
            Ok(()) => Ok(()),
            // A data directory that cannot be created or written (read-only,
            // full): run, logging to stderr. One that is not safe to use
            // (another owner, a symlink) is refused below, in `serve`.
            Err(e) => {
                log_warning = Some(format!(
                    "cannot write the log file {} ({e}); logging to stderr",
                    paths.log_file.display()
                ));
                logging::init(logging::Target::Stderr).map_err(|e| e.to_string())
            }
        }
    } else {
        logging::init(logging::Target::Stderr).map_err(|e| e.to_string())
    };
    if let Err(e) = logged {
        return reporter.failed(&StartError::Other(e));
    }
    let activated = match activated {
        Ok(a) => a,
        Err(e) => return reporter.failed(&StartError::Other(e.to_string())),
    };
    if let Some(w) = harden_warning {
        tracing::warn!("{w}");
    }
    // One thread serves everything: the daemon waits on sockets, it does
    // not compute. With two workers, they stole connections from each
    // other and fought the clients for the CPUs: at 64 connections on two
    // cores p99 was 2.2 ms against 0.4 ms with one (BENCHMARKS.md). With
    // one worker, the accept loop still ran on this thread and handed each
    // connection to the worker's; now both run here. Cache writes have
    // their own thread; blocking work goes to the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return reporter.failed(&StartError::Other(format!("cannot start the runtime: {e}")));
        }
    };
    match runtime.block_on(serve(paths, &reporter, activated, log_warning)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => reporter.failed(&e),
    }
}

/// Tells whoever started the daemon how the start went.
struct Reporter {
    detach: bool,
}

impl Reporter {
    fn ready(&self, socket: &Path) {
        tracing::info!(pid = std::process::id(), socket = %socket.display(), version = credcache_shared::VERSION, "listening");
        if self.detach {
            self.say(&Readiness::Ready {
                pid: std::process::id(),
            });
        }
        systemd::notify_ready(socket);
    }

    fn failed(&self, e: &StartError) -> ExitCode {
        let line = e.line();
        if self.detach {
            // Detached, the log file is where a user looks later; in the
            // foreground the stderr line below says it all.
            match e {
                StartError::AlreadyRunning { .. } => tracing::info!("not starting: {line}"),
                _ => tracing::error!("cannot start: {line}"),
            }
            match e {
                StartError::AlreadyRunning { pid } => {
                    self.say(&Readiness::Running {
                        pid: pid.unwrap_or(0),
                    });
                    return ExitCode::SUCCESS;
                }
                _ => self.say(&Readiness::Failed { message: line }),
            }
        } else {
            match e {
                StartError::Config(_, lines) => {
                    for l in lines {
                        eprintln!("credcached: {l}");
                    }
                }
                _ => eprintln!("credcached: {line}"),
            }
        }
        match e {
            StartError::Config(..) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }

    /// Writes the one readiness line, then points stdout at the null
    /// device so nothing later can write into the starter's pipe.
    fn say(&self, line: &Readiness) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        drop(out);
        sys::release_stdout();
    }
}

/// Serves until asked to stop. `activated` is the socket systemd passed, if
/// any: then the socket file is systemd's, never bound or removed here.
async fn serve(
    paths: Paths,
    reporter: &Reporter,
    activated: Option<systemd::Activated>,
    log_warning: Option<String>,
) -> Result<(), StartError> {
    let other = |e: paths::PathError| StartError::Other(e.to_string());
    paths::ensure_private_dir(paths.socket_dir()).map_err(other)?;
    // A data directory that is not safe (another owner, a symlink) is a
    // refusal; one that cannot be created or made private (a read-only
    // file system) means serving from memory.
    let unwritable = match usable_data_dir(&paths.data_dir) {
        Ok(()) => None,
        Err(DataDir::Unsafe(e)) => return Err(other(e)),
        Err(DataDir::Unwritable(e)) => Some(e),
    };
    let lock = take_lock(&paths.lock_file(), &paths.pid_file())?;

    let parsed_config = ParsedConfig::in_dir(&paths.data_dir);
    let config = parsed_config
        .load(&paths.config_file)
        .map_err(|e| StartError::Config(e.to_string(), e.lines().collect()))?;
    let loaded = Loaded::new(config, &paths.config_file);
    // The config and the cache need nothing of each other, but making them
    // on two threads saved no time: with one malloc arena
    // (`sys::one_malloc_arena`) the two threads contend for its lock, and
    // the start then took as long with more CPU (BENCHMARKS.md, issue 15).
    let cache = open_cache(&paths, unwritable);
    let OpenCache {
        store,
        warnings: cache_warnings,
    } = cache?;
    let warnings: Vec<String> = log_warning.into_iter().chain(cache_warnings).collect();
    let locations = Locations {
        config_file: paths.config_file.clone(),
        socket: paths.socket.clone(),
        cache_dir: paths.cache_dir.clone(),
        parsed_config,
    };
    // The cached tokens are read after `ready` (`Engine::loading`): with
    // 10,000 of them that was a third of the start.
    let engine = Engine::loading(
        loaded,
        locations,
        store,
        Arc::new(SystemClock),
        providers::build,
    )
    .map_err(|e| StartError::Other(e.to_string()))?;
    engine.add_warnings(warnings);

    let socket_activated = activated.is_some();
    let listener = match activated {
        Some(a) => adopt(a, &paths),
        None => server::bind(&paths.socket),
    }
    .map_err(|e| StartError::Other(e.to_string()))?;
    write_pid(&lock, &paths);
    reporter.ready(&paths.socket);

    let loader = engine.clone();
    tokio::task::spawn_blocking(move || loader.load_records());
    tokio::spawn(engine.clone().run_scheduler());
    // The SDK endpoints that were open before this start open again.
    crate::sdk::Endpoints::start(engine.clone(), &paths.config_file).await;

    let reloader = engine.clone();
    sys::reload_on_hangup(move || {
        let _ = reloader.reload();
    })
    .map_err(|e| StartError::Other(e.to_string()))?;
    let terminated = sys::terminated().map_err(|e| StartError::Other(e.to_string()))?;
    let stopper = engine.clone();
    let shutdown = async move {
        tokio::select! {
            () = terminated => {},
            () = stopper.shutdown_requested() => {},
            () = idle_exit(&stopper) => {},
        }
        systemd::notify_stopping();
    };
    server::serve(listener, engine.clone(), Limits::default(), shutdown).await;

    // sled's lock goes before the daemon lock, never after it.
    engine.close();
    // An activated socket stays: systemd listens on and starts us again.
    // A pipe goes with its last handle.
    if !socket_activated && cfg!(unix) {
        match std::fs::remove_file(&paths.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not remove {}: {e}", paths.socket.display()),
        }
    }
    tracing::info!("stopped");
    drop(lock);
    Ok(())
}

/// Serves on the socket systemd passed, warning if clients look elsewhere.
#[cfg(unix)]
fn adopt(a: systemd::Activated, paths: &Paths) -> Result<Listener, server::ListenError> {
    if a.path.as_deref() != Some(paths.socket.as_path()) {
        tracing::warn!(
            "systemd passed a socket at {:?} but clients look for {}; set ListenStream= in credcached.socket (or CREDCACHE_SOCKET) so they agree",
            a.path,
            paths.socket.display()
        );
    }
    server::adopt(a.listener)
}

#[cfg(windows)]
fn adopt(a: systemd::Activated, _paths: &Paths) -> Result<Listener, server::ListenError> {
    match a {}
}

/// Takes the one-daemon-per-socket lock, or says who holds it.
fn take_lock(path: &Path, pid_file: &Path) -> Result<File, StartError> {
    let io = |e: std::io::Error| StartError::Other(format!("{}: {e}", path.display()));
    let file = sys::open_private(path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let text = std::fs::read_to_string(pid_file).unwrap_or_default();
            Err(StartError::AlreadyRunning {
                pid: text.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Writes our pid where clients and a second daemon read it: into the lock
/// file we hold, or (Windows) the pid file beside it.
fn write_pid(mut lock: &File, paths: &Paths) {
    let pid = format!("{}\n", std::process::id());
    if paths.pid_file() == paths.lock_file() {
        let _ = lock.set_len(0);
        let _ = lock.write_all(pid.as_bytes());
    } else if let Ok(mut f) = sys::open_private(&paths.pid_file()) {
        let _ = f.set_len(0);
        let _ = f.write_all(pid.as_bytes());
    }
}

/// Resolves once the daemon has had no request for `idle_timeout` (never,
/// when it is zero).
async fn idle_exit(engine: &Engine) {
    loop {
        let limit = engine.idle_timeout();
        if limit.is_zero() {
            // Re-checked now and then: a reload may set a timeout.
            tokio::time::sleep(Duration::from_secs(30)).await;
            continue;
        }
        let idle = engine.idle_for();
        if idle >= limit {
            tracing::info!(idle_secs = idle.as_secs(), "idle timeout reached: exiting");
            return;
        }
        tokio::time::sleep(limit - idle).await;
    }
}

/// The cache, opened, with what it holds.
struct OpenCache {
    store: Store,
    /// About the key or the cache, for `status`.
    warnings: Vec<String>,
}

/// Loads the cache key (beside the config, never in the data directory)
/// and opens the cache, or a memory-only one when the data directory
/// cannot be written (`unwritable` says why). Its records are read after
/// `ready` (`Engine::load_records`).
fn open_cache(
    paths: &Paths,
    unwritable: Option<paths::PathError>,
) -> Result<OpenCache, StartError> {
    let (sealer, mut warnings) = seal::load_or_create(&seal::key_path(&paths.config_file));
    let sealer = Arc::new(sealer);
    let opened = match unwritable {
        None => match Store::open_waiting(&paths.cache_dir, sealer.clone(), CACHE_LOCK_PATIENCE) {
            Err(e @ StoreError::Locked { .. }) => return Err(StartError::Other(e.to_string())),
            opened => opened.map_err(|e| e.to_string()),
        },
        Some(e) => Err(e.to_string()),
    };
    let (store, warning) = match opened {
        Ok(opened) => opened,
        // Read-only, full, or otherwise unwritable: serve from memory
        // rather than not at all.
        Err(e) => {
            let store = Store::open_memory(sealer).map_err(|m| {
                StartError::Other(format!("{e}; and no memory-only cache either: {m}"))
            })?;
            let warning = format!(
                "the data directory {} cannot be written ({e}); running memory-only: tokens are not kept across restarts",
                paths.data_dir.display()
            );
            (store, Some(warning))
        }
    };
    warnings.extend(warning);
    Ok(OpenCache { store, warnings })
}

/// Why the data directory cannot be used as it is.
enum DataDir {
    /// Not ours, a symlink, not a directory: refuse.
    Unsafe(paths::PathError),
    /// Cannot be created or made private: serve from memory.
    Unwritable(paths::PathError),
}

/// Creates the data directory 0700, or checks the one there.
fn usable_data_dir(dir: &std::path::Path) -> Result<(), DataDir> {
    paths::ensure_private_dir(dir).map_err(|e| match e {
        paths::PathError::Io { .. } => DataDir::Unwritable(e),
        other => DataDir::Unsafe(other),
    })
}
