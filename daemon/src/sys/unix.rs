//! The Unix side of [`crate::sys`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon;
use zeroize::Zeroizing;

/// At start, before anything is created: other processes of this user may
/// not ptrace this one or read its memory through /proc, it dumps no core
/// (it holds tokens), and everything it creates is private (umask 077).
/// A detached daemon gets a session of its own, so the terminal that
/// started the client can close without taking the daemon with it. The
/// error is a warning to log once logging runs.
pub fn harden(detach: bool) -> Option<String> {
    #[cfg(target_os = "linux")]
    let dumpable_error =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
            .err()
            .map(|e| format!("could not mark the process non-dumpable: {e}"));
    #[cfg(not(target_os = "linux"))]
    let dumpable_error = None;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if detach {
        let _ = rustix::process::setsid();
    }
    dumpable_error
}

/// Whether another process of this user could read the daemon's memory
/// (`status`'s `dumpable`).
pub fn dumpable() -> bool {
    #[cfg(target_os = "linux")]
    return !matches!(
        rustix::process::dumpable_behavior(),
        Ok(rustix::process::DumpableBehavior::NotDumpable)
    );
    // macOS has no such setting to fail (docs/machine-interface.md).
    #[cfg(not(target_os = "linux"))]
    return false;
}

/// Points stdout at /dev/null, so nothing written later reaches the pipe
/// of the client that started a detached daemon.
pub fn release_stdout() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

/// Opens (creating it 0600 if missing) a file only this user may read:
/// the lock file.
pub fn open_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Opens a private file for appending (the log), creating it 0600; an
/// existing file keeps its mode on open, so the mode is forced.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Creates a new private file (0600) that must not exist yet.
pub fn create_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The warning ssh would give for a private file that others can read.
pub fn loose_file_warning(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    let uid = rustix::process::getuid().as_raw();
    if meta.uid() != uid {
        return Some(format!(
            "{} is owned by uid {}, not by this user",
            path.display(),
            meta.uid()
        ));
    }
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by others (mode {mode:o}); it holds a secret: chmod 600 it",
            path.display()
        )
    })
}

/// One malloc arena for the whole process, where glibc is the allocator.
/// glibc gives each thread that allocates an arena of its own, and what is
/// freed in one arena is not reused by another thread's allocations: the
/// daemon's few threads (the runtime's worker and blocking pool, sled's)
/// kept a daemon that had fetched 10,000 tokens at 53 MB rather than 44 (BENCHMARKS.md, issue 15). Requests are served by
/// the one runtime worker, so the shared arena's lock is seldom contended.
/// Must run before any other thread starts.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// How the at-rest key file is protected, for `status` (after its path).
pub const KEY_PROTECTION: &str = "protected by its file mode";

/// The at-rest key as written to its file: as it is (the file's mode
/// protects it).
pub fn protect_key(key: &[u8]) -> io::Result<Vec<u8>> {
    Ok(key.to_vec())
}

/// The key from its file's bytes; `Err` says why it cannot be used.
pub fn unprotect_key(bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    Ok(Zeroizing::new(bytes.to_vec()))
}

/// The cheap change stamp of a file: size, mtime (s, ns) and inode.
pub fn file_stamp(meta: &std::fs::Metadata) -> (u64, i64, i64, u64) {
    (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

/// Whether the connection's peer runs as this user; `Err` is the line to
/// log when it does not (or cannot be told).
pub fn check_peer(stream: &Stream) -> Result<(), String> {
    let mine = rustix::process::geteuid().as_raw();
    match stream.peer_creds().map(|c| c.euid()) {
        Ok(Some(uid)) if uid == mine => Ok(()),
        Ok(uid) => Err(format!(
            "refused a connection from another user (peer uid {uid:?})"
        )),
        Err(e) => Err(format!(
            "refused a connection whose peer cannot be identified: {e}"
        )),
    }
}

/// A helper program (`command`, `az`) runs in a process group of its own,
/// so that it and whatever it leaves behind can be killed together.
pub fn isolate_child(command: &mut tokio::process::Command) {
    command.process_group(0);
}

/// The process group [`isolate_child`] made for a program: it and what
/// it started.
pub struct ChildGroup(u32);

impl ChildGroup {
    /// The group of `child`, whose pid leads it.
    pub fn of(child: &tokio::process::Child) -> Option<Self> {
        child.id().map(Self)
    }

    /// Kills the whole group.
    pub fn kill(self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0 as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// Leaves the group alone.
    pub fn release(self) {}
}

/// The program to start for `name`: itself (a Unix `execvp` searches PATH).
pub fn program_path(name: &str) -> PathBuf {
    PathBuf::from(name)
}

/// Whether `p` is a file this user could run.
pub fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The names `program` may have on disk (`az` is `az` here).
pub fn executable_names(program: &str) -> Vec<String> {
    vec![program.to_owned()]
}

/// A future that resolves when the daemon is asked to stop: SIGTERM or
/// SIGINT, each logged as it comes. The handlers are installed now.
pub fn terminated() -> io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// Calls `reload` on every SIGHUP, in a task of its own.
pub fn reload_on_hangup(reload: impl Fn() + Send + 'static) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot handle SIGHUP: {e}")))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            reload();
        }
    });
    Ok(())
}

/// Where an opened file really is, after every symlink and `..`.
pub fn opened_path(file: &File, _path: &Path) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

/// Forces 0700 on `dir` and the directories in `entries`, 0600 on files.
pub fn restrict_tree(dir: &Path, entries: &[(PathBuf, bool)]) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    for (p, is_dir) in entries {
        let mode = if *is_dir { 0o700 } else { 0o600 };
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    }
}
