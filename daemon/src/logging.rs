//! Logging: stderr in the foreground, a size-capped file when detached.
//!
//! Third-party crates (HTTP, TLS, sled) are held at `info` whatever
//! `CREDCACHE_LOG` asks for: their debug output can include request
//! details, and token values must never reach a log at any level. The cap
//! is a filter of its own after `CREDCACHE_LOG`'s, not directives mixed
//! into it, where a more specific one (`sled::pagecache=trace`) would win.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log file is rotated (to `.1`) past this size.
pub const MAX_LOG_BYTES: u64 = 8 << 20;

/// Whether an event or span may be logged below `info`: only credcache's
/// own (`credcache_daemon`, `credcached`, `credcache_shared`).
fn below_info_allowed(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() <= tracing::Level::INFO || meta.target().starts_with("credcache")
}

/// Where the log goes.
pub enum Target<'a> {
    Stderr,
    File(&'a Path),
}

/// Installs the global subscriber.
pub fn init(target: Target<'_>) -> io::Result<()> {
    let wanted = std::env::var("CREDCACHE_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&wanted).unwrap_or_else(|_| EnvFilter::new("info"));
    let cap = tracing_subscriber::filter::filter_fn(below_info_allowed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match target {
        Target::Stderr => {
            let _ = builder
                .with_writer(io::stderr)
                .finish()
                .with(cap)
                .try_init();
        }
        Target::File(path) => {
            let writer = CappedFile::open(path)?;
            let _ = builder
                .with_ansi(false)
                .with_writer(writer)
                .finish()
                .with(cap)
                .try_init();
        }
    }
    Ok(())
}

/// An append-only file, mode 0600, that moves itself to `<path>.1` when it
/// grows past [`MAX_LOG_BYTES`].
#[derive(Clone)]
pub struct CappedFile(Arc<Mutex<Inner>>);

struct Inner {
    path: PathBuf,
    file: File,
    written: u64,
}

impl CappedFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = open_log(path)?;
        let written = file.metadata()?.len();
        let mut inner = Inner {
            path: path.to_path_buf(),
            file,
            written,
        };
        if inner.written > MAX_LOG_BYTES {
            inner.rotate()?;
        }
        Ok(Self(Arc::new(Mutex::new(inner))))
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    crate::sys::open_private_append(path)
}

impl Inner {
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(&self.path, PathBuf::from(old))?;
        self.file = open_log(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for CappedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if inner.written + buf.len() as u64 > MAX_LOG_BYTES {
            // If rotation fails (disk full, ...) keep appending.
            let _ = inner.rotate();
        }
        let n = inner.file.write(buf)?;
        inner.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .flush()
    }
}

impl<'a> MakeWriter<'a> for CappedFile {
    type Writer = CappedFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credcache_targets_go_below_info() {
        use tracing::{Level, Metadata, callsite::Identifier, field::FieldSet, metadata::Kind};
        struct Nowhere;
        impl tracing::Callsite for Nowhere {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!("the filter never asks this test callsite for its metadata")
            }
        }
        static NOWHERE: Nowhere = Nowhere;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                FieldSet::new(&[], Identifier(&NOWHERE)),
                Kind::EVENT,
            )
        };
        assert!(below_info_allowed(&meta(
            "credcache_daemon::engine",
            Level::TRACE
        )));
        assert!(below_info_allowed(&meta("sled::pagecache", Level::INFO)));
        assert!(!below_info_allowed(&meta("sled::pagecache", Level::TRACE)));
        assert!(!below_info_allowed(&meta(
            "hyper_util::client",
            Level::DEBUG
        )));
    }

    #[test]
    fn rotates_past_the_cap_and_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d.log");
        let mut w = CappedFile::open(&path).unwrap();
        let line = vec![b'x'; 1 << 20];
        for _ in 0..9 {
            w.write_all(&line).unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_LOG_BYTES);
        assert!(tmp.path().join("d.log.1").exists());
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions()
            ) & 0o777,
            0o600
        );
    }
}
