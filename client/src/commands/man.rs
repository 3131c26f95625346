//! `credcache man [--out-dir DIR]`: manual pages in roff, generated
//! with clap_mangen from the same clap definition that parses the command
//! line, so they cannot drift from `--help`.
//!
//! Without `--out-dir` it prints credcache(1); with it, it writes
//! credcache.1 and one page per subcommand (credcache-get.1,
//! credcache-daemon-start.1, …), which is what `packaging/install.sh` and
//! the .deb install into man1. credcache(1) also carries the sections clap
//! knows nothing of: exit status, environment and files (docs/cli.md).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::Cli;
use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write credcache.1 and a page per subcommand into this directory
    /// instead of printing credcache(1).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let pages = pages().map_err(|e| Error::Other(format!("cannot render the man page: {e}")))?;
    match &args.out_dir {
        None => output::stdout(&pages[0].1),
        // Silent on success, like install(1): scripts call this.
        Some(dir) => write_pages(dir, &pages)
            .map_err(|e| Error::Other(format!("cannot write man pages to {}: {e}", dir.display()))),
    }
}

fn write_pages(dir: &Path, pages: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in pages {
        crate::replace_file::replace(&dir.join(name), text.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Every page as (file name, roff), credcache.1 first.
pub fn pages() -> std::io::Result<Vec<(String, String)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building gives subcommands their display names (`credcache-get`).
    cmd.build();
    let mut pages = vec![("credcache.1".to_owned(), main_page(cmd.clone())?)];
    let mut stack: Vec<clap::Command> = visible_subcommands(&cmd);
    while let Some(sub) = stack.pop() {
        stack.extend(visible_subcommands(&sub));
        let man = Man::new(sub);
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((
            man.get_filename(),
            String::from_utf8_lossy(&text).into_owned(),
        ));
    }
    pages[1..].sort();
    Ok(pages)
}

fn visible_subcommands(cmd: &clap::Command) -> Vec<clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect()
}

/// credcache(1): clap's sections, then ours, then the version.
fn main_page(cmd: clap::Command) -> std::io::Result<String> {
    let man = Man::new(cmd).manual("credcache manual");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    out.write_all(EXTRA_SECTIONS.as_bytes())?;
    man.render_version_section(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Fixed roff text: no line starts with `.` or `'` except our requests.
const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
0
ok
.TP
1
other error
.TP
2
usage or config error
.TP
3
daemon unreachable (auto\-start off with CREDCACHE_NO_AUTOSTART=1, or it failed)
.TP
4
no such credential
.TP
5
upstream failure and no valid cached token
.PP
\fBcredcache exec\fR exits with its command's code, or 128 plus the signal that killed it.
.SH ENVIRONMENT
.TP
\fBCREDCACHE_CONFIG\fR
the config file (default: ~/.config/credcache/config.toml; \fB\-\-config\fR beats it)
.TP
\fBCREDCACHE_DATA_DIR\fR
the cache and the detached daemon's log (default: ~/.local/share/credcache)
.TP
\fBCREDCACHE_SOCKET\fR
the daemon's socket (default: $XDG_RUNTIME_DIR/credcache/credcache.sock, else /tmp/credcache\-<uid>/credcache.sock)
.TP
\fBCREDCACHE_NO_AUTOSTART\fR
set to 1 to never start the daemon from the client
.TP
\fBCREDCACHE_LOG\fR
the daemon's log filter (tracing EnvFilter syntax; default info)
.TP
\fBKUBERNETES_EXEC_INFO\fR
set by kubectl; selects the ExecCredential apiVersion of \fBget \-\-format exec\-credential\fR
.SH FILES
.TP
~/.config/credcache/config.toml
credentials and daemon settings (TOML)
.TP
~/.local/share/credcache/cache
the daemon's token cache
.TP
~/.local/share/credcache/credcached.log
the log of a daemon started in the background
.TP
~/.config/systemd/user/credcached.{service,socket}
written by \fBcredcache daemon install\-service\fR
.SH "SEE ALSO"
\fBkubectl\fR(1), \fBsystemd.socket\fR(5)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_page_has_clap_sections_and_ours() {
        let pages = pages().unwrap();
        let (name, main) = &pages[0];
        assert_eq!(name, "credcache.1");
        assert!(main.contains("\n.TH credcache 1 "), "{main}");
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH SUBCOMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH VERSION",
        ] {
            assert!(main.contains(section), "{section} missing");
        }
        assert!(main.contains("credcache\\-kubeconfig(1)"), "{main}");
    }

    #[test]
    fn every_subcommand_has_a_page_and_help_none() {
        let names: Vec<String> = pages().unwrap().into_iter().map(|(n, _)| n).collect();
        for want in [
            "credcache-get.1",
            "credcache-exec.1",
            "credcache-kubeconfig.1",
            "credcache-daemon.1",
            "credcache-daemon-install-service.1",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }
}
