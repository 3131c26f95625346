//! Bad input on the socket, a second daemon, unsafe directories, modes.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use credcache_shared::codec;
use credcache_shared::protocol::{ErrorKind, Request, Response};
use credcache_shared::{PROTOCOL_VERSION, VERSION};

use crate::harness::Sandbox;

fn hello(version: u32) -> Request {
    Request::Hello {
        protocol_version: version,
        client_version: VERSION.into(),
    }
}

fn started(sb: &Sandbox) {
    sb.run(["daemon", "start"]).ok();
}

/// Reads until the daemon closes the connection; what it said before.
fn read_to_close(stream: &mut UnixStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf);
    buf
}

#[test]
fn garbage_oversized_and_truncated_frames_close_only_that_connection() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    started(&sb);

    // Garbage: a frame that is not a message. The daemon says so and closes.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    s.write_all(&[8, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        .unwrap();
    let reply: Option<Response> = codec::read_frame(&mut &read_to_close(&mut s)[..]).unwrap();
    assert!(matches!(reply, Some(Response::Error(e)) if e.kind == ErrorKind::BadRequest));

    // Oversized: a 4 GiB length is refused before anything is allocated.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let reply: Option<Response> = codec::read_frame(&mut &read_to_close(&mut s)[..]).unwrap();
    assert!(matches!(reply, Some(Response::Error(e)) if e.message.contains("limit")));

    // A small frame declaring a 2^40-byte string inside.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    let mut body = vec![0u8, 0, 0xFD];
    body.extend_from_slice(&(1u64 << 40).to_le_bytes());
    s.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let _ = read_to_close(&mut s);

    // Truncated: half a frame, then the client goes away.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    s.write_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(s);

    // A request before Hello.
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    codec::write_frame(&mut s, &Request::List { after: None }).unwrap();
    let reply: Option<Response> = codec::read_frame(&mut &read_to_close(&mut s)[..]).unwrap();
    assert!(matches!(reply, Some(Response::Error(e)) if e.message.contains("Hello")));

    // The daemon is alive and well.
    assert_eq!(sb.get("vault"), "tok-1-v");
    assert!(sb.daemon_pid_alive().is_some());
}

#[test]
fn a_protocol_mismatch_answers_with_both_versions() {
    let sb = Sandbox::new();
    started(&sb);
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    codec::write_frame(&mut s, &hello(PROTOCOL_VERSION + 100)).unwrap();
    let reply: Response = codec::read_frame(&mut s).unwrap().unwrap();
    match reply {
        Response::VersionMismatch {
            daemon_protocol_version,
            pid,
            ..
        } => {
            assert_eq!(daemon_protocol_version, PROTOCOL_VERSION);
            assert_eq!(pid as i32, sb.daemon_pid().unwrap());
        }
        other => panic!("{other:?}"),
    }
    let mut s = UnixStream::connect(&sb.socket).unwrap();
    codec::write_frame(&mut s, &hello(PROTOCOL_VERSION)).unwrap();
    let reply: Response = codec::read_frame(&mut s).unwrap().unwrap();
    assert!(matches!(reply, Response::Hello { .. }));
}

#[test]
fn a_second_daemon_is_refused_naming_the_first() {
    let sb = Sandbox::new();
    started(&sb);
    let pid = sb.daemon_pid().unwrap();
    let out: crate::harness::Out = sb.command("credcached").output().unwrap().into();
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stderr.trim(),
        format!("credcached: already running (pid {pid})")
    );
    assert!(sb.socket.exists(), "the first daemon's socket is untouched");
    assert!(sb.daemon_pid_alive().is_some());
}

/// Two sockets over one data directory: the second daemon waits briefly
/// for the cache (a daemon restarting lets go of it at once), then refuses
/// in one line that names it, and the first keeps serving.
#[test]
fn a_second_daemon_on_another_socket_over_the_same_cache_is_refused() {
    let sb = Sandbox::new();
    started(&sb);
    let other = sb.dir.path().join("run2/credcache.sock");
    let out: crate::harness::Out = sb
        .command("credcached")
        .env("CREDCACHE_SOCKET", &other)
        .output()
        .unwrap()
        .into();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cache database {} is in use by another process",
            sb.data.join("cache").display()
        )),
        "{out:?}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(!other.exists(), "no socket for a daemon that did not start");
    assert!(sb.daemon_pid_alive().is_some());
    sb.run(["daemon", "status"]).ok();
}

#[test]
fn files_are_private() {
    let sb = Sandbox::new();
    let (script, _) = sb.counting_script("v");
    sb.write_config(&Sandbox::command_credential("vault", &script));
    sb.get("vault");
    let mode =
        |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sb.socket), 0o600, "socket");
    assert_eq!(mode(sb.socket.parent().unwrap()), 0o700, "socket dir");
    assert_eq!(mode(&sb.data), 0o700, "data dir");
    assert_eq!(mode(&sb.data.join("credcached.log")), 0o600, "log");
    let cache = sb.data.join("cache");
    assert_eq!(mode(&cache), 0o700, "cache dir");
    let mut files = 0;
    for entry in walk(&cache) {
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), want, "{}", entry.display());
        files += 1;
    }
    assert!(files > 0);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_group_writable_socket_dir_is_refused() {
    let sb = Sandbox::new();
    let dir = sb.socket.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out: crate::harness::Out = sb.command("credcached").output().unwrap().into();
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("writable by group or others"),
        "{out:?}"
    );
    let client = sb.run(["get", "google"]);
    assert_eq!(client.code, 3, "{client:?}");
    assert!(
        client.stderr.contains("writable by group or others"),
        "{client:?}"
    );
    assert!(!sb.socket.exists());
}
