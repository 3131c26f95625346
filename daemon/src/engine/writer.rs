//! Cache writes with group commit. Every fetched token is written and
//! flushed before its `get` is answered (so a `kill -9` right after loses
//! nothing), but the records that arrive while a flush runs share the next
//! one: a cold fan-out of 1,000 credentials makes a handful of flushes, not
//! a thousand racing on sled's log from a thousand blocking threads.

use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

use crate::store::{Record, Store, StoreError};

/// Why a record is not on disk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the cache writer has stopped")]
    Stopped,
    /// Shared by every record of the batch that failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

/// The most records one flush takes; more wait for the next.
const MAX_BATCH: usize = 1024;

/// One record to write, and whom to tell when it is on disk.
struct Job {
    name: String,
    fingerprint: String,
    record: Record,
    done: oneshot::Sender<Result<(), WriteError>>,
}

/// The handle to the writer thread. Dropping it lets the thread finish
/// the records queued, and waits for it.
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread for `store`.
    pub fn start(store: Store) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("credcached-cache-writer".to_owned())
            .spawn(move || run(&store, &queue))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
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
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or(WriteError::Stopped)?;
        written.await.unwrap_or(Err(WriteError::Stopped))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what is in it.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: takes every record queued, writes them all, flushes
/// once, answers each.
fn run(store: &Store, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(more) = queue.try_recv()
        {
            batch.push(more);
        }
        let written = store
            .put_all(
                batch
                    .iter()
                    .map(|j| (j.name.as_str(), j.fingerprint.as_str(), &j.record)),
            )
            .map_err(|e| WriteError::Store(Arc::new(e)));
        for job in batch {
            // The fetch that asked may have been dropped (its client left).
            let _ = job.done.send(written.clone());
        }
    }
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
        let (store, _) = Store::open(&path, sealer).unwrap();
        let mut names: Vec<String> = store.load_all().into_iter().map(|s| s.name).collect();
        names.sort();
        assert_eq!(names.len(), 200);
        assert!(names.contains(&"c199".to_owned()));
    }
}
