//! `credcache config check | path`: the config file, read by the client
//! itself. No daemon is contacted or started, so `check` works before the
//! first start and in CI.

use std::io;
use std::path::Path;

use credcache_shared::config::Config;

use crate::connect::Endpoint;
use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the config file (exit 2 on problems, each on its own line).
    Check,
    /// Print the config file's path.
    Path,
}

pub fn run(endpoint: &Endpoint, command: &Command) -> Result<(), Error> {
    let path = &endpoint.paths.config_file;
    match command {
        Command::Check => {
            // A missing default file means the built-in credentials; a file
            // named with --config that is not there is a mistake.
            if let Some(named) = endpoint.config_flag()
                && matches!(std::fs::metadata(named), Err(e) if e.kind() == io::ErrorKind::NotFound)
            {
                return Err(Error::Config(vec![format!(
                    "{}: no such config file (named by --config)",
                    named.display()
                )]));
            }
            output::stdout(&check(path)?)
        }
        Command::Path => output::stdout(&format!("{}\n", path.display())),
    }
}

/// The verdict on `path`: the line to print on success, or every problem.
fn check(path: &Path) -> Result<String, Error> {
    let missing = matches!(std::fs::metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound);
    let config = Config::load(path).map_err(|e| Error::Config(e.lines().collect()))?;
    let names: Vec<&str> = config.credentials.keys().map(String::as_str).collect();
    Ok(if missing {
        format!(
            "{}: no config file; using the built-in credentials {}\n",
            path.display(),
            names.join(", ")
        )
    } else {
        let builtin = config.credentials.values().filter(|c| c.builtin).count();
        let n = names.len() - builtin;
        let noun = if n == 1 { "credential" } else { "credentials" };
        let extra = if builtin > 0 {
            format!(" + {builtin} built-in")
        } else {
            String::new()
        };
        format!("{}: ok ({n} {noun}{extra})\n", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_means_the_builtins() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        assert_eq!(
            check(&path).unwrap(),
            format!(
                "{}: no config file; using the built-in credentials azure, google\n",
                path.display()
            )
        );
    }

    #[test]
    fn a_valid_file_is_ok_with_its_count() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        std::fs::write(
            &path,
            "[credentials.vault]\nkind = \"command\"\ncommand = [\"vault\", \"print\", \"token\"]\n",
        )
        .unwrap();
        let line = check(&path).unwrap();
        // The file names one; google and azure are built in (before, this
        // said "3 credentials").
        assert_eq!(
            line,
            format!("{}: ok (1 credential + 2 built-in)\n", path.display())
        );
        std::fs::write(
            &path,
            "[credentials.google]\nkind = \"google\"\n[credentials.v]\nkind = \"command\"\ncommand = [\"v\"]\n",
        )
        .unwrap();
        assert_eq!(
            check(&path).unwrap(),
            format!("{}: ok (2 credentials + 1 built-in)\n", path.display())
        );
    }

    #[test]
    fn every_problem_is_a_line_and_exit_2() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.toml");
        std::fs::write(
            &path,
            "[daemon]\nbogus = 1\n[credentials.x]\nkind = \"nope\"\n",
        )
        .unwrap();
        let err = check(&path).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        let lines = err.messages();
        assert!(lines.len() >= 2, "{lines:?}");
        for line in &lines {
            assert!(line.starts_with(&path.display().to_string()), "{line}");
        }
    }
}
