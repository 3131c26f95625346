//! Writing to the terminal: stdout for results, stderr for notes.
//!
//! Every byte a command prints on stdout goes through [`stdout`], so a
//! closed pipe (`credcache list | head -1`) becomes [`Error::BrokenPipe`]
//! and a quiet exit 0 everywhere, as in ripgrep. Notes and warnings go to
//! stderr and never fail the command.

use std::fmt::Display;
use std::io::{self, Write};

use crate::exit::Error;

/// Writes `text` to stdout and flushes it.
pub fn stdout(text: &str) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Error::BrokenPipe,
            _ => Error::Other(format!("cannot write to stdout: {e}")),
        })
}

/// A line on stderr for a person watching, e.g. `daemon stopped (pid 42)`.
pub fn note(message: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

/// Something the user should know although the command succeeded.
pub fn warning(message: impl Display) {
    let _ = writeln!(io::stderr().lock(), "credcache: warning: {message}");
}
