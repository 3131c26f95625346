//! A throwaway home for one daemon (a [`Sandbox`], as the end-to-end tests
//! use: config, data dir and socket in a temp directory, an environment
//! with nothing of the real user's in it, so no real identity is found and
//! nothing leaves 127.0.0.1), and the daemon itself, started with
//! `credcached --detach` and timed to its `ready` line.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use credcache_shared::protocol::Request;
use credcache_shared::readiness::Readiness;

use super::conn::Conn;
use super::procfs;
use crate::emulator::Emulator;
use crate::sandbox::Sandbox;

/// How long a daemon has to say `ready`, and to exit when asked.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The binaries under test, next to the benchmark's own executable (all
/// three are built by the same `cargo build`).
#[derive(Debug, Clone)]
pub struct Bins {
    pub client: PathBuf,
    pub daemon: PathBuf,
}

impl Bins {
    pub fn find() -> anyhow::Result<Bins> {
        let exe = std::env::current_exe().context("cannot find the benchmark's executable")?;
        let dir = exe.parent().context("the executable has no directory")?;
        let bins = Bins {
            client: dir.join("credcache"),
            daemon: dir.join("credcached"),
        };
        for bin in [&bins.client, &bins.daemon] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: build all three together \
                     (cargo build --release -p credcache-tests -p credcache -p credcache-daemon)",
                    bin.display()
                );
            }
        }
        Ok(bins)
    }
}

/// A throwaway home for one daemon: a [`Sandbox`] whose config is
/// `config`. `emu` is the only upstream: the metadata-server override
/// points at it too, so that nothing probes a real one.
pub fn new_home(emu: &Emulator, config: &str) -> anyhow::Result<Sandbox> {
    let mut home = Sandbox::try_new().context("cannot create a temp directory")?;
    home.env("CREDCACHE_LOG", "warn")
        // A failed measurement must not start daemons behind our back.
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .env("GCE_METADATA_HOST", format!("127.0.0.1:{}", emu.port()));
    home.try_write_config(config)
        .with_context(|| format!("cannot write {}", home.config.display()))?;
    Ok(home)
}

/// Starts `credcached --detach` in `home` and waits for its `ready PID`
/// line.
pub fn start_daemon(home: &Sandbox, bins: &Bins) -> anyhow::Result<Daemon> {
    let started = Instant::now();
    let mut child = home
        .command_for(&bins.daemon)
        .arg("--detach")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", bins.daemon.display()))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the daemon did not say ready within {START_TIMEOUT:?}");
        }
    };
    let ready_after = started.elapsed();
    let pid = match line.parse::<Readiness>() {
        Ok(Readiness::Ready { pid }) => pid,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let said = match other {
                Ok(readiness) => readiness.to_string(),
                Err(e) => e.to_string(),
            };
            bail!(
                "the daemon did not start: {said} (log: {})",
                home.data.join("credcached.log").display()
            );
        }
    };
    Ok(Daemon {
        child: Some(child),
        pid,
        socket: home.socket.clone(),
        ready_after,
        started,
    })
}

/// A daemon this benchmark started, stopped (and reaped) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    pub socket: PathBuf,
    /// From spawning `credcached` to its `ready` line.
    pub ready_after: Duration,
    started: Instant,
}

impl Daemon {
    /// From spawning `credcached` to its having read its cache back (it
    /// says ready before): the answer to a `list` page after the last
    /// name, which waits for that read like every request but `get`, and
    /// is itself empty, so cheap.
    pub fn cache_read_after(&self) -> anyhow::Result<Duration> {
        let mut conn = Conn::open(&self.socket).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let past_every_name = Request::List {
            after: Some(char::MAX.to_string()),
        };
        conn.request(&past_every_name)
            .map_err(|e| anyhow::anyhow!("list: {}", e.message()))?;
        Ok(self.started.elapsed())
    }

    pub fn rss_kb(&self) -> Option<u64> {
        procfs::rss_kb(self.pid)
    }

    pub fn rss_anon_kb(&self) -> Option<u64> {
        procfs::rss_anon_kb(self.pid)
    }

    pub fn threads(&self) -> Option<u64> {
        procfs::threads(self.pid)
    }

    pub fn open_fds(&self) -> Option<u64> {
        procfs::open_fds(self.pid)
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        procfs::cpu_time(self.pid)
    }

    /// Asks the daemon to shut down (it flushes the cache first) and waits
    /// for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let asked = Conn::open(&self.socket).and_then(|mut c| c.request(&Request::Shutdown));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while asked.is_ok() && Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // It would not stop (or could not be asked): this is our own child.
        let _ = child.kill();
        let _ = child.wait();
        match asked {
            Ok(_) => bail!("the daemon did not exit within {STOP_TIMEOUT:?} of Shutdown"),
            Err(e) => bail!("cannot ask the daemon to stop: {}", e.message()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
