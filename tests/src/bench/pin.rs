//! Where a throughput level runs: the server alone on one CPU, the load
//! generator on the others, as Redis's own benchmarking guide advises.
//!
//! Left to the scheduler, a generator thread woken by a reply was often
//! placed on the server's CPU and preempted it: on two CPUs the daemon
//! was switched out involuntarily 128,000-147,000 times in 5 s where
//! Redis, in the same run, was switched out 14,000-29,000 times, and a
//! server's requests per CPU-second followed where the threads happened to
//! land more than the server's own work (BENCHMARKS.md, issue 15). Both
//! servers are pinned the same way; `--no-pin` leaves placement to the
//! scheduler, and a daemon the bench did not start (`--socket`) is never
//! pinned: a bench stopped by Ctrl-C would leave it on one CPU.

use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// A pinned level. Dropping it gives each of the server's threads back the
/// CPUs it had (a thread started meanwhile gets its process's).
pub struct Pinning {
    server: u32,
    server_cpu: usize,
    /// Each thread's CPUs before the level, by thread id.
    before: Vec<(u32, CpuSet)>,
    /// What the process's main thread had, for threads not in `before`.
    process: CpuSet,
    generator: CpuSet,
    generator_cpus: usize,
}

impl Pinning {
    /// Pins every thread of `server` to the last CPU this process may use.
    /// `None` with fewer than two such CPUs, or where affinity cannot be
    /// set (the level then runs unpinned, and its line says so).
    pub fn new(server: u32) -> Option<Pinning> {
        let mine = sched_getaffinity(None).ok()?;
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| mine.is_set(c)).collect();
        let (&server_cpu, rest) = cpus.split_last()?;
        if rest.is_empty() {
            return None;
        }
        let process = sched_getaffinity(Some(pid(server)?)).ok()?;
        let before = threads(server)?
            .into_iter()
            .filter_map(|tid| Some((tid, sched_getaffinity(Some(pid(tid)?)).ok()?)))
            .collect();
        let mut alone = CpuSet::new();
        alone.set(server_cpu);
        let mut generator = CpuSet::new();
        for &c in rest {
            generator.set(c);
        }
        let pinning = Pinning {
            server,
            server_cpu,
            before,
            process,
            generator,
            generator_cpus: rest.len(),
        };
        // Dropped on failure, which puts back the threads already moved.
        set_threads(server, |_| alone).then_some(pinning)
    }

    /// The CPU the server has to itself.
    pub fn server_cpu(&self) -> usize {
        self.server_cpu
    }

    /// How many CPUs the generator has: one thread each.
    pub fn generator_cpus(&self) -> usize {
        self.generator_cpus
    }

    /// Keeps the calling (generator) thread off the server's CPU.
    pub fn enter_generator(&self) {
        // Best effort: a thread left unpinned only adds noise.
        let _ = sched_setaffinity(None, &self.generator);
    }
}

impl Drop for Pinning {
    fn drop(&mut self) {
        set_threads(self.server, |tid| {
            self.before
                .iter()
                .find(|(t, _)| *t == tid)
                .map_or(self.process, |(_, cpus)| *cpus)
        });
    }
}

/// The thread ids of process `pid`.
fn threads(pid: u32) -> Option<Vec<u32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .flatten()
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Sets the affinity of every thread of process `pid` to `cpus(tid)`;
/// false if any could not be set (a thread that has just exited does not
/// count).
fn set_threads(pid: u32, cpus: impl Fn(u32) -> CpuSet) -> bool {
    let Some(tids) = threads(pid) else {
        return false;
    };
    tids.into_iter().all(|tid| match self::pid(tid) {
        Some(id) => match sched_setaffinity(Some(id), &cpus(tid)) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::SRCH,
        },
        None => false,
    })
}

fn pid(id: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(id).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process pinned for a level runs on one CPU, and has all its CPUs
    /// back afterwards.
    #[test]
    fn a_pinned_server_has_one_cpu_and_gets_the_others_back() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let id = child.id();
        let before = sched_getaffinity(pid(id)).expect("affinity readable");
        match Pinning::new(id) {
            Some(pinning) => {
                let during = sched_getaffinity(pid(id)).expect("affinity readable");
                assert_eq!(during.count(), 1);
                assert!(during.is_set(pinning.server_cpu()));
                assert!(!pinning.generator.is_set(pinning.server_cpu()));
                assert_eq!(pinning.generator.count() as usize, pinning.generator_cpus());
                drop(pinning);
                let after = sched_getaffinity(pid(id)).expect("affinity readable");
                assert_eq!(after, before);
            }
            // One CPU, or affinity not ours to set: nothing was changed.
            None => assert_eq!(sched_getaffinity(pid(id)).expect("readable"), before),
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A thread with CPUs of its own gets them back, not its process's.
    #[test]
    fn each_thread_gets_its_own_cpus_back() {
        let mine = sched_getaffinity(None).expect("affinity readable");
        let Some(first) = (0..CpuSet::MAX_CPU).find(|&c| mine.is_set(c)) else {
            return;
        };
        let mut only_first = CpuSet::new();
        only_first.set(first);
        // This test's own process stands in for the server: a thread of it
        // keeps to one CPU of its own choosing.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            sched_setaffinity(None, &only_first).expect("own affinity settable");
            tid_tx
                .send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
                .unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let process = sched_getaffinity(pid(std::process::id())).expect("readable");
        if let Some(pinning) = Pinning::new(std::process::id()) {
            drop(pinning);
        }
        assert_eq!(sched_getaffinity(pid(tid)).expect("readable"), only_first);
        assert_eq!(
            sched_getaffinity(pid(std::process::id())).expect("readable"),
            process
        );
        done_tx.send(()).unwrap();
        thread.join().unwrap();
    }
}
