//! `credcache-stand-in`: a stand-in for a system program in tests, where a
//! shell script cannot be one (Windows runs only `.exe` files for a bare
//! program name such as `schtasks`).
//!
//! Copied under the program's name, it appends its arguments, joined by
//! spaces, as one line to `<its own name>.log` beside itself, and exits 0.
//! The tests read that log as they read a shell stand-in's.

use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let log = match std::env::current_exe() {
        Ok(exe) => exe.with_extension("log"),
        Err(e) => {
            eprintln!("credcache-stand-in: cannot find its own path: {e}");
            return ExitCode::from(2);
        }
    };
    let line = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| writeln!(f, "{line}"));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credcache-stand-in: cannot write {}: {e}", log.display());
            ExitCode::from(2)
        }
    }
}
