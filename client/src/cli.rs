//! The command line (docs/cli.md): the top-level parser and the list of
//! commands. Each command's own flags live in its module under
//! [`crate::commands`]; adding one (`watch`, `kubeconfig`,
//! `git-credential`, `docker-credential`) is a variant here, a module
//! there, and an arm in `main::run`.
//!
//! Parse errors are folded into one line (`credcache: <what>; usage: …`)
//! like every other error, instead of clap's multi-line report.

use std::path::PathBuf;

use clap::error::ErrorKind as ClapErrorKind;
use clap::{Parser, Subcommand};

use crate::commands::{
    completions, config, daemon, docker_credential, exec, forget, get, git_credential, kubeconfig,
    list, login, logout, man, refresh, sdk_env, status, watch,
};
use crate::exit::{self, Error};

/// Cached short-lived cloud tokens, from the credcached daemon.
#[derive(Debug, Parser)]
#[command(name = "credcache", version, max_term_width = 100)]
pub struct Cli {
    /// Config file to use (default: $CREDCACHE_CONFIG, else the per-user config dir).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a token for a credential.
    Get(get::Args),
    /// Run a command with tokens in its environment.
    Exec(exec::Args),
    /// Print the variables that point cloud SDKs at the daemon.
    SdkEnv(sdk_env::Args),
    /// List the configured credentials and their state.
    List(list::Args),
    /// Show the daemon's state and every credential's.
    Status(status::Args),
    /// Fetch tokens anew now.
    Refresh(refresh::Args),
    /// Print the current token as a JSON line, then one per new token.
    Watch(watch::Args),
    /// Drop tokens from the cache (memory and disk).
    Forget(forget::Args),
    /// Sign a person in (device code or browser); the daemon keeps the
    /// refresh token.
    Login(login::Args),
    /// Forget a signed-in credential's refresh token and its tokens.
    Logout(logout::Args),
    /// Check the config file, or show where it is.
    #[command(subcommand)]
    Config(config::Command),
    /// Start, stop or inspect the daemon.
    #[command(subcommand)]
    Daemon(daemon::Command),
    /// git's credential-helper protocol on stdin/stdout, for `[[git]]` hosts.
    GitCredential(git_credential::Args),
    /// Docker's credential-helper protocol, for `[[docker]]` registries
    /// (also run as `docker-credential-credcache`).
    DockerCredential(docker_credential::Args),
    /// Print a kubeconfig user entry that runs `credcache get NAME --format
    /// exec-credential`, or merge it into a kubeconfig.
    Kubeconfig(kubeconfig::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Print the man page (roff), or write every page into a directory.
    Man(man::Args),
}

/// What parsing the command line came to.
pub enum Parsed {
    /// Run this.
    Run(Cli),
    /// Help or version was printed (or should exit with this code).
    Exit(u8),
}

/// Parses `std::env::args_os()`; prints help and version itself.
pub fn parse() -> Result<Parsed, Error> {
    // Run as `docker-credential-credcache`, it is `credcache docker-credential`.
    parse_from(docker_credential::argv(std::env::args_os()))
}

fn parse_from<I, T>(args: I) -> Result<Parsed, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(Parsed::Run(cli)),
        Err(e) => match e.kind() {
            ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion => {
                // A closed stdout (`credcache --help | head -1`) is fine.
                let _ = e.print();
                Ok(Parsed::Exit(exit::OK))
            }
            ClapErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                Ok(Parsed::Exit(exit::USAGE))
            }
            _ => Err(Error::Usage(one_line_usage_error(&e.render().to_string()))),
        },
    }
}

/// Folds clap's report (`error: …`, tips, `Usage: …`, `For more
/// information…`) into one line: the error and its tips, then the usage.
fn one_line_usage_error(rendered: &str) -> String {
    let mut parts = Vec::new();
    let mut usage = None;
    for paragraph in rendered.split("\n\n") {
        let text = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || text.starts_with("For more information") {
            continue;
        }
        if let Some(u) = text.strip_prefix("Usage:") {
            usage = Some(u.trim().to_owned());
            continue;
        }
        parts.push(text.strip_prefix("error: ").unwrap_or(&text).to_owned());
    }
    let mut line = parts.join("; ");
    if let Some(usage) = usage {
        line.push_str(&format!(" (usage: {usage})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, Error> {
        match parse_from(std::iter::once("credcache").chain(args.iter().copied()))? {
            Parsed::Run(cli) => Ok(cli),
            Parsed::Exit(code) => panic!("exited with {code}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        let err = parse(args).expect_err("should not parse");
        assert_eq!(err.exit_code(), exit::USAGE, "{err:?}");
        let lines = err.messages();
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\n'));
        lines[0].clone()
    }

    #[test]
    fn get_takes_its_flags() {
        let cli = parse(&[
            "get",
            "gcp",
            "--format",
            "exec-credential",
            "--min-valid",
            "5m",
            "--refresh",
            "--config",
            "/c.toml",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/c.toml")));
        let Command::Get(args) = cli.command else {
            panic!("not get")
        };
        assert_eq!(args.name, "gcp");
        assert_eq!(args.format, crate::format::Format::ExecCredential);
        assert_eq!(args.min_valid, Some(std::time::Duration::from_secs(300)));
        assert!(args.refresh);

        let Command::Get(args) = parse(&["get", "gcp"]).unwrap().command else {
            panic!("not get")
        };
        assert_eq!(args.format, crate::format::Format::Raw);
        assert_eq!(args.min_valid, None);
    }

    #[test]
    fn bad_values_are_one_line_usage_errors() {
        let line = usage_error(&["get", "gcp", "--min-valid", "soon"]);
        assert!(line.contains("--min-valid"), "{line}");
        assert!(line.contains("is not a duration"), "{line}");
        let line = usage_error(&["get", "gcp", "--format", "yaml"]);
        assert!(line.contains("yaml"), "{line}");
        usage_error(&["frobnicate"]);
        let line = usage_error(&["get"]);
        assert!(line.contains("(usage: credcache get"), "{line}");
    }

    #[test]
    fn refresh_and_forget_want_exactly_one_of_name_or_all() {
        for cmd in ["refresh", "forget"] {
            usage_error(&[cmd]);
            usage_error(&[cmd, "gcp", "--all"]);
            assert!(parse(&[cmd, "gcp"]).is_ok());
            assert!(parse(&[cmd, "--all"]).is_ok());
        }
        let Command::Refresh(args) = parse(&["refresh", "--all"]).unwrap().command else {
            panic!("not refresh")
        };
        assert_eq!(args.target(), None);
        let Command::Forget(args) = parse(&["forget", "gcp"]).unwrap().command else {
            panic!("not forget")
        };
        assert_eq!(args.target(), Some("gcp".to_owned()));
    }

    #[test]
    fn exec_splits_names_and_keeps_the_command_verbatim() {
        let cli = parse(&["exec", "gcp,corp", "--", "sh", "-c", "echo --x", "--config"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.names, ["gcp", "corp"]);
        assert_eq!(args.command, ["sh", "-c", "echo --x", "--config"]);
        assert_eq!(cli.config, None);
        usage_error(&["exec", "gcp"]);
        usage_error(&["exec", "gcp", "--"]);
        usage_error(&["exec", "gcp", "corp", "--", "env"]);
    }

    #[test]
    fn sdk_env_and_exec_sdk_parse() {
        let Command::SdkEnv(args) =
            parse(&["sdk-env", "corp,gcp", "--shell", "dotenv", "--rotate"])
                .unwrap()
                .command
        else {
            panic!("not sdk-env")
        };
        assert_eq!(args.names, ["corp", "gcp"]);
        assert_eq!(args.shell, sdk_env::Shell::Dotenv);
        assert!(args.rotate);
        let Command::SdkEnv(args) = parse(&["sdk-env", "corp"]).unwrap().command else {
            panic!("not sdk-env")
        };
        assert_eq!(args.shell, sdk_env::Shell::Sh);
        assert!(!args.rotate);
        usage_error(&["sdk-env"]);
        usage_error(&["sdk-env", "corp", "--shell", "tcsh"]);
        let Command::Exec(args) = parse(&["exec", "--sdk", "corp", "--", "python", "app.py"])
            .unwrap()
            .command
        else {
            panic!("not exec")
        };
        assert!(args.sdk);
        assert_eq!(args.names, ["corp"]);
        assert_eq!(args.command, ["python", "app.py"]);
    }

    #[test]
    fn daemon_config_and_completions_subcommands() {
        for sub in ["start", "stop", "restart", "reload", "status", "run"] {
            assert!(matches!(
                parse(&["daemon", sub]).unwrap().command,
                Command::Daemon(_)
            ));
        }
        let cli = parse(&["config", "check", "--config", "/x.toml"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Config(config::Command::Check)
        ));
        assert_eq!(cli.config, Some(PathBuf::from("/x.toml")));
        assert!(parse(&["config", "path"]).is_ok());
        for shell in ["bash", "zsh", "fish", "powershell"] {
            assert!(parse(&["completions", shell]).is_ok(), "{shell}");
        }
        usage_error(&["completions", "tcsh"]);
        usage_error(&["daemon", "explode"]);
    }

    #[test]
    fn list_and_status_take_json() {
        let Command::List(args) = parse(&["list", "--json"]).unwrap().command else {
            panic!("not list")
        };
        assert!(args.json);
        let Command::Status(args) = parse(&["status"]).unwrap().command else {
            panic!("not status")
        };
        assert!(!args.json);
    }

    #[test]
    fn credential_helper_subcommands() {
        let Command::GitCredential(args) = parse(&["git-credential", "get"]).unwrap().command
        else {
            panic!("not git-credential")
        };
        assert_eq!(args.operation, git_credential::Operation::Get);
        let Command::GitCredential(args) = parse(&["git-credential", "newop"]).unwrap().command
        else {
            panic!("not git-credential")
        };
        assert_eq!(
            args.operation,
            git_credential::Operation::Other("newop".into())
        );
        usage_error(&["git-credential"]);
        let Command::DockerCredential(args) =
            parse(&["docker-credential", "list"]).unwrap().command
        else {
            panic!("not docker-credential")
        };
        assert_eq!(args.action, docker_credential::Action::List);
        usage_error(&["docker-credential", "frob"]);
    }

    #[test]
    fn version_is_program_name_and_version() {
        assert_eq!(
            Cli::command().render_version(),
            format!("credcache {}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn clap_reports_fold_into_one_line() {
        let rendered = "error: unrecognized subcommand 'gte'\n\n  tip: a similar subcommand exists: 'get'\n\nUsage: credcache [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered),
            "unrecognized subcommand 'gte'; tip: a similar subcommand exists: 'get' (usage: credcache [OPTIONS] <COMMAND>)"
        );
        let rendered = "error: the following required arguments were not provided:\n  <NAME|--all>\n\nUsage: credcache refresh <NAME|--all>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line_usage_error(rendered),
            "the following required arguments were not provided: <NAME|--all> (usage: credcache refresh <NAME|--all>)"
        );
    }
}
