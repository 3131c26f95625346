//! Reading a file someone else named (a key file, a secret file, the
//! config) without trusting what is there: a FIFO would block the reader
//! forever, `/dev/zero` would fill memory, a 1 GB file would too. Only
//! regular files are read, opened non-blocking and checked with `fstat`
//! on the descriptor itself (no race with a rename), and never more than
//! a stated size.

use std::io::Read;
use std::path::Path;

/// The largest file read on the daemon's behalf: key files and secrets are
/// a few KiB. The config has its own, larger cap (`config::MAX_CONFIG`).
pub const MAX_FILE: usize = 1 << 20;

/// Why a file was not read. The `Display` form reads well after
/// "cannot read key file PATH: ".
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is a {0}, not a regular file (only regular files are read)")]
    NotRegular(&'static str),
    #[error("it is over the {} limit", size_name(*max))]
    TooBig { max: usize },
    #[error("no answer within {0} s (a hung network mount?)")]
    TimedOut(u64),
    #[error("it is not under {0}")]
    Outside(String),
}

impl ReadError {
    /// True when the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes}-byte")
    }
}

/// Opens `path` for reading without blocking on a FIFO or device, and
/// refuses anything but a regular file.
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options.open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular(kind_name(kind)));
    }
    Ok(file)
}

/// The whole of regular file `path`, at most `max` bytes. A file that grew
/// past `max` after the check is refused too.
pub fn read_regular(path: &Path, max: usize) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    read_capped(file, max)
}

/// Reads an opened regular file, refusing more than `max` bytes.
pub fn read_capped(file: std::fs::File, max: usize) -> Result<Vec<u8>, ReadError> {
    let size = file.metadata()?.len();
    if size > max as u64 {
        return Err(ReadError::TooBig { max });
    }
    let mut out = Vec::with_capacity(size as usize);
    file.take(max as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max {
        return Err(ReadError::TooBig { max });
    }
    Ok(out)
}

fn kind_name(kind: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        return "directory";
    }
    "special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok");
        std::fs::write(&ok, b"abc").unwrap();
        assert_eq!(read_regular(&ok, 3).unwrap(), b"abc");
        let e = read_regular(&ok, 2).unwrap_err();
        assert_eq!(e.to_string(), "it is over the 2-byte limit");
        let big = tmp.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(2 << 20)
            .unwrap();
        let e = read_regular(&big, MAX_FILE).unwrap_err();
        assert_eq!(e.to_string(), "it is over the 1 MiB limit");
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), MAX_FILE).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
        let e = read_regular(tmp.path(), MAX_FILE).unwrap_err();
        // Windows refuses to open a directory as a file at all.
        #[cfg(unix)]
        assert!(e.to_string().contains("directory"), "{e}");
        #[cfg(windows)]
        assert_eq!(e.to_string(), "Access denied. (os error 5)");
        assert!(
            read_regular(&tmp.path().join("none"), 1)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[cfg(target_os = "linux")] // rustix has no mkfifoat for Apple
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = read_regular(&fifo, MAX_FILE).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
}
