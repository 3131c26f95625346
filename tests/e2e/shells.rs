//! Where shells meet credcache: `exec` (exit codes, the token in the
//! environment and never in argv, signals forwarded to the child),
//! completion scripts that the shells accept and that complete, and the
//! man page as `man` renders it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rustix::process::Signal;

use crate::harness::{Sandbox, signal};

fn vault_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}env_var = \"VAULT_TOKEN\"\n",
        Sandbox::command_credential("vault", &script)
    ));
    sb
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// In CI a missing tool is a failure; elsewhere the check is skipped with
/// a line saying so.
fn required(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is missing; .ci/run installs it"
    );
    eprintln!("skipped: {program} is not installed");
    false
}

#[test]
fn exec_passes_the_exit_code_and_128_plus_a_killing_signal() {
    let sb = vault_sandbox();
    for (script, code) in [("exit 0", 0), ("exit 42", 42), ("kill -TERM $$", 143)] {
        let out = sb.run(["exec", "vault", "--", "sh", "-c", script]);
        assert_eq!(out.code, code, "{script}: {out:?}");
    }
    let out = sb.run(["exec", "vault", "--", "/no/such/program"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .starts_with("credcache: cannot run /no/such/program"),
        "{out:?}"
    );
}

#[test]
fn exec_puts_the_token_in_the_environment_and_never_in_argv() {
    let sb = vault_sandbox();
    // The child prints the variable, then its own argv and its parent's
    // (credcache's) as the kernel has them, for anyone running `ps`.
    let script = r#"printf '%s\n' "$VAULT_TOKEN"; tr '\000' ' ' < /proc/$$/cmdline; echo; tr '\000' ' ' < /proc/$PPID/cmdline"#;
    let out = sb.run(["exec", "vault", "--", "sh", "-c", script]);
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("tok-1-v"));
    let argv: Vec<&str> = lines.collect();
    assert_eq!(argv.len(), 2, "{text}");
    assert!(argv[1].contains("credcache exec vault"), "{argv:?}");
    for line in argv {
        assert!(!line.contains("tok-1-v"), "token in argv: {line}");
    }
    assert!(!out.stderr.contains("tok-1-v"));
}

/// `credcache exec` started by a supervisor (systemd, `timeout`, a CI
/// runner) must pass the supervisor's signal to the program it runs: the
/// program's trap decides the exit code, and credcache reports it.
#[test]
fn exec_forwards_term_int_and_hup_to_the_child() {
    let sb = vault_sandbox();
    for (sig, name, code) in [
        (Signal::TERM, "TERM", 7),
        (Signal::INT, "INT", 8),
        (Signal::HUP, "HUP", 9),
    ] {
        // `wait` returns at once when a trapped signal arrives (POSIX), so
        // the child reacts without polling; it says "ready" once its trap
        // is set, and the test waits for that line instead of sleeping.
        // Were the signal lost, the child would exit 0 after 30 s and the
        // test fail rather than hang.
        let script = format!(
            "trap 'kill $p 2>/dev/null; exit {code}' {name}; sleep 30 & p=$!; echo ready; wait $p"
        );
        let mut child = sb
            .command("credcache")
            .args(["exec", "vault", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "SIG{name}");
        signal(child.id() as i32, sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{name} was not forwarded");
    }
}

#[test]
fn completion_scripts_are_accepted_by_each_shell_and_complete() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = sb.run(["completions", shell]);
        let script = out.ok();
        for word in ["kubeconfig", "exec", "install-service"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
    }
    // bash is on every machine this runs on: check the script parses and
    // actually completes a subcommand.
    let script = sb.dir.path().join("credcache.bash");
    std::fs::write(&script, sb.run(["completions", "bash"]).ok()).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"source '{}'; COMP_WORDS=(credcache kubec); COMP_CWORD=1; _credcache credcache kubec credcache; echo "${{COMPREPLY[@]}}""#,
            script.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "kubeconfig",
        "{out:?}"
    );
    for shell in ["zsh", "fish"] {
        if !have(shell) {
            eprintln!("not checked with {shell}: not installed");
            continue;
        }
        let path = sb.dir.path().join(format!("credcache.{shell}"));
        std::fs::write(&path, sb.run(["completions", shell]).ok()).unwrap();
        let status = Command::new(shell).arg("-n").arg(&path).status().unwrap();
        assert!(status.success(), "{shell} rejects its completion script");
    }
}

#[test]
fn the_man_page_renders_with_every_section() {
    let sb = Sandbox::new();
    let roff = sb.run(["man"]);
    let page = sb.dir.path().join("credcache.1");
    std::fs::write(&page, roff.ok()).unwrap();
    let dir = sb.dir.path().join("man1");
    sb.run(["man", "--out-dir", dir.to_str().unwrap()]).ok();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    for want in ["credcache.1", "credcache-get.1", "credcache-kubeconfig.1"] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
    }
    assert_eq!(
        std::fs::read(dir.join("credcache.1")).unwrap(),
        std::fs::read(&page).unwrap()
    );
    if !required("man") {
        return;
    }
    for name in &pages {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.join(name))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "{name}: {stderr}");
        if name == "credcache.1" {
            let text = String::from_utf8_lossy(&out.stdout);
            for section in [
                "NAME",
                "SYNOPSIS",
                "SUBCOMMANDS",
                "EXIT STATUS",
                "ENVIRONMENT",
                "FILES",
            ] {
                assert!(text.contains(section), "{section} missing:\n{text}");
            }
            assert!(text.contains("credcache-kubeconfig(1)"), "{text}");
        }
    }
}
