//! A bounded pool of OS threads for blocking work (renders), with a bounded queue that
//! refuses instead of growing.
//!
//! Owns the workers, the queue bound and the hand-off of results back to async callers.
//! Why not `tokio::task::spawn_blocking`: its pool is large (512 threads) and its queue
//! unbounded, so a burst of big renders would oversubscribe 2 cores and queue without limit;
//! here the server gets `Overloaded` at once and answers 503 + `Retry-After`. It knows
//! nothing of what the closures do.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// N worker threads behind a queue of fixed length.
pub struct Pool {
    sender: SyncSender<Job>,
    workers: usize,
    queue: usize,
}

/// Why [`Pool::run`] gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every worker is busy and the queue is full: shed load (HTTP 503 + `Retry-After`).
    #[error("render pool is overloaded")]
    Overloaded,
    /// The job panicked (a bug; the worker survives).
    #[error("render job panicked: {0}")]
    Panicked(String),
}

impl PoolError {
    /// Stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            PoolError::Overloaded => "overloaded",
            PoolError::Panicked(_) => "internal",
        }
    }
}

impl Pool {
    /// Starts `workers` threads (0 = number of cores) with room for `queue` waiting jobs.
    /// The threads stop once the pool is dropped and the queue has drained.
    pub fn new(workers: usize, queue: usize) -> Pool {
        let workers = if workers == 0 {
            thread::available_parallelism().map_or(1, usize::from)
        } else {
            workers
        };
        let (sender, receiver) = sync_channel::<Job>(queue);
        // One receiver shared by all workers: whoever is idle takes the next job.
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..workers {
            let receiver = Arc::clone(&receiver);
            let spawned = thread::Builder::new()
                .name(format!("imgmirror-render-{i}"))
                .spawn(move || worker(&receiver));
            if let Err(e) = spawned {
                // Fewer workers is degraded, not fatal; the queue still bounds the backlog.
                tracing::error!(error = %e, "could not start render worker {i}");
            }
        }
        Pool {
            sender,
            workers,
            queue,
        }
    }

    /// Runs `f` on a worker and awaits its result. Returns `Overloaded` immediately, without
    /// running `f`, when all workers are busy and `queue` jobs are already waiting. If the
    /// caller stops awaiting before a worker picks the job up, the job is skipped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return; // the client went away while the job waited
            }
            let result = catch_unwind(AssertUnwindSafe(f));
            let _ = tx.send(result);
        });
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(PoolError::Overloaded);
            }
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(payload)) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(PoolError::Panicked(message))
            }
            // The worker dropped the job without running it: only if all workers died.
            Err(_) => Err(PoolError::Panicked("render worker stopped".to_owned())),
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Length of the waiting queue.
    pub fn queue(&self) -> usize {
        self.queue
    }
}

fn worker(receiver: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only while taking a job, not while running it. A poisoned lock can
        // only come from a panic inside `recv`, which leaves the receiver usable.
        let job = {
            let guard = receiver.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // pool dropped and queue drained
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A job that reports it started, then blocks until released.
    fn gated(started: mpsc::Sender<()>, release: mpsc::Receiver<()>) -> impl FnOnce() -> u32 {
        move || {
            let _ = started.send(());
            let _ = release.recv();
            7
        }
    }

    /// Polls `fut` exactly once, so its `try_send` happens now (futures are lazy).
    async fn poll_once<F: std::future::Future + Unpin>(fut: &mut F) {
        tokio::select! {
            biased;
            _ = fut => panic!("job finished while it should be blocked"),
            _ = std::future::ready(()) => {}
        }
    }

    #[tokio::test]
    async fn saturation_is_refused_at_once_and_recovers() {
        let pool = Pool::new(1, 1);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_a, gate_a) = mpsc::channel();
        let (release_b, gate_b) = mpsc::channel();

        // A occupies the only worker.
        let a = pool.run(gated(started_tx.clone(), gate_a));
        tokio::pin!(a);
        poll_once(&mut a).await;
        started_rx.recv().expect("job A starts");

        // B waits in the queue (length 1).
        let b = pool.run(gated(started_tx.clone(), gate_b));
        tokio::pin!(b);
        poll_once(&mut b).await;

        // C finds the worker busy and the queue full: refused without waiting.
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let c = pool.run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        assert_eq!(c.await, Err(PoolError::Overloaded));

        release_a.send(()).unwrap();
        assert_eq!(a.await, Ok(7));
        started_rx.recv().expect("job B starts after A");
        release_b.send(()).unwrap();
        assert_eq!(b.await, Ok(7));
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "a refused job never runs"
        );
        // Capacity is back.
        assert_eq!(pool.run(|| 5u32).await, Ok(5));
    }

    #[tokio::test]
    async fn panics_become_errors_and_the_worker_survives() {
        let pool = Pool::new(1, 4);
        let err = pool.run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert_eq!(err, PoolError::Panicked("boom".into()));
        assert_eq!(pool.run(|| 1u32).await, Ok(1));
    }

    #[tokio::test]
    async fn zero_workers_means_cores() {
        let pool = Pool::new(0, 0);
        assert!(pool.workers() >= 1);
        // queue 0 = rendezvous: a job is accepted only when a worker is idle and waiting.
        let mut ok = false;
        for _ in 0..200 {
            if pool.run(|| 3u32).await == Ok(3) {
                ok = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(ok);
    }
}
