//! Cache writes with group commit. Every fetched token is written and
//! flushed before its `get` is answered (so a `kill -9` right after loses
//! nothing), but the records that arrive while a flush runs share the next
//! one: a cold fan-out of 1,000 credentials makes a handful of flushes, not
//! a thousand racing on sled's log from a thousand blocking threads.
//!
//! The thread must outlive anything a record or sled can do to it: a panic
//! while writing a batch fails that batch only, and should the thread end
//! anyway, the next write starts a new one. Either is a `status` warning.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::store::{Record, Store};

/// The most records one flush takes; more wait for the next.
const MAX_BATCH: usize = 1024;

/// How often records that could not be written (a full disk) are tried
/// again when nothing else comes to write.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a record is not on disk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the cache writer has stopped")]
    Stopped,
    #[error("the cache writer stopped while writing")]
    StoppedWhileWriting,
    #[error("cannot restart the cache writer: {0}")]
    Restart(Arc<std::io::Error>),
    /// The batch failed: the store's words, or the panic's. Shared by every
    /// record of the batch.
    #[error("{0}")]
    Batch(Arc<str>),
}

/// Writes one batch of `(name, fingerprint, record)` with one flush.
type WriteBatch = dyn Fn(&[(&str, &str, &Record)]) -> Result<(), WriteFailed> + Send + Sync;

/// Why a batch was not written, and whether trying again may help (a full
/// disk may empty; a record that does not encode never will).
#[derive(Debug)]
struct WriteFailed {
    message: String,
    retry: bool,
}

/// One record to write, and whom to tell when it is on disk.
struct Job {
    name: String,
    fingerprint: String,
    record: Record,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// The thread and its queue.
struct Running {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

/// The handle to the writer thread. Dropping it lets the thread finish
/// the records queued, and waits for it.
pub struct Writer {
    write: Arc<WriteBatch>,
    running: Mutex<Option<Running>>,
    /// Why the writer last failed hard, for `status`.
    trouble: Arc<Mutex<Option<String>>>,
    /// Why the last write failed, until one succeeds, for `status`.
    failing: Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// Starts the writer thread for `store`.
    pub fn start(store: Store) -> std::io::Result<Writer> {
        Self::start_with(Arc::new(move |batch: &[(&str, &str, &Record)]| {
            let failed = |e: crate::store::StoreError| WriteFailed {
                retry: !matches!(e, crate::store::StoreError::Encode { .. }),
                message: e.to_string(),
            };
            match store.put_all(batch.iter().copied()) {
                Err(e @ crate::store::StoreError::Encode { .. }) => Err(failed(e)),
                // sled fails every write after an I/O error until reopened:
                // reopen, and try once more (space may have returned).
                Err(first) => match store.reopen() {
                    Ok(()) => store.put_all(batch.iter().copied()).map_err(failed),
                    Err(_) => Err(failed(first)),
                },
                Ok(()) => Ok(()),
            }
        }))
    }

    /// Starts a writer that writes each batch with `write`.
    fn start_with(write: Arc<WriteBatch>) -> std::io::Result<Writer> {
        let writer = Writer {
            write,
            running: Mutex::new(None),
            trouble: Arc::new(Mutex::new(None)),
            failing: Arc::new(Mutex::new(None)),
        };
        let running = writer.spawn()?;
        *writer.lock() = Some(running);
        Ok(writer)
    }

    fn spawn(&self) -> std::io::Result<Running> {
        let (jobs, queue) = mpsc::channel();
        let write = self.write.clone();
        let (trouble, failing) = (self.trouble.clone(), self.failing.clone());
        let thread = std::thread::Builder::new()
            .name("credcached-cache-writer".to_owned())
            .spawn(move || run(&*write, &queue, &trouble, &failing))?;
        Ok(Running { jobs, thread })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `status` should say about the writer: a write failing now,
    /// or the last time it failed hard.
    pub fn warning(&self) -> Option<String> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        let trouble = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        match (&*failing, &*trouble) {
            (Some(f), Some(t)) => Some(format!("{f}; {t}")),
            (f, t) => f.clone().or_else(|| t.clone()),
        }
    }

    fn note(&self, what: String) {
        tracing::warn!("{what}");
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }

    /// Hands `job` to the thread, starting a new one first if the last
    /// has ended.
    fn send(&self, job: Job) -> Result<(), WriteError> {
        let mut running = self.lock();
        if running.as_ref().is_none_or(|r| r.thread.is_finished()) {
            if let Some(dead) = running.take() {
                let _ = dead.thread.join();
                self.note(format!(
                    "the cache writer thread stopped unexpectedly at {}; started a new one",
                    credcache_shared::time::format_rfc3339(chrono::Utc::now())
                ));
            }
            *running = Some(self.spawn().map_err(|e| WriteError::Restart(Arc::new(e)))?);
        }
        running
            .as_ref()
            .and_then(|r| r.jobs.send(job).ok())
            .ok_or(WriteError::Stopped)
    }

    /// Writes `record` for `name` under `fingerprint` and returns once it
    /// is flushed to disk.
    pub async fn put(
        &self,
        name: &str,
        fingerprint: &str,
        record: Record,
    ) -> Result<(), WriteError> {
        let (done, written) = oneshot::channel();
        let job = Job {
            name: name.to_owned(),
            fingerprint: fingerprint.to_owned(),
            record,
            done,
        };
        self.send(job)?;
        written
            .await
            .unwrap_or(Err(WriteError::StoppedWhileWriting))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what is in it.
        if let Some(running) = self.lock().take() {
            drop(running.jobs);
            let _ = running.thread.join();
        }
    }
}

/// The writer thread: takes every record queued, writes them all, flushes
/// once, answers each. Records whose write failed (a full or read-only
/// disk) are kept and written again with the next batch, or after
/// [`RETRY_EVERY`], until one succeeds: space coming back heals the cache
/// without a restart. Their `get`s are answered at once all the same.
fn run(
    write: &WriteBatch,
    queue: &mpsc::Receiver<Job>,
    trouble: &Mutex<Option<String>>,
    failing: &Mutex<Option<String>>,
) {
    let mut pending: std::collections::BTreeMap<String, (String, Record)> = Default::default();
    loop {
        let first = if pending.is_empty() {
            match queue.recv() {
                Ok(job) => Some(job),
                Err(_) => return,
            }
        } else {
            match queue.recv_timeout(RETRY_EVERY) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        let mut batch: Vec<Job> = first.into_iter().collect();
        while batch.len() < MAX_BATCH
            && let Ok(more) = queue.try_recv()
        {
            batch.push(more);
        }
        // A newer record of a name replaces the one waiting for a retry.
        for job in &batch {
            pending.remove(&job.name);
        }
        let records: Vec<(&str, &str, &Record)> = pending
            .iter()
            .map(|(n, (fp, r))| (n.as_str(), fp.as_str(), r))
            .chain(
                batch
                    .iter()
                    .map(|j| (j.name.as_str(), j.fingerprint.as_str(), &j.record)),
            )
            .collect();
        let written = match std::panic::catch_unwind(AssertUnwindSafe(|| write(&records))) {
            Ok(result) => result,
            // Not retried: the same records would panic again.
            Err(panic) => {
                let why = panic_message(&*panic);
                let what = format!(
                    "the cache writer failed at {} ({why}); it goes on with the next write",
                    credcache_shared::time::format_rfc3339(chrono::Utc::now())
                );
                tracing::warn!("{what}");
                *trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
                Err(WriteFailed {
                    message: format!("the cache writer failed ({why})"),
                    retry: false,
                })
            }
        };
        drop(records);
        let mut failing = failing.lock().unwrap_or_else(|p| p.into_inner());
        match &written {
            Ok(()) => {
                if failing.take().is_some() {
                    tracing::info!("cache writes work again");
                }
                pending.clear();
            }
            Err(e) if !e.retry => pending.clear(),
            Err(e) => {
                let what = format!(
                    "cannot write the cache ({}); tokens are served from memory, and the write is retried",
                    e.message
                );
                if failing.is_none() {
                    tracing::warn!("{what}");
                }
                *failing = Some(what);
                for job in &batch {
                    pending.insert(
                        job.name.clone(),
                        (job.fingerprint.clone(), job.record.clone()),
                    );
                }
            }
        }
        drop(failing);
        let answer = written.map_err(|e| WriteError::Batch(e.message.into()));
        for job in batch {
            // The fetch that asked may have been dropped (its client left).
            let _ = job.done.send(answer.clone());
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    crate::http::sanitize(&text, 200)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use credcache_shared::Secret;

    use super::*;
    use crate::seal::Sealer;

    fn record(token: &str) -> Record {
        Record {
            kind: "command".into(),
            token: Secret::new(token),
            expires_at: DateTime::<Utc>::MAX_UTC,
            fetched_at: Utc::now(),
            quota_project: None,
        }
    }

    /// Regression: a panic while writing (the `expect` on a record too big
    /// to encode) ended the thread, and no token was saved again.
    #[tokio::test]
    async fn a_panic_while_writing_fails_that_batch_and_later_writes_land() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let writer = Writer::start_with(Arc::new(move |batch: &[(&str, &str, &Record)]| {
            if batch.iter().any(|(name, ..)| *name == "boom") {
                panic!("cannot encode");
            }
            let mut sink = sink.lock().unwrap();
            sink.extend(batch.iter().map(|(n, ..)| n.to_string()));
            Ok(())
        }))
        .unwrap();
        assert!(writer.warning().is_none());
        let err = writer
            .put("boom", "fp", record("t"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot encode"), "{err}");
        writer.put("after", "fp", record("t")).await.unwrap();
        assert_eq!(*written.lock().unwrap(), vec!["after".to_owned()]);
        assert!(writer.warning().unwrap().contains("cache writer failed"));
    }

    #[tokio::test]
    async fn a_writer_thread_that_ended_is_restarted_and_reported() {
        let writer = Writer::start_with(Arc::new(|_: &[(&str, &str, &Record)]| Ok(()))).unwrap();
        // End the thread as a crash would: its queue closes under it.
        {
            let mut running = writer.lock();
            let old = running.take().unwrap();
            drop(old.jobs);
            old.thread.join().unwrap();
            let (jobs, _) = mpsc::channel();
            let thread = std::thread::spawn(|| {});
            while !thread.is_finished() {
                std::thread::yield_now();
            }
            *running = Some(Running { jobs, thread });
        }
        writer.put("a", "fp", record("t")).await.unwrap();
        assert!(writer.warning().unwrap().contains("started a new one"));
    }

    #[tokio::test]
    async fn concurrent_puts_all_land_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let sealer = Arc::new(Sealer::new(&[7u8; 32], "test"));
        let (store, _) = Store::open(&path, sealer.clone()).unwrap();
        let writer = Arc::new(Writer::start(store.clone()).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let writer = writer.clone();
            tasks.spawn(async move {
                let name = format!("c{i}");
                writer.put(&name, "fp", record(&format!("t{i}"))).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        drop(writer);
        drop(store);
        // sled's flusher thread lets go of the lock a moment after the drop.
        let (store, _) =
            Store::open_waiting(&path, sealer, std::time::Duration::from_secs(10)).unwrap();
        let mut names: Vec<String> = store.load_all().into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names.len(), 200);
        assert!(names.contains(&"c199".to_owned()));
    }
}
