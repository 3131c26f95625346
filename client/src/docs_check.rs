//! Keeps `docs/cli.md` complete: every command and subcommand clap knows
//! has a `credcache ...` heading there, and every flag, positional
//! argument and possible value it takes is named, as code (`--json`),
//! under that heading.
//! A new flag without docs fails here, not in a user's hands.

use clap::CommandFactory;

use crate::cli::Cli;

fn cli_md() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The text under the heading that names exactly `` `title` ``, up to the
/// next heading of the same or a higher level.
fn section<'d>(doc: &'d str, title: &str) -> Option<&'d str> {
    let wanted = format!("`{title}`");
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let level = line.chars().take_while(|&c| c == '#').count();
        let is_heading = level > 0 && line[level..].starts_with(' ');
        match start {
            None if is_heading && line[level..].trim() == wanted => {
                start = Some((offset + line.len(), level));
            }
            Some((from, open)) if is_heading && level <= open => return Some(&doc[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|(from, _)| &doc[from..])
}

/// What the docs must name for `cmd`, whose full name is `path`, and
/// (recursively) for its subcommands; problems go into `missing`.
fn check(doc: &str, cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
    if cmd.is_hide_set() {
        return;
    }
    let Some(text) = section(doc, path) else {
        missing.push(format!("a heading `{path}`"));
        return;
    };
    for arg in cmd.get_arguments() {
        // Global ones are documented once, under "Global options".
        if arg.is_hide_set() || arg.is_global_set() {
            continue;
        }
        let name = match (arg.get_long(), arg.get_value_names()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(names)) => names[0].to_string(),
            (None, None) => arg.get_id().as_str().to_uppercase(),
        };
        // As code, alone or with its value: `--json`, `--format FORMAT`.
        if !text.contains(&format!("`{name}`")) && !text.contains(&format!("`{name} ")) {
            missing.push(format!("{path}: {name}"));
        }
        // A flag's `true`/`false` are no values a user types.
        let values = if arg.get_action().takes_values() {
            arg.get_possible_values()
        } else {
            Vec::new()
        };
        for value in values {
            if !value.is_hide_set() && !text.contains(&format!("`{}`", value.get_name())) {
                missing.push(format!("{path}: {name} value `{}`", value.get_name()));
            }
        }
    }
    for sub in cmd.get_subcommands() {
        check(doc, sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

#[test]
fn every_command_flag_and_value_is_in_cli_md() {
    let doc = cli_md();
    let cli = Cli::command();
    let mut missing = Vec::new();
    let global = section(&doc, "Global options").map(str::to_owned);
    let global = global.unwrap_or_else(|| {
        // The heading is plain text, not code.
        let start = doc
            .find("## Global options")
            .expect("a Global options section");
        doc[start..].to_owned()
    });
    for arg in cli.get_arguments().filter(|a| a.is_global_set()) {
        let long = format!("--{}", arg.get_long().expect("global options are long"));
        if !global.contains(&long) {
            missing.push(format!("Global options: {long}"));
        }
    }
    for flag in ["--help", "--version"] {
        if !global.contains(flag) {
            missing.push(format!("Global options: {flag}"));
        }
    }
    for sub in cli.get_subcommands() {
        check(
            &doc,
            sub,
            &format!("credcache {}", sub.get_name()),
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "docs/cli.md lacks (add a `## `credcache ...`` heading, or name the flag under it):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_exit_code_is_in_cli_md() {
    let doc = cli_md();
    let text = doc
        .find("## Exit codes")
        .map(|i| &doc[i..])
        .expect("an Exit codes section");
    for code in [
        crate::exit::OK,
        crate::exit::OTHER,
        crate::exit::USAGE,
        crate::exit::UNREACHABLE,
        crate::exit::NO_SUCH_CREDENTIAL,
        crate::exit::UPSTREAM,
    ] {
        assert!(text.contains(&format!("| {code} |")), "exit code {code}");
    }
}

#[test]
fn the_check_sees_a_missing_flag() {
    let doc = "## Global options\n--config --help --version\n## `credcache list`\ncredcache list [--json]\n";
    let cli = Cli::command();
    let list = cli.find_subcommand("list").unwrap();
    let mut missing = Vec::new();
    check(doc, list, "credcache list", &mut missing);
    assert_eq!(missing, ["credcache list: --json"]);
    let mut missing = Vec::new();
    check(
        doc,
        cli.find_subcommand("watch").unwrap(),
        "credcache watch",
        &mut missing,
    );
    assert_eq!(missing, ["a heading `credcache watch`"]);
}
