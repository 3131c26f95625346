//! Writing a file whole, by rename: `kubeconfig --merge`, the service
//! files, the man pages.
//!
//! The new content goes into a temp file created exclusively (`O_EXCL`,
//! a random name: `tempfile`) in the target's directory, then is renamed
//! over the target. A name chosen in advance and opened with
//! create + truncate would follow a symlink planted at that name and
//! overwrite whatever it points to (`~/.bashrc`); an exclusive create
//! never opens an existing file, and a rename replaces a link rather than
//! writing through it. A reader sees the old file or the new one, never
//! half of one.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Replaces `target` with `bytes`, mode `mode`, creating its directory if
/// need be. On failure the temp file is removed and `target` is untouched.
pub fn replace(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match target.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => {
            fs::create_dir_all(dir)?;
            dir
        }
        None => Path::new("."),
    };
    // Created 0600 whatever the umask, so nobody reads it half-written.
    let mut file = tempfile::Builder::new()
        .prefix(".credcache-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    crate::sys::set_mode(file.as_file(), mode)?;
    file.as_file().sync_all()?;
    file.persist(target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(all(test, unix))] // modes and symlinks
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_the_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/file");
        replace(&target, b"one", 0o644).unwrap();
        replace(&target, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        fs::write(&precious, b"keep").unwrap();
        let target = dir.path().join("target");
        std::os::unix::fs::symlink(&precious, &target).unwrap();
        replace(&target, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&precious).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&target).unwrap().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }
}
