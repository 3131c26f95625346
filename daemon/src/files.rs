//! Every file the daemon reads on a credential's behalf (key files,
//! client-secret files, federated token files, ADC files,
//! `azureProfile.json`) goes through here: regular files only, at most
//! [`MAX_FILE`] bytes (`credcache_shared::files`), and off the runtime
//! thread with a timeout, so a hung network mount costs one blocked
//! thread and an error, never the daemon's only worker.
//!
//! Every path read comes from the config or the daemon's environment, but
//! one: Azure Arc's challenge, an upstream answer naming a file to read.
//! That goes through [`read_under`]: the file must resolve to somewhere
//! under a fixed directory.
//!
//! The daemon's own private files (the at-rest key, the SDK endpoints'
//! secret and ports) are written whole through [`replace_private`].

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

pub use credcache_shared::files::{MAX_FILE, ReadError};

/// How long a read may take. A local file takes microseconds; this is for
/// a network mount that stopped answering.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads regular file `path` (at most [`MAX_FILE`] bytes) on a blocking
/// thread, giving up after [`READ_TIMEOUT`].
pub async fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    let owned = path.to_path_buf();
    let job = tokio::task::spawn_blocking(move || {
        credcache_shared::files::read_regular(&owned, MAX_FILE)
    });
    match tokio::time::timeout(READ_TIMEOUT, job).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => Err(ReadError::Io(std::io::Error::other(e.to_string()))),
        Err(_) => Err(ReadError::TimedOut(READ_TIMEOUT.as_secs())),
    }
}

/// [`read`] for code that is not async (fingerprints, start-up): the read
/// runs on its own thread and is abandoned after `timeout`.
pub fn read_blocking(path: &Path, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadError> {
    let owned = path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("credcached-file-read".to_owned())
        .spawn(move || {
            let _ = tx.send(credcache_shared::files::read_regular(&owned, max));
        })?;
    rx.recv_timeout(timeout)
        .unwrap_or(Err(ReadError::TimedOut(timeout.as_secs())))
}

/// [`read`], but only if `path` resolves (symlinks followed, checked on
/// the opened descriptor) to a file under `dir`, and is at most `max`
/// bytes: for paths that come from outside, which must not name
/// `~/.ssh/id_ed25519`.
pub async fn read_under(path: &Path, dir: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    let (path, dir) = (path.to_path_buf(), dir.to_path_buf());
    let job = tokio::task::spawn_blocking(move || read_under_blocking(&path, &dir, max));
    match tokio::time::timeout(READ_TIMEOUT, job).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => Err(ReadError::Io(std::io::Error::other(e.to_string()))),
        Err(_) => Err(ReadError::TimedOut(READ_TIMEOUT.as_secs())),
    }
}

fn read_under_blocking(path: &Path, dir: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    let outside = || ReadError::Outside(dir.display().to_string());
    let dir = std::fs::canonicalize(dir)?;
    let file = credcache_shared::files::open_regular(path)?;
    // Where the descriptor really points, after every symlink and `..`.
    let real = crate::sys::opened_path(&file, path).ok_or_else(outside)?;
    if real.parent().is_none_or(|p| !p.starts_with(&dir)) {
        return Err(outside());
    }
    credcache_shared::files::read_capped(file, max.min(MAX_FILE))
}

#[cfg(all(test, unix))] // /dev/zero and symlinks
mod tests {
    use super::*;

    #[test]
    fn replace_private_writes_whole_private_files_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub").join("sdk.secret");
        replace_private(&path, b"one").unwrap();
        replace_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sdk.secret"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn reads_refuse_devices_and_big_files_and_under_keeps_to_its_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let inside = tmp.path().join("arc");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("challenge.key"), b"k").unwrap();
        std::fs::write(tmp.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), inside.join("link")).unwrap();
        assert_eq!(read(&inside.join("challenge.key")).await.unwrap(), b"k");
        assert!(matches!(
            read(Path::new("/dev/zero")).await,
            Err(ReadError::NotRegular(_))
        ));
        assert_eq!(
            read_under(&inside.join("challenge.key"), &inside, MAX_FILE)
                .await
                .unwrap(),
            b"k"
        );
        for escape in [inside.join("link"), inside.join("../secret")] {
            assert!(
                matches!(
                    read_under(&escape, &inside, MAX_FILE).await,
                    Err(ReadError::Outside(_))
                ),
                "{}",
                escape.display()
            );
        }
        let e = read_blocking(Path::new("/dev/zero"), MAX_FILE, READ_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }
}

/// Writes `path` whole: to `NAME.tmp` beside it, private from its creation
/// (0600, or an owner-only DACL on Windows), synced, then renamed over
/// `path`, so a crash never leaves a half-written file in its place.
pub fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut file = crate::sys::create_new_private(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
