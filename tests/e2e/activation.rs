//! systemd socket activation and readiness, the way systemd does them: the
//! test binds the socket itself (as `credcached.socket` would), starts
//! `credcached` with it as fd 3, `LISTEN_FDS=1` and `LISTEN_PID` = the
//! daemon's pid, and listens for `sd_notify` datagrams on its own
//! `NOTIFY_SOCKET`. Clients are then served through that socket, and an
//! idle exit leaves it in place for the next activation.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Foreground, Sandbox, count};

/// `credcached` as systemd starts it: `fd` as fd 3 and the LISTEN_*
/// variables. LISTEN_PID must be the daemon's own pid, which is only known
/// after fork: `sh` sets it to its `$$` and execs the daemon (same pid).
fn activated_daemon(sb: &Sandbox, fd: RawFd, extra: &[(&str, &str)]) -> Command {
    let template = sb.command("credcached");
    let mut cmd = Command::new("sh");
    cmd.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.args(["-c", r#"LISTEN_PID=$$ exec "$0""#])
        .arg(template.get_program())
        .env("LISTEN_FDS", "1")
        .envs(extra.iter().copied())
        .stdin(Stdio::null());
    // SAFETY: between fork and exec only dup2/fcntl run, both
    // async-signal-safe; no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2(3, 3) would keep close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A bound, listening socket at the sandbox's socket path, 0600 in a 0700
/// directory, as `credcached.socket` makes it.
fn systemd_socket(sb: &Sandbox) -> UnixListener {
    let dir = sb.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let listener = UnixListener::bind(&sb.socket).unwrap();
    std::fs::set_permissions(&sb.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    listener
}

/// The next `sd_notify` datagram, as text.
fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("no sd_notify datagram within the time limit");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn serves_on_the_passed_socket_notifies_and_leaves_it_on_idle_exit() {
    let sb = Sandbox::new();
    let (script, calls) = sb.counting_script("v");
    // The script also records what environment `command` credentials see.
    let env_dump = sb.dir.path().join("env.txt");
    let wrapper = sb.dir.path().join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > '{}'\nexec '{}'\n",
            env_dump.display(),
            script.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    sb.write_config(&format!(
        "[daemon]\nidle_timeout = \"1s\"\n\n{}",
        Sandbox::command_credential("vault", &wrapper)
    ));

    let listener = systemd_socket(&sb);
    let notify_path = sb.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let notify_env = notify_path.to_str().unwrap();
    let mut daemon = Foreground::spawn(activated_daemon(
        &sb,
        listener.as_raw_fd(),
        &[("NOTIFY_SOCKET", notify_env)],
    ));
    let ready = notification(&notify);
    assert!(ready.contains("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=listening on "), "{ready:?}");

    // A client that may not start a daemon is served through the socket.
    let get = sb
        .command("credcache")
        .args(["get", "vault"])
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert!(get.status.success(), "{get:?}");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "tok-1-v\n");
    let status: serde_json::Value =
        serde_json::from_str(sb.run(["status", "--json"]).ok()).unwrap();
    assert_eq!(
        status["pid"],
        daemon.child.id(),
        "served by the activated daemon"
    );

    // Programs the daemon runs do not inherit the activation variables.
    let env = std::fs::read_to_string(&env_dump).unwrap();
    for var in ["LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES="] {
        assert!(!env.contains(var), "{var} leaked to a child: {env}");
    }

    // Idle for a second: the daemon says STOPPING=1 and exits cleanly,
    // and the socket file stays: it is systemd's.
    let stopping = notification(&notify);
    assert!(stopping.contains("STOPPING=1"), "{stopping:?}");
    daemon.wait_for_line("idle timeout");
    let exit = daemon.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let meta = std::fs::symlink_metadata(&sb.socket).expect("the socket file was removed");
    assert!(meta.file_type().is_socket());

    // The next connection waits in the socket's queue until the next
    // activation serves it, from the cache: no second fetch.
    let mut waiting = sb
        .command("credcache")
        .args(["get", "vault"])
        .env("CREDCACHE_NO_AUTOSTART", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut again = Foreground::spawn(activated_daemon(&sb, listener.as_raw_fd(), &[]));
    let mut line = String::new();
    BufReader::new(waiting.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "tok-1-v\n");
    assert!(waiting.wait().unwrap().success());
    assert_eq!(
        count(&calls),
        1,
        "the second activation answered from the cache"
    );
    let _ = again.child.kill();
    let _ = again.child.wait();
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_refused() {
    let sb = Sandbox::new();
    let not_a_socket = std::fs::File::open("/dev/null").unwrap();
    let out = activated_daemon(&sb, not_a_socket.as_raw_fd(), &[])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert!(!sb.socket.exists(), "it must not bind a socket of its own");
}
