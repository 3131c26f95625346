//! Issue 13, the client's side: what the client trusts. A socket in a
//! directory another user planted, or served by another uid, is refused
//! before anything is sent or read; a token is never exported in a
//! variable that runs code; a daemon that never answers, or that is at its
//! connection cap, is "unreachable" (exit 3); an auto-started daemon keeps
//! none of the caller's file descriptors; `kubeconfig --merge` follows no
//! planted symlink.
//!
//! The fake daemons here are threads of the test speaking the real
//! protocol (`credcache_shared::codec`) on a Unix socket; the client under
//! test is the real binary. Tests that need two users run the client as
//! nobody (65534) with `setpriv`, against a fake owned by root (the tests
//! run as root, as `security.rs`'s cross-uid test does).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration as ChronoDuration, Utc};
use credcache_shared::Secret;
use credcache_shared::codec::{read_frame, write_frame};
use credcache_shared::protocol::{
    ErrorKind, PROTOCOL_VERSION, Request, Response, TokenReply, WireError,
};

use crate::harness::{Out, Sandbox, bin_dir, eventually};

const NOBODY: u32 = 65534;

/// What a fake daemon does once a client connected.
#[derive(Clone)]
enum Script {
    /// Answers `Hello`, then every `Get` with this token in this variable.
    Token { env_var: String, token: String },
    /// Answers `Hello`, then never answers the next request.
    Hang,
    /// Answers at once as a daemon at its connection cap does (before
    /// reading anything), then hangs up.
    Busy,
}

/// A fake daemon on a socket: counts connections and requests it saw.
struct Fake {
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Fake {
    /// Listens on `socket` (its directory must exist) and serves `script`
    /// on every connection, each in its own thread. Its `Hello` names
    /// `config` as the file it reads, as the client's own daemon would.
    fn start(socket: &Path, config: &Path, script: Script) -> Fake {
        let config = config.display().to_string();
        let listener = UnixListener::bind(socket).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, script, config) = (r.clone(), script.clone(), config.clone());
                std::thread::spawn(move || serve(stream, &script, &config, &r));
            }
        });
        Fake {
            connections,
            requests,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: UnixStream, script: &Script, config: &str, requests: &AtomicUsize) {
    if let Script::Busy = script {
        let busy = Response::Error(WireError::new(
            ErrorKind::Busy,
            "the daemon has too many open connections; try again",
        ));
        let _ = write_frame(&mut stream, &busy);
        return;
    }
    let mut answered_hello = false;
    while let Ok(Some(request)) = read_frame::<_, Request>(&mut stream) {
        requests.fetch_add(1, Ordering::SeqCst);
        let response = match (&request, script) {
            (Request::Hello { .. }, _) if !answered_hello => {
                answered_hello = true;
                Response::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    daemon_version: "6.6.6".into(),
                    pid: 4242,
                    config_path: config.to_owned(),
                }
            }
            // Keep the connection open, answer nothing: the next read
            // ends when the client hangs up.
            (_, Script::Hang) => continue,
            (Request::Get { name, .. }, Script::Token { env_var, token }) => {
                Response::Token(TokenReply {
                    name: name.as_str().into(),
                    kind: "command".into(),
                    token: Secret::new(token.clone()),
                    expires_at: Utc::now() + ChronoDuration::hours(1),
                    fetched_at: Utc::now(),
                    env_var: env_var.as_str().into(),
                    warning: None,
                })
            }
            _ => Response::Done {
                affected: Vec::new(),
            },
        };
        if write_frame(&mut stream, &response).is_err() {
            return;
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The red team's payload: a file that `bash` sources when `BASH_ENV`
/// names it, which leaves a marker. Returns (script, marker).
fn payload(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let drop_dir = sb.dir.path().join("pwn");
    std::fs::create_dir_all(&drop_dir).unwrap();
    chmod(&drop_dir, 0o777);
    let marker = drop_dir.join("ran");
    let script = sb.dir.path().join("attacker.sh");
    std::fs::write(&script, format!("touch '{}'\n", marker.display())).unwrap();
    chmod(&script, 0o644);
    (script, marker)
}

/// Runs `credcache ARGS` as nobody, with the sandbox's environment.
fn run_as_nobody(sb: &Sandbox, args: &[&str]) -> Out {
    sb.command_for("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin_dir().join("credcache"))
        .args(args)
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .output()
        .unwrap()
        .into()
}

/// Exit 3, nothing on stdout, one stderr line saying `want`.
#[track_caller]
fn refused(out: &Out, want: &[&str]) {
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(out.stderr.starts_with("credcache: "), "{out:#?}");
    for w in want {
        assert!(out.stderr.contains(w), "wanted {w:?}: {out:#?}");
    }
}

#[test]
fn a_daemon_of_another_user_is_refused_for_get_exec_and_env() {
    let sb = Sandbox::new();
    let (script, marker) = payload(&sb);
    // The victim (nobody) owns a proper private socket directory; the
    // socket in it is served by another uid (root, here).
    let dir = sb.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    chmod(sb.dir.path(), 0o755);
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(dir, 0o700);
    let fake = Fake::start(
        &sb.socket,
        &sb.config,
        Script::Token {
            env_var: "BASH_ENV".into(),
            token: script.display().to_string(),
        },
    );
    chmod(&sb.socket, 0o777);

    let socket = sb.socket.display().to_string();
    let want = [socket.as_str(), "uid 0", "uid 65534"];
    for args in [
        &["get", "corp"][..],
        &["get", "corp", "--format", "env"],
        &["get", "corp", "--json"],
        &["exec", "corp", "--", "bash", "-c", "true"],
    ] {
        let out = run_as_nobody(&sb, args);
        refused(&out, &want);
        assert!(!out.stderr.contains("attacker"), "{out:#?}");
        assert!(!marker.exists(), "{args:?} ran the attacker's code");
    }
    // Each client connected, saw the peer and hung up, perhaps before the
    // fake's thread took its connection from the backlog.
    eventually(std::time::Duration::from_secs(10), || {
        match fake.connections() {
            4 => Ok(()),
            n => Err(n),
        }
    });
    assert_eq!(fake.requests(), 0, "nothing was sent to the fake");
}

#[test]
fn a_planted_socket_directory_is_refused_before_connecting() {
    enum Plant {
        OtherOwner,
        WorldWritable,
        Symlink,
    }
    for plant in [Plant::OtherOwner, Plant::WorldWritable, Plant::Symlink] {
        let sb = Sandbox::new();
        let (script, marker) = payload(&sb);
        let dir = sb.socket.parent().unwrap();
        let real = match plant {
            Plant::Symlink => {
                let real = sb.dir.path().join("elsewhere");
                std::fs::create_dir(&real).unwrap();
                chmod(&real, 0o700);
                std::os::unix::fs::symlink(&real, dir).unwrap();
                real
            }
            _ => {
                std::fs::create_dir(dir).unwrap();
                dir.to_path_buf()
            }
        };
        let fake = Fake::start(
            &real.join("credcache.sock"),
            &sb.config,
            Script::Token {
                env_var: "BASH_ENV".into(),
                token: script.display().to_string(),
            },
        );
        let why = match plant {
            Plant::OtherOwner => {
                std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
                chmod(dir, 0o700);
                "is owned by uid 65534"
            }
            Plant::WorldWritable => {
                chmod(dir, 0o777);
                "is writable by group or others"
            }
            Plant::Symlink => "is a symlink",
        };
        let dir_text = dir.display().to_string();
        for args in [
            &["get", "corp"][..],
            &["get", "corp", "--format", "env"],
            &["exec", "corp", "--", "bash", "-c", "true"],
            &["daemon", "stop"],
        ] {
            let out = sb.run(args);
            refused(&out, &[dir_text.as_str(), why]);
            assert!(!marker.exists(), "{args:?} ran the attacker's code");
        }
        assert_eq!(fake.connections(), 0, "{why}: the client connected");
    }
}

#[test]
fn a_dangerous_env_var_is_never_exported_even_from_our_own_daemon() {
    let sb = Sandbox::new();
    let (script, marker) = payload(&sb);
    std::fs::create_dir_all(sb.socket.parent().unwrap()).unwrap();
    chmod(sb.socket.parent().unwrap(), 0o700);
    let _fake = Fake::start(
        &sb.socket,
        &sb.config,
        Script::Token {
            env_var: "BASH_ENV".into(),
            token: script.display().to_string(),
        },
    );
    let out = sb.run(["get", "corp", "--format", "env"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert!(
        out.stderr.contains("\"BASH_ENV\" is refused") && !out.stderr.contains("attacker"),
        "{out:#?}"
    );
    let out = sb.run(["exec", "corp", "--", "bash", "-c", "true"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(!marker.exists(), "exec ran the attacker's code");

    // And such a config never loads.
    let (vault, _) = sb.counting_script("v");
    sb.write_config(&format!(
        "{}env_var = \"LD_PRELOAD\"\n",
        Sandbox::command_credential("vault", &vault)
    ));
    let out = sb.run(["config", "check"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(
        out.stderr
            .contains("credentials.vault.env_var: \"LD_PRELOAD\" is refused"),
        "{out:#?}"
    );
}

#[test]
fn kubeconfig_merge_follows_no_symlink_planted_at_a_temp_name() {
    let sb = Sandbox::new();
    let kube = sb.home.join(".kube");
    std::fs::create_dir_all(&kube).unwrap();
    let config = kube.join("config");
    std::fs::write(&config, "apiVersion: v1\nkind: Config\nusers: []\n").unwrap();
    let bashrc = sb.home.join(".bashrc");
    std::fs::write(&bashrc, "# mine\n").unwrap();
    // The name the merge used to write through: `<target>.credcache-<pid>.tmp`.
    // `sh` plants it with its own pid, then becomes credcache (same pid).
    let out: Out = sb
        .command_for("sh")
        .arg("-c")
        .arg(r#"ln -s "$1" "$2.credcache-$$.tmp" && exec "$3" kubeconfig prod --merge "$2""#)
        .arg("sh")
        .arg(&bashrc)
        .arg(&config)
        .arg(bin_dir().join("credcache"))
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# mine\n");
    let merged = std::fs::read_to_string(&config).unwrap();
    assert!(merged.contains("name: prod"), "{merged}");
    assert!(merged.contains("exec-credential"), "{merged}");
    let planted: Vec<_> = std::fs::read_dir(&kube)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".credcache-"))
        .collect();
    assert_eq!(
        planted.len(),
        1,
        "the planted link stays, nothing else: {planted:?}"
    );
    assert!(std::fs::symlink_metadata(&planted[0]).unwrap().is_symlink());
}

/// A daemon of ours (same uid, private directory) that behaves as `script`.
fn own_fake(sb: &Sandbox, script: Script) -> Fake {
    let dir = sb.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    chmod(dir, 0o700);
    Fake::start(&sb.socket, &sb.config, script)
}

/// Runs the client under `timeout 300`, which only keeps a client with no
/// deadline of its own from hanging the suite.
fn run_bounded(sb: &Sandbox, args: &[&str]) -> Out {
    sb.command_for("timeout")
        .arg("300")
        .arg(bin_dir().join("credcache"))
        .args(args)
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_daemon_that_never_answers_a_get_is_unreachable_after_its_deadline() {
    let sb = Sandbox::new();
    sb.write_config("[daemon]\nhttp_timeout = \"1s\"\n");
    let fake = own_fake(&sb, Script::Hang);
    // `timeout` only keeps a client without a deadline from hanging the
    // suite; the deadline under test is 2 × 1 s + 5 s.
    let out = run_bounded(&sb, &["get", "vault"]);
    refused(
        &out,
        &["the daemon did not answer within 7 s: cannot get a token for vault"],
    );
    assert_eq!(fake.requests(), 2, "Hello, then the Get it never answered");
}

#[test]
fn a_daemon_at_its_connection_cap_is_unreachable_exit_3() {
    let sb = Sandbox::new();
    let _fake = own_fake(&sb, Script::Busy);
    for args in [&["get", "vault"][..], &["list"], &["daemon", "status"]] {
        let out = sb.run(args);
        refused(&out, &["too many open connections"]);
    }
}

#[test]
fn an_auto_started_daemon_keeps_none_of_the_callers_descriptors() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    // A pipe (a CI runner's, make's job server) at fd 7 and a file at fd
    // 8, open without close-on-exec in the client, as a caller leaves them.
    let (reader, writer) = std::io::pipe().unwrap();
    let file = std::fs::File::create(sb.dir.path().join("inherited")).unwrap();
    let (pipe_fd, file_fd) = (writer.as_raw_fd(), file.as_raw_fd());
    let mut cmd = sb.command("credcache");
    cmd.args(["get", "vault"]);
    // SAFETY: dup2 is async-signal-safe; it clears close-on-exec on 7 and 8.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(pipe_fd, 7), (file_fd, 8)] {
                if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out: Out = cmd.output().unwrap().into();
    assert_eq!(out.stdout, "tok-1-v\n", "{out:#?}");
    let link = |p: PathBuf| std::fs::read_link(p).map(|l| l.display().to_string());
    let pipe = link(format!("/proc/self/fd/{pipe_fd}").into()).unwrap();
    let inherited = sb.dir.path().join("inherited").display().to_string();
    let pid = sb.daemon_pid_alive().expect("the client started a daemon");
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| link(e.unwrap().path()).ok())
        .collect();
    assert!(!held.contains(&pipe), "the daemon holds {pipe}: {held:?}");
    assert!(
        !held.contains(&inherited),
        "the daemon holds {inherited}: {held:?}"
    );
    drop((reader, file));
}

#[test]
fn man_finds_the_pages_after_install_sh_into_cargos_bin_dir() {
    let have_man = std::process::Command::new("sh")
        .args(["-c", "command -v man >/dev/null"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_man {
        assert!(
            std::env::var_os("CI").is_none(),
            "man is missing; .ci/run installs man-db"
        );
        eprintln!("skipped: man is not installed");
        return;
    }
    let sb = Sandbox::new();
    // The layout of the default install (`cargo install` into ~/.cargo/bin).
    let cargo = sb.home.join(".cargo");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out: Out = std::process::Command::new("sh")
        .arg(repo.join("packaging/install.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--prefix")
        .arg(&cargo)
        .env_clear()
        .env("HOME", &sb.home)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", cargo.join("bin").display()),
        )
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!out.stdout.contains("MANPATH"), "{out:#?}");
    // A fresh login's view: only PATH says where the pages are.
    let found: Out = std::process::Command::new("man")
        .args(["-w", "credcache"])
        .env_clear()
        .env("HOME", &sb.home)
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", cargo.join("bin").display()),
        )
        .output()
        .unwrap()
        .into();
    assert_eq!(
        found.stdout.trim_end(),
        cargo
            .join("share/man/man1/credcache.1")
            .display()
            .to_string(),
        "{found:#?}"
    );

    // Installed where man does not look, the script says what to add.
    let elsewhere = sb.dir.path().join("opt");
    let out: Out = std::process::Command::new("sh")
        .arg(repo.join("packaging/install.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--prefix")
        .arg(&elsewhere)
        .env_clear()
        .env("HOME", &sb.home)
        .env("PATH", "/usr/bin:/bin")
        .env("MANPATH", "/usr/share/man")
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:#?}");
    let want = format!(
        "  export MANPATH=\"{}:$MANPATH\"",
        elsewhere.join("share/man").display()
    );
    assert!(out.stdout.lines().any(|l| l == want), "{out:#?}");
}

#[test]
fn get_json_is_format_json_and_a_missing_named_config_is_an_error() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    let line = sb.run(["get", "vault", "--json"]);
    let v: serde_json::Value = serde_json::from_str(line.ok()).unwrap();
    assert_eq!(v["token"], "tok-1-v");
    assert_eq!(v["name"], "vault");
    assert_eq!(
        sb.run(["get", "vault", "--json", "--format", "raw"]).code,
        2
    );

    let missing = sb.dir.path().join("missing.toml");
    let out = sb.run(["config", "check", "--config", missing.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.stdout, "", "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "credcache: {}: no such config file (named by --config)\n",
            missing.display()
        )
    );
    // The default file, missing, still means the built-in credentials.
    let mut fresh = Sandbox::new();
    fresh.env("CREDCACHE_CONFIG", "");
    assert!(
        fresh
            .run(["config", "check"])
            .ok()
            .contains("no config file; using the built-in credentials")
    );
}

#[test]
fn daemon_stop_gives_up_on_a_daemon_that_never_answers() {
    let sb = Sandbox::new();
    let fake = own_fake(&sb, Script::Hang);
    // `timeout` only keeps a client without a deadline from hanging the
    // suite; the deadline under test is the 30 s of a request that does
    // no upstream work.
    let out = run_bounded(&sb, &["daemon", "stop"]);
    refused(
        &out,
        &["the daemon did not answer within 30 s: cannot stop the daemon"],
    );
    assert_eq!(
        fake.requests(),
        2,
        "Hello, then the Shutdown it never answered"
    );
}
