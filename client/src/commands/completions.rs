//! `credcache completions SHELL`: a completion script for bash, zsh, fish or
//! PowerShell, generated from the same clap definition that parses the
//! command line, so it cannot drift.

use clap::CommandFactory;
use clap_complete::Shell as Generator;

use crate::cli::Cli;
use crate::exit::Error;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells docs/cli.md names (clap_complete knows elvish too; not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

impl Shell {
    fn generator(self) -> Generator {
        match self {
            Self::Bash => Generator::Bash,
            Self::Zsh => Generator::Zsh,
            Self::Fish => Generator::Fish,
            Self::Powershell => Generator::PowerShell,
        }
    }
}

pub fn run(args: &Args) -> Result<(), Error> {
    output::stdout(&script(args.shell))
}

fn script(shell: Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(
        shell.generator(),
        &mut Cli::command(),
        "credcache",
        &mut buf,
    );
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell] {
            let text = script(shell);
            assert!(text.contains("credcache"), "{shell:?}");
            assert!(text.contains("refresh"), "{shell:?}");
        }
    }
}
