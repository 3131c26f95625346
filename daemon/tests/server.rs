//! The server in-process on a temp socket, with limits small enough to
//! exercise: the connection cap, the idle timeout and a graceful stop.
//!
//! Unix only: its clients are raw `UnixStream`s (the same server runs on
//! Windows behind a named pipe, covered by the end-to-end tests there).
#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use credcache_daemon::clock::SystemClock;
use credcache_daemon::engine::{Engine, Locations};
use credcache_daemon::server::{self, Limits};
use credcache_daemon::store::Store;
use credcache_shared::codec;
use credcache_shared::config::Config;
use credcache_shared::protocol::ErrorKind;
use credcache_shared::protocol::{Request, Response};
use credcache_shared::{PROTOCOL_VERSION, VERSION};

struct Running {
    _tmp: tempfile::TempDir,
    socket: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(limits: Limits) -> Self {
        Self::start_with(Config::builtin(), limits)
    }

    fn start_with(config: Config, limits: Limits) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("s.sock");
        let (store, _) = Store::open(
            &tmp.path().join("cache"),
            std::sync::Arc::new(crate_sealer()),
        )
        .unwrap();
        let locations = Locations {
            config_file: tmp.path().join("none.toml"),
            socket: socket.clone(),
            cache_dir: tmp.path().join("cache"),
            parsed_config: credcache_daemon::parsed_config::ParsedConfig::in_dir(tmp.path()),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let engine = Engine::new(
                    config,
                    locations,
                    store,
                    Arc::new(SystemClock),
                    credcache_daemon::providers::build,
                )
                .unwrap();
                let listener = server::bind(&path).unwrap();
                ready_tx.send(()).unwrap();
                server::serve(listener, engine, limits, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        ready_rx.recv().unwrap();
        Self {
            _tmp: tmp,
            socket,
            stop: Some(stop_tx),
            done: Some(done),
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).unwrap();
        // A safety net so a regression fails the test instead of hanging it.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    fn hello(&self) -> UnixStream {
        let mut s = self.connect();
        codec::write_frame(
            &mut s,
            &Request::Hello {
                protocol_version: PROTOCOL_VERSION,
                client_version: VERSION.into(),
            },
        )
        .unwrap();
        let r: Response = codec::read_frame(&mut s).unwrap().unwrap();
        assert!(matches!(r, Response::Hello { .. }), "{r:?}");
        s
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            done.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn an_idle_connection_is_closed() {
    let server = Running::start(Limits {
        idle: Duration::from_millis(200),
        ..Limits::default()
    });
    let mut s = server.hello();
    let mut buf = [0u8; 1];
    // The daemon closes it: read returns end of stream (not the timeout).
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    // A connection that never even says Hello is closed the same way.
    let mut s = server.connect();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    // And the server still serves.
    let _ = server.hello();
}

#[test]
fn the_connection_cap_turns_away_the_extra_one_and_recovers() {
    let server = Running::start(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let a = server.hello();
    let _b = server.hello();
    let mut c = server.connect();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    let r: Response = codec::read_frame(&mut &reply[..]).unwrap().unwrap();
    match r {
        Response::Error(e) => {
            assert!(e.message.contains("too many open connections"), "{e:?}");
            // The client reports it as "unreachable" (exit 3), not exit 1.
            assert_eq!(e.kind, ErrorKind::Busy);
        }
        other => panic!("{other:?}"),
    }
    drop(a);
    // The slot frees once the server notices `a` is gone: retry until then.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = server.connect();
        let hello = Request::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: VERSION.into(),
        };
        // Turned away, the connection is closed under us: the write or the
        // read may fail (EPIPE, ECONNRESET) as well as answer "too many".
        let answer = codec::write_frame(&mut s, &hello)
            .ok()
            .and_then(|()| codec::read_frame::<_, Response>(&mut s).ok().flatten());
        match answer {
            Some(Response::Hello { .. }) => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "cap never freed: {other:?}"
            ),
        }
    }
}

#[test]
fn stop_closes_idle_connections_and_returns() {
    let mut server = Running::start(Limits::default());
    let mut s = server.hello();
    server.stop();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    let _ = s.write_all(&[0]);
}

fn crate_sealer() -> credcache_daemon::seal::Sealer {
    credcache_daemon::seal::Sealer::new(&[1u8; 32], "test")
}

fn command_config() -> Config {
    let text = "[credentials.w]\nkind = \"command\"\ncommand = [\"/bin/echo\", \"tok-w\"]\nlifetime = \"1h\"\n";
    Config::parse(text, std::path::Path::new("test.toml")).unwrap()
}

fn ask(s: &mut UnixStream, request: &Request) -> Response {
    codec::write_frame(s, request).unwrap();
    codec::read_frame(s).unwrap().unwrap()
}

/// Regression: `max_connections` watchers held every slot, and a `get`
/// was turned away with "too many open connections".
#[test]
fn watchers_never_take_the_slots_kept_for_short_requests() {
    let server = Running::start_with(
        command_config(),
        Limits {
            max_connections: 3,
            reserved: 1,
            ..Limits::default()
        },
    );
    let watch = Request::Watch { name: "w".into() };
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let mut s = server.hello();
        match ask(&mut s, &watch) {
            Response::Token(t) => assert_eq!(t.token.expose(), "tok-w"),
            other => panic!("{other:?}"),
        }
        watchers.push(s);
    }
    let mut third = server.hello();
    match ask(&mut third, &watch) {
        Response::Error(e) => {
            assert!(e.message.contains("too many watch connections"), "{e:?}");
            assert_eq!(e.kind, ErrorKind::Busy);
        }
        other => panic!("a third watcher was let in: {other:?}"),
    }
    let mut buf = [0u8; 1];
    assert_eq!(third.read(&mut buf).unwrap(), 0, "refused watch is closed");
    drop(third);
    // The slot the refused watch used frees once the server notices; the
    // reserved one is free throughout, so a `get` is answered now.
    let mut s = server.hello();
    let get = Request::Get {
        name: "w".into(),
        min_valid_secs: None,
        refresh: false,
        scopes: Vec::new(),
    };
    match ask(&mut s, &get) {
        Response::Token(t) => assert_eq!(t.token.expose(), "tok-w"),
        other => panic!("{other:?}"),
    }
}

/// Regression: a client that sent requests and never read the replies
/// held its connection (and slot) for as long as it liked.
#[test]
fn a_client_that_never_reads_its_replies_is_dropped() {
    let server = Running::start(Limits {
        write_timeout: Duration::from_millis(100),
        ..Limits::default()
    });
    let mut s = server.hello();
    // A safety net: before the fix this write blocks for good.
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut frame = Vec::new();
    codec::write_frame(&mut frame, &Request::Status).unwrap();
    let failed = loop {
        if let Err(e) = s.write_all(&frame) {
            break e;
        }
    };
    assert!(
        matches!(
            failed.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "the daemon never closed the connection: {failed}"
    );
}

/// The idle timer is one per connection, re-armed when it fires before
/// the connection has been idle for `idle`: a connection that keeps
/// asking outlives several `idle` spans and is answered every time, and
/// is closed once it stops asking.
#[test]
fn a_busy_connection_outlives_its_idle_timeout() {
    let idle = Duration::from_millis(100);
    let server = Running::start(Limits {
        idle,
        ..Limits::default()
    });
    let mut s = server.hello();
    let hello = Request::Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: VERSION.into(),
    };
    let started = std::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < idle * 5 {
        codec::write_frame(&mut s, &hello).unwrap();
        let r: Response = codec::read_frame(&mut s).unwrap().unwrap();
        assert!(matches!(r, Response::Hello { .. }), "{r:?}");
        answered += 1;
    }
    assert!(answered > 1, "{answered}");
    // Quiet now: closed (end of stream, not the read timeout).
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

/// Each connection has its own stop signal: one whose next request is
/// always on its way still sees it.
#[test]
fn stop_ends_a_connection_that_keeps_asking() {
    let mut server = Running::start(Limits {
        // Longer than the safety net below: only the connection ending
        // lets the server return in time.
        grace: Duration::from_secs(600),
        write_timeout: Duration::from_secs(600),
        ..Limits::default()
    });
    let s = server.hello();
    let hello = codec::encode_frame(&Request::Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: VERSION.into(),
    })
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    // Requests back to back until the daemon hangs up.
    let asking = std::thread::spawn(move || while writer.write_all(&hello).is_ok() {});
    let (answered_tx, answered_rx) = std::sync::mpsc::channel();
    let mut reader = s;
    let reading = std::thread::spawn(move || {
        let mut answered = 0u64;
        while let Ok(Some(r)) = codec::read_frame::<_, Response>(&mut reader) {
            assert!(matches!(r, Response::Hello { .. }), "{r:?}");
            answered += 1;
            if answered == 100 {
                answered_tx.send(()).unwrap();
            }
        }
        answered
    });
    answered_rx.recv().unwrap();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = stopped_tx.send(());
    });
    // A safety net, so a regression fails instead of hanging.
    stopped_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon kept serving a connection that kept asking after it was told to stop");
    assert!(reading.join().unwrap() >= 100);
    asking.join().unwrap();
}

/// A connection is idle only while it waits for a request: one whose
/// request takes longer than `idle` (a slow fetch) gets its answer, and is
/// closed only once it has then been quiet for `idle`.
#[test]
fn a_request_that_outlasts_the_idle_timeout_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success());
    // The fetch waits until the test opens the gate.
    let script = format!("read line < '{}'; echo tok-slow", gate.display());
    let text = format!(
        "[credentials.slow]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\nlifetime = \"1h\"\n"
    );
    let config = Config::parse(&text, std::path::Path::new("test.toml")).unwrap();
    let idle = Duration::from_millis(100);
    let server = Running::start_with(
        config,
        Limits {
            idle,
            ..Limits::default()
        },
    );
    let mut s = server.hello();
    let get = Request::Get {
        name: "slow".into(),
        min_valid_secs: None,
        refresh: false,
        scopes: Vec::new(),
    };
    codec::write_frame(&mut s, &get).unwrap();
    // Opening the gate's writing end waits for the command to open its
    // reading end: from here the request is being handled.
    let mut gate = std::fs::OpenOptions::new().write(true).open(&gate).unwrap();
    // A connection that says Hello now and then waits is closed by a sweep
    // once idle: by then a sweep has also looked at the busy one, whose
    // request came earlier.
    let mut later = server.hello();
    let mut buf = [0u8; 1];
    assert_eq!(later.read(&mut buf).unwrap(), 0);
    gate.write_all(b"go\n").unwrap();
    drop(gate);
    match codec::read_frame::<_, Response>(&mut s).unwrap() {
        Some(Response::Token(t)) => assert_eq!(t.token.expose(), "tok-slow"),
        other => panic!("{other:?}"),
    }
    // Still open: the next request is answered.
    let hello = Request::Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: VERSION.into(),
    };
    assert!(matches!(ask(&mut s, &hello), Response::Hello { .. }));
    // Quiet now: closed (end of stream, not the read timeout).
    assert_eq!(s.read(&mut buf).unwrap(), 0);
}

/// Requests are what is counted (and what keeps the daemon from its
/// `idle_timeout`): a client that closes, or sends a frame that is not a
/// request, is not one.
#[test]
fn only_requests_are_counted() {
    let server = Running::start(Limits::default());
    let served = |s: &mut UnixStream| match ask(s, &Request::Status) {
        Response::Status(status) => status.requests_served,
        other => panic!("{other:?}"),
    };
    let mut s = server.hello();
    // Hello and this Status.
    assert_eq!(served(&mut s), 2);
    // A Hello, then the end of the stream, which the daemon answers by
    // closing.
    let mut closed = server.hello();
    closed.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    closed.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    // A frame whose message cannot be read, then the end of the stream.
    let mut bad = server.connect();
    bad.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).unwrap();
    let mut answer = Vec::new();
    bad.read_to_end(&mut answer).unwrap();
    assert!(
        !answer.is_empty(),
        "a bad frame is answered before the close"
    );
    // The Status asks on the first connection, which is still open: the
    // other connections added their Hello (one) and nothing else.
    assert_eq!(served(&mut s), 4);
}
