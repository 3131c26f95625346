//! Where credcache keeps its files (docs/configuration.md), and the checks that keep other
//! users out of them.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use directories::{BaseDirs, ProjectDirs};

/// Every location the daemon and client use, resolved once from the
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The TOML config file (it may not exist).
    pub config_file: PathBuf,
    /// Holds the cache and the detached daemon's log.
    pub data_dir: PathBuf,
    /// The sled database directory: `<data_dir>/cache`.
    pub cache_dir: PathBuf,
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// The detached daemon's log: `<data_dir>/credcached.log`.
    pub log_file: PathBuf,
}

/// Why the paths could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error(
        "cannot find the home directory: set HOME, or CREDCACHE_CONFIG, CREDCACHE_DATA_DIR and CREDCACHE_SOCKET"
    )]
    NoHome,
    #[error("{path}: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl Paths {
    /// Resolves from the process environment; `config_override` is the
    /// `--config` flag, which beats `CREDCACHE_CONFIG`.
    pub fn from_env(config_override: Option<PathBuf>) -> Result<Self, PathError> {
        Self::resolve(config_override, |k| std::env::var_os(k))
    }

    /// Resolves with an explicit environment, for tests.
    pub fn resolve(
        config_override: Option<PathBuf>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, PathError> {
        let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let project = ProjectDirs::from("dev", "credcache", "credcache");

        let config_file = match config_override.or_else(|| set("CREDCACHE_CONFIG")) {
            Some(p) => p,
            None => project
                .as_ref()
                .ok_or(PathError::NoHome)?
                .config_dir()
                .join("config.toml"),
        };
        let data_dir = match set("CREDCACHE_DATA_DIR") {
            Some(p) => p,
            None => project
                .as_ref()
                .ok_or(PathError::NoHome)?
                .data_local_dir()
                .to_path_buf(),
        };
        let socket = match set("CREDCACHE_SOCKET") {
            Some(p) => endpoint_name(p),
            None => default_socket(project.as_ref()),
        };
        Ok(Self {
            cache_dir: data_dir.join("cache"),
            log_file: data_dir.join("credcached.log"),
            config_file,
            data_dir,
            socket,
        })
    }

    /// The daemon's lock and pid file, beside the socket (on Windows, where
    /// a pipe has no directory, in the data directory, named after the pipe).
    pub fn lock_file(&self) -> PathBuf {
        with_suffix(&self.lock_base(), ".lock")
    }

    /// Where the running daemon's pid is written: the lock file itself on
    /// Unix; beside it on Windows, where a locked file cannot be read by
    /// another process.
    pub fn pid_file(&self) -> PathBuf {
        if cfg!(windows) {
            with_suffix(&self.lock_base(), ".pid")
        } else {
            self.lock_file()
        }
    }

    /// The file clients serialize auto-start on, beside the lock file.
    pub fn start_lock_file(&self) -> PathBuf {
        with_suffix(&self.lock_base(), ".start")
    }

    #[cfg(unix)]
    fn lock_base(&self) -> PathBuf {
        self.socket.clone()
    }

    #[cfg(windows)]
    fn lock_base(&self) -> PathBuf {
        let name = self
            .socket
            .file_name()
            .unwrap_or_else(|| "credcache".as_ref());
        self.data_dir.join(name)
    }

    /// The directory that holds the socket.
    pub fn socket_dir(&self) -> &Path {
        self.socket.parent().unwrap_or(Path::new("."))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn default_socket(project: Option<&ProjectDirs>) -> PathBuf {
    if let Some(dir) = project.and_then(|p| p.runtime_dir()) {
        return dir.join("credcache.sock");
    }
    #[cfg(unix)]
    {
        let uid = rustix::process::getuid().as_raw();
        PathBuf::from(format!("/tmp/credcache-{uid}/credcache.sock"))
    }
    #[cfg(windows)]
    {
        let user = crate::windows::user_name().unwrap_or_else(|_| "user".to_owned());
        endpoint_name(PathBuf::from(format!("credcache-{user}")))
    }
}

/// `CREDCACHE_SOCKET` as the endpoint: a socket path on Unix.
#[cfg(unix)]
fn endpoint_name(path: PathBuf) -> PathBuf {
    path
}

/// `CREDCACHE_SOCKET` as the endpoint on Windows: a named pipe. A value that
/// is already a pipe path (`\\.\pipe\NAME`) is taken as it is; any other is
/// the pipe's name, its separators and colons made `-` (a pipe name may hold
/// no backslash), so a path-like value still names one pipe of its own.
#[cfg(windows)]
fn endpoint_name(path: PathBuf) -> PathBuf {
    if is_pipe(&path) {
        return path;
    }
    let name: String = path
        .to_string_lossy()
        .chars()
        .map(|c| {
            if matches!(c, '\\' | '/' | ':') {
                '-'
            } else {
                c
            }
        })
        .collect();
    PathBuf::from(format!(r"\\.\pipe\{}", name.trim_start_matches('-')))
}

/// Whether `path` names a named pipe (`\\.\pipe\…`) rather than a file.
#[cfg(windows)]
pub fn is_pipe(path: &Path) -> bool {
    path.to_string_lossy()
        .get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case(r"\\.\pipe\"))
}

/// Expands a leading `~/` to the home directory, as the config file allows.
/// The Google ADC file to use when a `google` credential names no
/// `key_file`: `GOOGLE_APPLICATION_CREDENTIALS` if set (even if missing:
/// that is an error, reported at fetch), else gcloud's
/// `application_default_credentials.json` (in `CLOUDSDK_CONFIG`, default
/// `~/.config/gcloud`, or `%APPDATA%\gcloud` on Windows) if it exists.
pub fn google_adc_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let gcloud = match std::env::var_os("CLOUDSDK_CONFIG").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => default_gcloud_dir()?,
    };
    let file = gcloud.join("application_default_credentials.json");
    file.is_file().then_some(file)
}

/// gcloud's own configuration directory when `CLOUDSDK_CONFIG` is unset.
#[cfg(not(windows))]
fn default_gcloud_dir() -> Option<PathBuf> {
    Some(BaseDirs::new()?.home_dir().join(".config/gcloud"))
}

/// gcloud's own configuration directory when `CLOUDSDK_CONFIG` is unset:
/// gcloud and the Google SDKs read `APPDATA` on Windows, not the profile
/// folder, so the variable comes first and the roaming folder is only the
/// fallback when it is unset.
#[cfg(windows)]
fn default_gcloud_dir() -> Option<PathBuf> {
    let appdata = match std::env::var_os("APPDATA").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => BaseDirs::new()?.config_dir().to_path_buf(),
    };
    Some(appdata.join("gcloud"))
}

pub fn expand_tilde(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/")
        && let Some(base) = BaseDirs::new()
    {
        return base.home_dir().join(rest);
    }
    if path == "~"
        && let Some(base) = BaseDirs::new()
    {
        return base.home_dir().to_path_buf();
    }
    PathBuf::from(path)
}

/// Makes sure `dir` is a private directory of ours: created 0700 if missing
/// (parents too); if it exists it must be a real directory (not a symlink),
/// owned by us and not writable by group or others, or it is refused. This
/// is the check that defeats a directory planted in a shared `/tmp`.
#[cfg(unix)]
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};

    let io_err = |source| PathError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            check_owned_dir(dir, &meta)?;
            if meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
            // The mode given to mkdir is filtered by the umask; force it.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// The client's check before it connects: `dir`, if it exists, passes the
/// same tests as in [`ensure_private_dir`] (a real directory, ours, not
/// writable by group or others), but nothing is created or changed.
/// `Ok(false)`: it does not exist (so nothing can listen in it).
#[cfg(unix)]
pub fn check_private_dir(dir: &Path) -> Result<bool, PathError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => check_owned_dir(dir, &meta).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PathError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Windows: `dir` is created with an owner-only DACL if missing (parents
/// too); one that exists must be a real directory, not a link. The pipe
/// "directory" (`\\.\pipe\`) needs nothing: the pipe has its own DACL.
#[cfg(windows)]
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    if check_private_dir(dir)? {
        return Ok(());
    }
    crate::windows::create_private_dir_all(dir).map_err(|source| PathError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Windows: the client's check, as on Unix but without owners and modes.
#[cfg(windows)]
pub fn check_private_dir(dir: &Path) -> Result<bool, PathError> {
    if is_pipe(&dir.join("x")) {
        return Ok(true);
    }
    let unsafe_dir = |why: &str| PathError::Unsafe {
        path: dir.to_path_buf(),
        why: why.to_owned(),
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(unsafe_dir("is a symlink; refusing to use it"))
        }
        Ok(meta) if !meta.is_dir() => Err(unsafe_dir("exists and is not a directory")),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PathError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Refuses a symlink, a non-directory, another owner, or group/world write.
#[cfg(unix)]
fn check_owned_dir(dir: &Path, meta: &std::fs::Metadata) -> Result<(), PathError> {
    use std::os::unix::fs::MetadataExt;

    let unsafe_dir = |why: &str| PathError::Unsafe {
        path: dir.to_path_buf(),
        why: why.to_owned(),
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("is a symlink; refusing to use it"));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("exists and is not a directory"));
    }
    let uid = rustix::process::getuid().as_raw();
    if meta.uid() != uid {
        return Err(unsafe_dir(&format!(
            "is owned by uid {}, not by this user (uid {uid}); refusing to use it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(&format!(
            "is writable by group or others (mode {:o}); refusing to use it (chmod 700 it or remove it)",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn overrides_win() {
        let p = Paths::resolve(
            None,
            env(&[
                ("CREDCACHE_CONFIG", "/c/config.toml"),
                ("CREDCACHE_DATA_DIR", "/d"),
                ("CREDCACHE_SOCKET", "/s/sock"),
            ]),
        )
        .unwrap();
        assert_eq!(p.config_file, PathBuf::from("/c/config.toml"));
        assert_eq!(p.cache_dir, PathBuf::from("/d/cache"));
        assert_eq!(p.log_file, PathBuf::from("/d/credcached.log"));
        #[cfg(unix)]
        {
            assert_eq!(p.socket, PathBuf::from("/s/sock"));
            assert_eq!(p.lock_file(), PathBuf::from("/s/sock.lock"));
        }
        #[cfg(windows)]
        {
            assert_eq!(p.socket, PathBuf::from(r"\\.\pipe\s-sock"));
            assert_eq!(p.lock_file(), PathBuf::from("/d/s-sock.lock"));
            assert_eq!(p.start_lock_file(), PathBuf::from("/d/s-sock.start"));
        }

        let p = Paths::resolve(
            Some("/flag.toml".into()),
            env(&[("CREDCACHE_CONFIG", "/c/config.toml")]),
        )
        .unwrap();
        assert_eq!(p.config_file, PathBuf::from("/flag.toml"));
    }

    #[cfg(windows)]
    #[test]
    fn the_endpoint_is_a_named_pipe() {
        let pipe = |v: &str| {
            Paths::resolve(
                None,
                env(&[
                    ("CREDCACHE_SOCKET", v),
                    ("CREDCACHE_DATA_DIR", "/d"),
                    ("CREDCACHE_CONFIG", "/c"),
                ]),
            )
            .unwrap()
            .socket
        };
        assert_eq!(pipe(r"\\.\pipe\mine"), PathBuf::from(r"\\.\pipe\mine"));
        assert_eq!(pipe("mine"), PathBuf::from(r"\\.\pipe\mine"));
        assert_eq!(
            pipe(r"C:\tmp\s.sock"),
            PathBuf::from(r"\\.\pipe\C--tmp-s.sock")
        );
        let default = default_socket(None);
        assert!(is_pipe(&default), "{}", default.display());
        assert!(
            default
                .to_string_lossy()
                .starts_with(r"\\.\pipe\credcache-"),
            "{}",
            default.display()
        );
        assert!(check_private_dir(Path::new(r"\\.\pipe\")).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a").join("b");
        ensure_private_dir(&d).unwrap();
        assert!(check_private_dir(&d).unwrap());
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = ensure_private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_is_created_0700_and_loose_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let loose = tmp.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&loose).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(
            ensure_private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
    }

    #[cfg(unix)]
    #[test]
    fn checking_a_dir_changes_nothing_and_refuses_the_same() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        assert!(!check_private_dir(&missing).unwrap());
        assert!(!missing.exists(), "a check creates nothing");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_private_dir(&open).unwrap());
        assert_eq!(
            std::fs::metadata(&open).unwrap().permissions().mode() & 0o777,
            0o755,
            "a check changes nothing"
        );

        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let err = check_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
    }
}
