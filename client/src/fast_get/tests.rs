//! The fast parser against clap: for every command line either both give
//! the same `get`, or the fast path falls back to clap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::cli::{Cli, Command};

/// What clap makes of `args` as a `get`: `None` when it refuses them or
/// prints help or the version, or when they are another command.
fn clap_get(args: &[OsString]) -> Option<Invocation> {
    let cli = Cli::try_parse_from(args).ok()?;
    match cli.command {
        Command::Get(args) => Some(Invocation {
            config: cli.config,
            args,
        }),
        _ => None,
    }
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("credcache")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

/// Asserts that the fast parser and clap agree on `args`; returns whether
/// the fast path takes them.
fn agree(args: &[OsString]) -> bool {
    let fast = parse(args.iter().cloned());
    let clap = clap_get(args);
    match (&fast, &clap) {
        (Some(fast), Some(clap)) => assert_eq!(fast, clap, "{args:?}"),
        (None, None) => {}
        (Some(fast), None) => panic!("{args:?}: the fast path takes {fast:?}, clap refuses it"),
        (None, Some(clap)) => panic!("{args:?}: clap takes {clap:?}, the fast path falls back"),
    }
    fast.is_some()
}

/// Every optional piece of a `get`, each in all its spellings.
fn pieces() -> Vec<Vec<Vec<&'static str>>> {
    let mut format = Vec::new();
    for value in ["raw", "json", "exec-credential", "env", "header"] {
        format.push(vec!["--format", value]);
    }
    format.push(vec!["--format=exec-credential"]);
    vec![
        format,
        vec![vec!["--json"]],
        vec![vec!["--min-valid", "5m"], vec!["--min-valid=90s"]],
        vec![vec!["--refresh"]],
        vec![
            vec!["--config", "/after.toml"],
            vec!["--config=/after=.toml"],
        ],
    ]
}

#[test]
fn fast_and_clap_agree_on_every_combination_of_gets_flags() {
    let pieces = pieces();
    let mut taken = 0;
    let mut total = 0;
    // Each subset of the pieces, each spelling of each, in two orders,
    // with NAME first, last or after `--`, with and without a leading
    // `--config`.
    for mask in 0u32..(1 << pieces.len()) {
        let chosen: Vec<&Vec<Vec<&str>>> = (0..pieces.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &pieces[i])
            .collect();
        // Every way to spell the chosen pieces: one spelling of each.
        let mut spellings: Vec<Vec<&Vec<&str>>> = vec![Vec::new()];
        for piece in &chosen {
            spellings = spellings
                .iter()
                .flat_map(|head| {
                    piece.iter().map(move |spelling| {
                        let mut flags = head.clone();
                        flags.push(spelling);
                        flags
                    })
                })
                .collect();
        }
        for flags in &spellings {
            for reversed in [false, true] {
                let mut ordered = flags.clone();
                if reversed {
                    ordered.reverse();
                }
                let flat: Vec<&str> = ordered.iter().flat_map(|f| f.iter().copied()).collect();
                for before in [false, true] {
                    for place in ["first", "last", "after --"] {
                        let mut args = Vec::new();
                        if before {
                            args.extend(["--config", "/before.toml"]);
                        }
                        args.push("get");
                        match place {
                            "first" => {
                                args.push("gcp");
                                args.extend(&flat);
                            }
                            "last" => {
                                args.extend(&flat);
                                args.push("gcp");
                            }
                            _ => {
                                args.extend(&flat);
                                args.extend(["--", "gcp"]);
                            }
                        }
                        total += 1;
                        taken += usize::from(agree(&argv(&args)));
                    }
                }
            }
        }
    }
    // The ones it falls back on are those clap refuses: `--format` with
    // `--json`, and `--config` twice.
    assert_eq!(total, 3024, "every combination was tried");
    assert!(
        taken * 2 > total,
        "only {taken} of {total} take the fast path"
    );
}

#[test]
fn the_fast_path_takes_the_plain_forms() {
    let cases: &[(&[&str], Invocation)] = &[
        (
            &["get", "gcp"],
            Invocation {
                config: None,
                args: args("gcp", Format::Raw, false, None, false),
            },
        ),
        (
            &["get", "prod-gke", "--format", "exec-credential"],
            Invocation {
                config: None,
                args: args("prod-gke", Format::ExecCredential, false, None, false),
            },
        ),
        (
            &[
                "--config",
                "/c.toml",
                "get",
                "--json",
                "--min-valid=1h",
                "--",
                "-odd",
            ],
            Invocation {
                config: Some(PathBuf::from("/c.toml")),
                args: args("-odd", Format::Raw, true, Some(3600), false),
            },
        ),
        (
            &[
                "get",
                "corp",
                "--refresh",
                "--config=/x.toml",
                "--format=env",
            ],
            Invocation {
                config: Some(PathBuf::from("/x.toml")),
                args: args("corp", Format::Env, false, None, true),
            },
        ),
        // The global flag may come before and after `get`; the last wins.
        (
            &["--config", "/a", "get", "a", "--config", "/b"],
            Invocation {
                config: Some(PathBuf::from("/b")),
                args: args("a", Format::Raw, false, None, false),
            },
        ),
        // `help` is a NAME after `get`: `get` has no subcommands.
        (
            &["get", "help"],
            Invocation {
                config: None,
                args: args("help", Format::Raw, false, None, false),
            },
        ),
    ];
    for (line, expected) in cases {
        let args = argv(line);
        assert!(agree(&args), "{line:?} falls back");
        assert_eq!(parse(args).as_ref(), Some(expected), "{line:?}");
    }
}

fn args(name: &str, format: Format, json: bool, min_valid: Option<u64>, refresh: bool) -> Args {
    Args {
        name: name.to_owned(),
        format,
        json,
        min_valid: min_valid.map(Duration::from_secs),
        refresh,
        scopes: Vec::new(),
    }
}

/// `--scope` repeats, in any place and spelling, among the other flags.
#[test]
fn fast_and_clap_agree_on_scopes() {
    let taken: &[&[&str]] = &[
        &["get", "corp", "--scope", "https://vault.azure.net/.default"],
        &["get", "corp", "--scope=a", "--scope", "b"],
        &["get", "--scope", "a", "corp", "--json", "--scope=b=c"],
        &[
            "--config",
            "/c.toml",
            "get",
            "--scope",
            "a",
            "--refresh",
            "corp",
        ],
        &[
            "get",
            "corp",
            "--scope",
            "a",
            "--scope",
            "a",
            "--min-valid",
            "5m",
        ],
        &["get", "--scope", "a", "--", "corp"],
    ];
    for line in taken {
        let args = argv(line);
        assert!(agree(&args), "{line:?} falls back");
    }
    let Some(Invocation { args, .. }) = parse(argv(&["get", "c", "--scope=a", "--scope", "b"]))
    else {
        panic!("not taken")
    };
    assert_eq!(args.scopes, ["a", "b"]);
    let refused: &[&[&str]] = &[
        &["get", "corp", "--scope"],
        &["get", "corp", "--scope="],
        &["get", "corp", "--scope", "--json"],
        &["get", "corp", "--scope", "-x"],
    ];
    for line in refused {
        let args = argv(line);
        assert!(!agree(&args), "{line:?} is taken");
    }
}

#[test]
fn whatever_clap_refuses_or_answers_itself_falls_back() {
    let lines: &[&[&str]] = &[
        &[],
        &["get"],
        &["get", "--json"],
        &["get", "a", "b"],
        &["get", "--", "a", "b"],
        &["get", "a", "--", "b"],
        &["get", "a", "--help"],
        &["get", "-h"],
        &["--help"],
        &["-V"],
        &["--version"],
        &["help", "get"],
        &["get", "a", "--bogus"],
        &["get", "a", "-x"],
        &["get", "a", "--form", "raw"],
        &["get", "a", "--formats=raw"],
        &["get", "a", "--format"],
        &["get", "a", "--format", "yaml"],
        &["get", "a", "--format", "JSON"],
        &["get", "a", "--format="],
        &["get", "a", "--format", "--json"],
        &["get", "a", "--format", "raw", "--json"],
        &["get", "a", "--json", "--format=json"],
        &["get", "a", "--format", "raw", "--format", "env"],
        &["get", "a", "--json", "--json"],
        &["get", "a", "--refresh", "--refresh"],
        &["get", "a", "--json=true"],
        &["get", "a", "--refresh=false"],
        &["get", "a", "--min-valid", "soon"],
        &["get", "a", "--min-valid"],
        &["get", "a", "--min-valid=1m", "--min-valid=2m"],
        &["get", "a", "--config"],
        &["get", "a", "--config="],
        &["get", "a", "--config", "/a", "--config", "/b"],
        &["--config", "/a", "--config", "/b", "get", "a"],
        &["--bogus", "get", "a"],
        &["gte", "a"],
        &["list"],
        &["exec", "a", "--", "get", "b"],
    ];
    for line in lines {
        assert!(!agree(&argv(line)), "{line:?} takes the fast path");
    }
}

#[cfg(unix)]
#[test]
fn some_forms_clap_takes_fall_back_to_it() {
    use std::os::unix::ffi::OsStringExt;

    // Rare forms the fast parser leaves to clap rather than mirror:
    // `-` as the name, an empty name, a `--config` that is not UTF-8.
    let odd_config = OsString::from_vec(b"/c\xff.toml".to_vec());
    let lines = [
        argv(&["get", "-"]),
        argv(&["get", ""]),
        [argv(&["get", "a", "--config"]), vec![odd_config]].concat(),
    ];
    for args in lines {
        assert!(parse(args.iter().cloned()).is_none(), "{args:?}");
        assert!(clap_get(&args).is_some(), "{args:?}: clap refuses it too");
    }
}

#[test]
fn docker_credential_credcache_is_never_a_get() {
    let args: Vec<OsString> = ["/usr/bin/docker-credential-credcache", "get", "x"]
        .map(OsString::from)
        .into();
    assert_eq!(parse(args), None);
}
