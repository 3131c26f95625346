//! A throwaway home for one daemon: config, data dir and socket in a temp
//! directory, an environment with nothing of the real user's in it (so no
//! real identity is found and nothing leaves 127.0.0.1), and the daemon
//! itself, started with `credcached --detach` and timed to its `ready` line.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use credcache_shared::protocol::Request;
use tempfile::TempDir;

use super::conn::Conn;
use super::procfs;
use crate::emulator::Emulator;

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

/// A temp directory holding one daemon's files.
pub struct Home {
    dir: TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Home {
    /// A home whose config is `config`. `emu` is the only upstream: the
    /// metadata-server override points at it too, so that nothing probes
    /// a real one.
    pub fn new(emu: &Emulator, config: &str) -> anyhow::Result<Home> {
        // Under /tmp: a Unix socket path must stay short.
        let dir = tempfile::Builder::new()
            .prefix("ccbench")
            .tempdir_in("/tmp")
            .context("cannot create a temp directory")?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("home"))?;
        let config_file = root.join("config.toml");
        let data = root.join("data");
        let socket = root.join("run/credcache.sock");
        let env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
            ("HOME".into(), root.join("home").into()),
            ("XDG_CONFIG_HOME".into(), root.join("home/.config").into()),
            (
                "XDG_DATA_HOME".into(),
                root.join("home/.local/share").into(),
            ),
            ("CREDCACHE_CONFIG".into(), config_file.clone().into()),
            ("CREDCACHE_DATA_DIR".into(), data.clone().into()),
            ("CREDCACHE_SOCKET".into(), socket.clone().into()),
            ("CREDCACHE_LOG".into(), "warn".into()),
            // A failed measurement must not start daemons behind our back.
            ("CREDCACHE_NO_AUTOSTART".into(), "1".into()),
            // Never a real metadata server, even by a probe.
            (
                "GCE_METADATA_HOST".into(),
                format!("127.0.0.1:{}", emu.port()).into(),
            ),
        ];
        let home = Home {
            config: config_file,
            data,
            socket,
            env,
            dir,
        };
        home.write_config(config)?;
        Ok(home)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, text: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, text)
            .with_context(|| format!("cannot write {}", self.config.display()))
    }

    /// A command with this home's environment and nothing else.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Starts `credcached --detach` and waits for its `ready PID` line.
    pub fn start_daemon(&self, bins: &Bins) -> anyhow::Result<Daemon> {
        let started = Instant::now();
        let mut child = self
            .command(&bins.daemon)
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
        let pid = match line.trim().strip_prefix("ready ").map(str::parse::<u32>) {
            Some(Ok(pid)) => pid,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the daemon did not start: {:?} (log: {})",
                    line.trim(),
                    self.data.join("credcached.log").display()
                );
            }
        };
        Ok(Daemon {
            child: Some(child),
            pid,
            socket: self.socket.clone(),
            ready_after,
        })
    }
}

/// A daemon this benchmark started, stopped (and reaped) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    pub socket: PathBuf,
    /// From spawning `credcached` to its `ready` line.
    pub ready_after: Duration,
}

impl Daemon {
    pub fn rss_kb(&self) -> Option<u64> {
        procfs::rss_kb(self.pid)
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
