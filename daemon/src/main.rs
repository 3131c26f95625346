//! `credcached`: see the `credcache_daemon` library for everything.

use std::path::PathBuf;
use std::process::ExitCode;

use credcache_daemon::startup::{self, Options};

const USAGE: &str = "usage: credcached [--config PATH] [--detach]

The credcache daemon. It is normally started by `credcache` itself, or by
`credcache daemon start`; run it by hand to watch its log on stderr.
Under systemd (`credcache daemon install-service`) it takes its socket from
LISTEN_FDS and reports readiness with sd_notify.

  --config PATH   config file (default: CREDCACHE_CONFIG, then the user config dir)
  --detach        report readiness on stdout as one line and log to the log file
  --version       print the version";

fn main() -> ExitCode {
    credcache_daemon::sys::one_malloc_arena();
    let mut options = Options::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--detach") => options.detach = true,
            Some("--config") => match args.next() {
                Some(path) => options.config = Some(PathBuf::from(path)),
                None => return usage_error("--config needs a path"),
            },
            Some("--version" | "-V") => {
                println!("credcached {}", credcache_shared::VERSION);
                return ExitCode::SUCCESS;
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => return usage_error(&format!("unexpected argument {arg:?}")),
        }
    }
    startup::run(options)
}

fn usage_error(why: &str) -> ExitCode {
    eprintln!("credcached: {why}\n{USAGE}");
    ExitCode::from(2)
}
