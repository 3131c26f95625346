//! A sandbox per test (or per benchmark daemon): its own HOME, config,
//! data dir and socket in a temp directory under /tmp, an environment with
//! nothing of the real user's in it, and helpers to run the binaries there.
//! The end-to-end tests and the benchmark both build their homes here.

mod bins;

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

pub use bins::{bin_dir, exe};

pub struct Sandbox {
    pub dir: TempDir,
    pub home: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    /// Set with [`Sandbox::env`]; each overrides the defaults.
    extra_env: Vec<(OsString, OsString)>,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "failed: {self:#?}");
        &self.stdout
    }

    /// Asserts an upstream failure as docs/cli.md has it: exit 5, nothing on
    /// stdout, and one stderr line that starts with `prefix` and contains
    /// `want` (the cloud's own words).
    #[track_caller]
    pub fn upstream_failure(&self, prefix: &str, want: &str) {
        assert_eq!(self.code, 5, "wanted exit 5 for {want:?}: {self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert!(
            self.stderr.starts_with(prefix),
            "wanted {prefix:?} first: {self:#?}"
        );
        assert!(self.stderr.contains(want), "wanted {want:?} in: {self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:#?}");
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A new sandbox; panics if the temp directory cannot be made.
    pub fn new() -> Self {
        Self::try_new().expect("cannot create the sandbox's temp directory")
    }

    /// A new sandbox, under /tmp: a Unix socket path must stay short.
    pub fn try_new() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cc").tempdir_in("/tmp")?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        Ok(Self {
            config: dir.path().join("config.toml"),
            data: dir.path().join("data"),
            socket: dir.path().join("run/credcache.sock"),
            home,
            dir,
            extra_env: Vec::new(),
        })
    }

    /// Sets a variable for every command run here from now on.
    pub fn env(&mut self, key: &str, value: impl Into<OsString>) -> &mut Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// gcloud's configuration directory for the programs run here (where
    /// `application_default_credentials.json` is looked for), created.
    pub fn gcloud_dir(&self) -> PathBuf {
        let dir = if cfg!(windows) {
            self.home.join("AppData").join("Roaming").join("gcloud")
        } else {
            self.home.join(".config/gcloud")
        };
        std::fs::create_dir_all(&dir).expect("create gcloud's directory");
        dir
    }

    #[track_caller]
    pub fn write_config(&self, text: &str) {
        self.try_write_config(text).unwrap();
    }

    pub fn try_write_config(&self, text: &str) -> io::Result<()> {
        std::fs::write(&self.config, text)
    }

    /// Adds `text` (whole tables) to the end of the config file, so a
    /// fixture's credentials can be built on.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap_or_default();
        if !config.is_empty() && !config.ends_with('\n') {
            config.push('\n');
        }
        config.push_str(text);
        self.write_config(&config);
    }

    /// A command for one of the binaries, with the sandbox's environment
    /// only (plus PATH), so nothing of the real user's leaks in.
    pub fn command(&self, bin: &str) -> Command {
        self.command_for(bin_dir().join(bins::exe(bin)))
    }

    /// Any program, with the sandbox's environment only.
    pub fn command_for(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("CREDCACHE_CONFIG", &self.config)
            .env("CREDCACHE_DATA_DIR", &self.data)
            .env("CREDCACHE_SOCKET", &self.socket)
            .env("CREDCACHE_LOG", "debug")
            // Never let a test reach a real metadata server or IMDS.
            .env("GCE_METADATA_HOST", "127.0.0.1:9")
            .stdin(Stdio::null());
        // Windows programs need these to start at all (Winsock reads
        // SystemRoot; PATHEXT finds `.cmd` programs); none is the user's.
        #[cfg(windows)]
        for key in ["SystemRoot", "windir", "TEMP", "TMP", "PATHEXT", "ComSpec"] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        // gcloud's directory is under APPDATA on Windows, which must be the
        // sandbox's too, not the real profile's.
        #[cfg(windows)]
        cmd.env("APPDATA", self.home.join("AppData").join("Roaming"));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `credcache ARGS` to completion.
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command("credcache")
            .args(args)
            .output()
            .expect("run credcache")
            .into()
    }

    /// `credcache get NAME`, which must succeed; the token.
    #[track_caller]
    pub fn get(&self, name: &str) -> String {
        self.run(["get", name]).ok().trim_end().to_owned()
    }

    /// The running daemon's pid, from its lock file.
    /// The paths the binaries work out in this sandbox.
    pub fn paths(&self) -> credcache_shared::paths::Paths {
        let env = |k: &str| match k {
            "CREDCACHE_SOCKET" => Some(self.socket.clone().into_os_string()),
            "CREDCACHE_DATA_DIR" => Some(self.data.clone().into_os_string()),
            "CREDCACHE_CONFIG" => Some(self.config.clone().into_os_string()),
            _ => None,
        };
        credcache_shared::paths::Paths::resolve(None, env).expect("the sandbox sets every path")
    }

    /// The daemon's lock file (beside the socket; in the data directory on
    /// Windows).
    pub fn lock_file(&self) -> PathBuf {
        self.paths().lock_file()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.paths().pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("credcached.log")).unwrap_or_default()
    }

    /// A `command`-kind script that counts its runs in a file and prints
    /// `tok-<n>-<label>`. Returns the script and the count file.
    pub fn counting_script(&self, label: &str) -> (PathBuf, PathBuf) {
        let count = self.dir.path().join(format!("{label}.count"));
        #[cfg(unix)]
        let script = {
            use std::os::unix::fs::PermissionsExt;
            let script = self.dir.path().join(format!("{label}.sh"));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > '{c}'\necho \"tok-$n-{label}\"\n",
                    c = count.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
            script
        };
        // cmd.exe's form of the same script.
        #[cfg(windows)]
        let script = {
            let script = self.dir.path().join(format!("{label}.cmd"));
            std::fs::write(
                &script,
                format!(
                    "@echo off\r\nset n=0\r\nif exist \"{c}\" set /p n=<\"{c}\"\r\nset /a n=n+1\r\n>\"{c}\" echo %n%\r\necho tok-%n%-{label}\r\n",
                    c = count.display()
                ),
            )
            .unwrap();
            script
        };
        (script, count)
    }

    /// Config text for a `command` credential running `script`.
    pub fn command_credential(name: &str, script: &Path) -> String {
        format!(
            "[credentials.{name}]\nkind = \"command\"\ncommand = [{:?}]\nlifetime = \"1h\"\n",
            script.display().to_string()
        )
    }

    /// Sends SIGKILL to the daemon and waits until its lock is free, which
    /// the kernel releases only when the process is gone.
    pub fn kill_daemon(&self) {
        let Some(pid) = self.daemon_pid() else { return };
        kill(pid);
        self.wait_lock_free();
    }

    /// Blocks until no daemon holds the lock (a blocking `flock`, so no
    /// polling or sleeping).
    pub fn wait_lock_free(&self) {
        if let Ok(f) = std::fs::File::open(self.lock_file()) {
            f.lock().unwrap();
            f.unlock().unwrap();
        }
    }
}

pub fn count(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

#[cfg(unix)]
pub fn signal(pid: i32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Kills process `pid` at once (SIGKILL; TerminateProcess on Windows,
/// which also waits until the process is gone: TerminateProcess returns
/// before its handles are closed, and Wine refuses a lock on the daemon's
/// lock file until then, rather than blocking for it).
pub fn kill(pid: i32) {
    #[cfg(unix)]
    signal(pid, rustix::process::Signal::KILL);
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            INFINITE, OpenProcess, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE, TerminateProcess,
            WaitForSingleObject,
        };
        let Ok(pid) = u32::try_from(pid) else { return };
        // SAFETY: plain calls on a handle we open and close.
        unsafe {
            let h = OpenProcess(PROCESS_TERMINATE | PROCESS_SYNCHRONIZE, 0, pid);
            if !h.is_null() {
                if TerminateProcess(h, 137) != 0 {
                    WaitForSingleObject(h, INFINITE);
                }
                CloseHandle(h);
            }
        }
    }
}

impl Drop for Sandbox {
    /// Kills a daemon left running; only one that holds the lock, so a
    /// stale pid in the lock file (a daemon already stopped) is never hit.
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid_alive() {
            kill(pid);
        }
    }
}

/// Runs a daemon in the foreground (`credcached`) and returns the child
/// once it logged that it listens, reading its stderr for that line.
pub struct Foreground {
    pub child: std::process::Child,
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Sandbox {
    pub fn foreground_daemon(&self) -> Foreground {
        let fg = Foreground::spawn(self.command("credcached"));
        fg.wait_for_line("listening");
        fg
    }
}

impl Foreground {
    /// Spawns `command` (a daemon in the foreground) with its stderr read
    /// line by line into [`Foreground::stderr`].
    pub fn spawn(mut command: Command) -> Foreground {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while let Ok(1) = pipe.read(&mut byte) {
                if byte[0] == b'\n' {
                    let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                    buf.clear();
                } else {
                    buf.push(byte[0]);
                }
            }
        });
        Foreground { child, stderr: rx }
    }
}

impl Foreground {
    /// Reads stderr lines until one contains `needle`; panics at EOF.
    pub fn wait_for_line(&self, needle: &str) -> String {
        for line in self.stderr.iter() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("daemon stderr ended without a line containing {needle:?}");
    }
}

impl Sandbox {
    /// The daemon's pid if a daemon holds the lock right now.
    pub fn daemon_pid_alive(&self) -> Option<i32> {
        let f = std::fs::File::open(self.lock_file()).ok()?;
        match f.try_lock_shared() {
            Ok(()) => None,
            Err(_) => self.daemon_pid(),
        }
    }
}
