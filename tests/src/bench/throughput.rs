//! `throughput`: C connections asking for a cached token as fast as the
//! daemon answers (Hello once, then `Get` after `Get`, one outstanding per
//! connection), for D seconds per level. The load generator shares the
//! machine with the daemon, so the CPU each used is reported next to the
//! rate.
//!
//! Each level is then run against a Redis server's `GET` over a Unix
//! socket (`redis.rs`), with the same generator, connections and duration:
//! the `redis` lines. Skipped, saying so, where `redis-server` is absent.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use credcache_shared::codec;
use credcache_shared::protocol::Response;

use super::conn::{Conn, Failure, get_frame};
use super::pin::Pinning;
use super::procfs;
use super::redis::{self, Redis};
use super::report::Line;
use super::run::Bench;
use super::stats::{Samples, per_second, ratio};

/// Tries to open a connection: the daemon may still be closing the last
/// level's connections, and refuses new ones beyond its cap meanwhile.
const CONNECT_ATTEMPTS: u32 = 50;
const CONNECT_PAUSE: Duration = Duration::from_millis(20);

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let levels = bench.plan.throughput_clients.clone();
    let duration = bench.plan.throughput_duration;
    let pin = bench.plan.pin;
    let mut redis = None;
    for clients in levels {
        bench.target()?;
        let calls_before = bench.lab.as_ref().map(|l| l.upstream_calls());
        let target = bench.target()?;
        let (socket, name, pid) = (target.socket.clone(), target.name.clone(), target.pid);
        let measured = measure(&socket, &name, pid, clients, duration, Wire::Credcache, pin);
        let rss = target.rss_kb();
        bench.rss_after_throughput = rss;
        let upstream = bench
            .lab
            .as_ref()
            .zip(calls_before)
            .map(|(lab, before)| lab.upstream_calls() - before);
        bench.emit(line_for("throughput", measured, clients, rss, upstream));
        // Redis next, on the same generator: a token as long as ours.
        if redis.is_none() {
            let mut conn = Conn::open(&socket).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            let token = conn
                .get(&get_frame(&name))
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
            redis = Some(Redis::start(&name, token.token.expose().len()));
        }
        match redis.as_ref().expect("started above") {
            Ok(server) => {
                let measured = measure(
                    &server.socket,
                    &name,
                    server.pid(),
                    clients,
                    duration,
                    Wire::Redis,
                    pin,
                );
                let rss = procfs::rss_kb(server.pid());
                bench.emit(
                    line_for("redis", measured, clients, rss, None)
                        .with("server", server.version.clone()),
                );
            }
            Err(why) => bench.emit(Line::skipped("redis", why).with("clients", clients)),
        }
    }
    Ok(())
}

/// The line of one level.
fn line_for(
    scenario: &'static str,
    measured: Measured,
    clients: usize,
    rss: Option<u64>,
    upstream: Option<u64>,
) -> Line {
    let summary = measured.samples.summary();
    let requests = summary.map_or(0, |s| s.count) as u64;
    let mut line = Line::new(scenario).latency(summary);
    line.req_per_s = Some(per_second(requests, measured.elapsed));
    line.rss_kb = rss;
    line.upstream_calls = upstream;
    line.errors = measured.errors.values().sum();
    let wall = measured.elapsed.as_secs_f64();
    // Requests per CPU-second of the server: on a shared machine the rate
    // follows the scheduler, this much less (BENCHMARKS.md, issue 15).
    let per_server_cpu_second = measured
        .daemon_cpu
        .and_then(|cpu| ratio(requests as f64, cpu.as_secs_f64()))
        .map(f64::round);
    let mut line = line
        .with("clients", clients)
        .with("duration_s", (wall * 1000.0).round() / 1000.0)
        .with("requests", requests)
        .with(
            "daemon_cpu_pct",
            measured
                .daemon_cpu
                .and_then(|cpu| ratio(cpu.as_secs_f64() * 100.0, wall)),
        )
        .with("per_server_cpu_second", per_server_cpu_second)
        .with("server_cpu", measured.server_cpu)
        .with(
            "bench_cpu_pct",
            measured
                .own_cpu
                .and_then(|cpu| ratio(cpu.as_secs_f64() * 100.0, wall)),
        );
    if !measured.errors.is_empty() {
        line = line.with(
            "errors_by_kind",
            serde_json::to_value(&measured.errors).unwrap_or_default(),
        );
    }
    if let Some(e) = measured.first_error {
        line = line.with("first_error", e);
    }
    line
}

/// What the load generator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Ours: `Hello` once, then `Get` frames.
    Credcache,
    /// RESP: `GET name`, answered by a bulk string.
    Redis,
}

impl Wire {
    /// The request, sent again after every answer.
    fn request(self, name: &str) -> Vec<u8> {
        match self {
            Wire::Credcache => get_frame(name),
            Wire::Redis => redis::command(&["GET", name]),
        }
    }

    /// The length of the first whole answer in `buf`, and whether it was
    /// a value; `None` until all of it has arrived.
    fn answer(self, buf: &[u8]) -> Option<(usize, Result<(), Failure>)> {
        match self {
            Wire::Credcache => {
                let len = whole_frame(buf)?;
                let outcome = match codec::from_slice::<Response>(&buf[4..len]) {
                    Ok(Response::Token(_)) => Ok(()),
                    Ok(Response::Error(e)) => Err(Failure::Daemon(e)),
                    Ok(_) => Err(Failure::Transport("unexpected answer to Get".into())),
                    Err(e) => Err(Failure::Transport(e.to_string())),
                };
                Some((len, outcome))
            }
            Wire::Redis => redis::bulk_answer(buf),
        }
    }
}

/// What one level measured.
pub struct Measured {
    pub samples: Samples,
    pub errors: BTreeMap<&'static str, u64>,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU the daemon and this process used over the level.
    pub daemon_cpu: Option<Duration>,
    pub own_cpu: Option<Duration>,
    /// The CPU the server had to itself, if pinned (`pin.rs`).
    pub server_cpu: Option<usize>,
}

/// Runs one level: `clients` connections asking for `name` for `duration`.
///
/// The connections are driven by as many threads as there are CPUs, each
/// multiplexing its share with epoll: with a thread per connection, 256
/// generator threads on two CPUs would measure the scheduler's queue, not
/// the daemon (the p99 was the time a generator thread waited to run).
/// With `pin`, the server has one CPU to itself and the generator one
/// thread on each of the others (`pin.rs`).
pub fn measure(
    socket: &Path,
    name: &str,
    pid: u32,
    clients: usize,
    duration: Duration,
    wire: Wire,
    pin: bool,
) -> Measured {
    let frame = wire.request(name);
    let pinning = if pin { Pinning::new(pid) } else { None };
    let cpus = match &pinning {
        Some(p) => p.generator_cpus(),
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let threads = clients.min(cpus);
    // Every connection opens first; the clock starts when all are ready.
    let start_line = Barrier::new(threads + 1);
    let mut start = None;
    let mut cpu_before = None;
    let results: Vec<Worker> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                // Connections t, t + threads, t + 2 * threads, ...
                let share = (t..clients).step_by(threads).count();
                let (frame, start_line, pinning) = (&frame, &start_line, &pinning);
                scope.spawn(move || {
                    if let Some(p) = pinning {
                        p.enter_generator();
                    }
                    worker(socket, share, frame, start_line, duration, wire)
                })
            })
            .collect();
        start_line.wait();
        start = Some(Instant::now());
        cpu_before = Some((procfs::cpu_time(pid), procfs::own_cpu_time()));
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Worker::failed("a worker panicked"))
            })
            .collect()
    });
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    let (daemon_before, own_before) = cpu_before.unwrap_or((None, None));
    let mut measured = Measured {
        samples: Samples::default(),
        errors: BTreeMap::new(),
        first_error: None,
        elapsed,
        daemon_cpu: procfs::cpu_time(pid)
            .zip(daemon_before)
            .map(|(after, before)| after.saturating_sub(before)),
        own_cpu: procfs::own_cpu_time()
            .zip(own_before)
            .map(|(after, before)| after.saturating_sub(before)),
        server_cpu: pinning.as_ref().map(Pinning::server_cpu),
    };
    // The server gets its CPUs back before anything else is measured.
    drop(pinning);
    for w in results {
        measured.samples.extend(w.samples);
        for (kind, n) in w.errors {
            *measured.errors.entry(kind).or_default() += n;
        }
        if measured.first_error.is_none() {
            measured.first_error = w.first_error;
        }
    }
    measured
}

struct Worker {
    samples: Samples,
    errors: BTreeMap<&'static str, u64>,
    first_error: Option<String>,
}

impl Worker {
    fn failed(why: &str) -> Worker {
        Worker {
            samples: Samples::default(),
            errors: BTreeMap::from([("bench", 1)]),
            first_error: Some(why.to_owned()),
        }
    }

    fn note(&mut self, failure: &Failure) {
        *self.errors.entry(failure.kind()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(failure.message().to_owned());
        }
    }
}

/// One connection in flight: its socket, the bytes of the answer read so
/// far, and when the request went out.
struct InFlight {
    stream: UnixStream,
    buf: Vec<u8>,
    sent: Instant,
    open: bool,
}

/// One generator thread: opens `share` connections, meets the others at
/// the start line, then keeps one `Get` outstanding on each until the
/// deadline.
fn worker(
    socket: &Path,
    share: usize,
    frame: &[u8],
    start_line: &Barrier,
    duration: Duration,
    wire: Wire,
) -> Worker {
    let mut me = Worker {
        samples: Samples::with_capacity(256 * 1024),
        errors: BTreeMap::new(),
        first_error: None,
    };
    let mut streams = Vec::with_capacity(share);
    for _ in 0..share {
        match connect(socket, wire) {
            Ok(stream) => streams.push(stream),
            Err(failure) => me.note(&failure),
        }
    }
    // Whatever happened, meet the others at the start line, or they wait forever.
    start_line.wait();
    if let Err(why) = drive(streams, frame, Instant::now() + duration, wire, &mut me) {
        me.note(&Failure::Transport(why.to_string()));
    }
    me
}

/// A system call the event loop could not make.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
struct SysError {
    call: &'static str,
    source: io::Error,
}

impl SysError {
    fn of(call: &'static str) -> impl FnOnce(rustix::io::Errno) -> SysError {
        move |e| SysError {
            call,
            source: e.into(),
        }
    }
}

/// The event loop of one generator thread.
fn drive(
    streams: Vec<UnixStream>,
    frame: &[u8],
    deadline: Instant,
    wire: Wire,
    me: &mut Worker,
) -> Result<(), SysError> {
    use rustix::buffer::spare_capacity;
    use rustix::event::Timespec;
    use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};

    let epoll = epoll::create(CreateFlags::CLOEXEC).map_err(SysError::of("epoll"))?;
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true).map_err(|source| SysError {
            call: "non-blocking",
            source,
        })?;
        epoll::add(
            &epoll,
            &stream,
            EventData::new_u64(i as u64),
            EventFlags::IN,
        )
        .map_err(SysError::of("epoll_ctl"))?;
        conns.push(InFlight {
            stream,
            buf: Vec::with_capacity(512),
            sent: Instant::now(),
            open: true,
        });
    }
    let mut live = conns.len();
    for conn in &mut conns {
        if let Err(failure) = send(conn, frame) {
            me.note(&failure);
            conn.open = false;
            live -= 1;
        }
    }
    let mut events = Vec::with_capacity(conns.len().max(1));
    let mut chunk = [0u8; 4096];
    while live > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(100));
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        events.clear();
        match epoll::wait(&epoll, spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SysError::of("epoll_wait")(e)),
        }
        for event in &events {
            let Some(conn) = conns.get_mut(event.data.u64() as usize) else {
                continue;
            };
            if !conn.open {
                continue;
            }
            if let Err(failure) = on_readable(conn, &mut chunk, frame, deadline, wire, me) {
                me.note(&failure);
                let _ = epoll::delete(&epoll, &conn.stream);
                conn.open = false;
                live -= 1;
            }
        }
    }
    Ok(())
}

/// Reads what arrived; for each whole answer, records it and sends the
/// next request (until the deadline).
fn on_readable(
    conn: &mut InFlight,
    chunk: &mut [u8],
    frame: &[u8],
    deadline: Instant,
    wire: Wire,
    me: &mut Worker,
) -> Result<(), Failure> {
    loop {
        match (&conn.stream).read(chunk) {
            Ok(0) => {
                return Err(Failure::Transport(
                    "the daemon closed the connection".into(),
                ));
            }
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Transport(e.to_string())),
        }
    }
    while let Some((len, outcome)) = wire.answer(&conn.buf) {
        let answered = Instant::now();
        conn.buf.drain(..len);
        match outcome {
            Ok(()) => me.samples.push(answered - conn.sent),
            Err(e @ Failure::Daemon(_)) => me.note(&e),
            Err(e) => return Err(e),
        }
        if answered < deadline {
            send(conn, frame)?;
        }
    }
    Ok(())
}

/// The length (header included) of the first frame in `buf`, once all of
/// it has arrived.
fn whole_frame(buf: &[u8]) -> Option<usize> {
    let header: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = 4 + u32::from_le_bytes(header) as usize;
    (buf.len() >= len).then_some(len)
}

fn send(conn: &mut InFlight, frame: &[u8]) -> Result<(), Failure> {
    conn.sent = Instant::now();
    // A request is a few bytes and one is outstanding per connection: the
    // socket buffer always has room, so a short write is an error here.
    (&conn.stream)
        .write_all(frame)
        .map_err(|e| Failure::Transport(format!("cannot send: {e}")))
}

/// Opens a connection (greeted, for ours), retrying a little while the
/// server refuses it.
fn connect(socket: &Path, wire: Wire) -> Result<UnixStream, Failure> {
    let mut attempt = 1;
    loop {
        let opened = match wire {
            Wire::Credcache => Conn::open(socket).map(Conn::into_stream),
            Wire::Redis => {
                UnixStream::connect(socket).map_err(|e| Failure::Transport(e.to_string()))
            }
        };
        match opened {
            Ok(stream) => return Ok(stream),
            Err(_) if attempt < CONNECT_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(CONNECT_PAUSE);
            }
            Err(failure) => return Err(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_whole_only_once_all_bytes_arrived() {
        let frame = get_frame("bench");
        assert_eq!(whole_frame(&frame), Some(frame.len()));
        assert_eq!(whole_frame(&frame[..frame.len() - 1]), None);
        assert_eq!(whole_frame(&frame[..3]), None);
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(whole_frame(&two), Some(frame.len()));
    }
}
