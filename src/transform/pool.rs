//! A bounded pool of OS threads for blocking work (renders), with a bounded queue that
//! refuses instead of growing.
//!
//! Owns the workers, the queue bound and the hand-off of results back to async callers.
//! Why not `tokio::task::spawn_blocking`: its pool is large (512 threads) and its queue
//! unbounded, so a burst of big renders would oversubscribe 2 cores and queue without limit;
//! here the server gets `Overloaded` at once and answers 503 + `Retry-After`. It knows
//! nothing of what the closures do.
//!
//! Timeouts ([`Pool::with_timeout`], [`Pool::from_settings`]): what is cancelled is the
//! *waiting*. The caller gets [`PoolError::Timeout`] and the worker is replaced at once, so
//! the pool keeps its capacity; the job's thread cannot be killed and runs on until the job
//! returns (renders check their own deadline, so that is normally soon), then exits.
//!
//! [`Pool::background`] is a second, low-priority pool for work nobody waits for (AVIF
//! renditions): its threads run niced (`avif_background_nice`), so the scheduler favours
//! the foreground workers, and they never take a foreground worker or queue slot.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use tokio::sync::oneshot;

use super::Settings;

/// A queued job; returns true when its worker was replaced meanwhile and must stop.
type Job = Box<dyn FnOnce() -> bool + Send + 'static>;

/// How long past `render_timeout_secs` [`Pool::from_settings`] waits before giving up on a
/// job: renders normally stop at their own deadline with `TransformError::Timeout` and keep
/// their worker; only a render stuck where it can't check the deadline reaches this.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// N worker threads behind a queue of fixed length.
pub struct Pool {
    sender: SyncSender<Job>,
    shared: Arc<Shared>,
    workers: usize,
    queue: usize,
    timeout: Option<Duration>,
}

/// What the workers share with the pool.
struct Shared {
    /// One receiver for all workers: whoever is idle takes the next job.
    receiver: Mutex<Receiver<Job>>,
    /// Names replacement threads.
    next_id: AtomicUsize,
    /// Abandoned jobs whose thread still runs (it stops when the job ends). At most
    /// `workers` of them, so stuck renders can't multiply the threads without bound.
    abandoned: AtomicUsize,
    /// Nice value for threads (and their replacements); 0 leaves them as they are.
    nice: u8,
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
    /// The job ran longer than the pool's timeout: the caller stopped waiting and the
    /// worker was replaced (the job itself runs on to its end: threads can't be killed).
    #[error("render did not finish within {0:?}")]
    Timeout(Duration),
}

impl PoolError {
    /// Stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            PoolError::Overloaded => "overloaded",
            PoolError::Panicked(_) => "internal",
            PoolError::Timeout(_) => "render-timeout",
        }
    }
}

/// A job's state as the worker and the waiting caller see it.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

impl Pool {
    /// Starts `workers` threads (0 = number of cores) with room for `queue` waiting jobs,
    /// and no timeout. The threads stop once the pool is dropped and the queue has drained.
    pub fn new(workers: usize, queue: usize) -> Pool {
        Pool::with_timeout(workers, queue, None)
    }

    /// The pool `settings` describe: `workers`, `queue`, and a timeout of
    /// `render_timeout_secs` + [`TIMEOUT_GRACE`].
    pub fn from_settings(settings: &Settings) -> Pool {
        Pool::with_timeout(
            settings.workers,
            settings.queue,
            Some(settings.render_timeout() + TIMEOUT_GRACE),
        )
    }

    /// [`Pool::new`] with a timeout: a job that runs longer than `timeout` (counted from
    /// when a worker starts it, since time in the queue is load, not the job's cost) gives
    /// its caller [`PoolError::Timeout`], and its worker is replaced so the pool keeps its
    /// capacity while the stuck thread finishes.
    pub fn with_timeout(workers: usize, queue: usize, timeout: Option<Duration>) -> Pool {
        Pool::build(workers, queue, timeout, 0)
    }

    /// The low-priority pool for background renders: `workers` threads at nice
    /// `avif_background_nice`, `queue` waiting jobs, and the render deadline
    /// of `settings` like [`Pool::from_settings`].
    pub fn background(workers: usize, queue: usize, settings: &Settings) -> Pool {
        let timeout = Some(settings.render_timeout() + TIMEOUT_GRACE);
        Pool::build(
            workers.max(1),
            queue,
            timeout,
            settings.avif_background_nice,
        )
    }

    fn build(workers: usize, queue: usize, timeout: Option<Duration>, nice: u8) -> Pool {
        let workers = if workers == 0 {
            thread::available_parallelism().map_or(1, usize::from)
        } else {
            workers
        };
        let (sender, receiver) = sync_channel::<Job>(queue);
        let shared = Arc::new(Shared {
            receiver: Mutex::new(receiver),
            next_id: AtomicUsize::new(0),
            abandoned: AtomicUsize::new(0),
            nice,
        });
        for _ in 0..workers {
            spawn_worker(&shared);
        }
        Pool {
            sender,
            shared,
            workers,
            queue,
            timeout,
        }
    }

    /// Runs `f` on a worker and awaits its result. Returns `Overloaded` immediately, without
    /// running `f`, when all workers are busy and `queue` jobs are already waiting. If the
    /// caller stops awaiting before a worker picks the job up, the job is skipped. With a
    /// timeout, a job running past it gives `Timeout` (see [`Pool::with_timeout`]).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (tx, mut rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let state = Arc::new(AtomicU8::new(RUNNING));
        let job_state = Arc::clone(&state);
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return false; // the client went away while the job waited
            }
            let _ = started_tx.send(());
            let result = catch_unwind(AssertUnwindSafe(f));
            let replaced = job_state.swap(DONE, Ordering::AcqRel) == ABANDONED;
            let _ = tx.send(result);
            replaced
        });
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(PoolError::Overloaded);
            }
        }
        let Some(timeout) = self.timeout else {
            return outcome(rx.await);
        };
        if started_rx.await.is_err() {
            return outcome(rx.await); // dropped unstarted: only if all workers died
        }
        if let Ok(result) = tokio::time::timeout(timeout, &mut rx).await {
            return outcome(result);
        }
        if self.abandon(&state) {
            return Err(PoolError::Timeout(timeout));
        }
        // It finished between the timeout and now: the result is there.
        outcome(rx.await)
    }

    /// Gives up on a running job: replaces its worker, which stops once the job returns.
    /// False if the job finished meanwhile. When `workers` abandoned jobs are already
    /// running, the worker is not replaced (it rejoins the pool when its job ends): stuck
    /// renders may then cost capacity, but never more than twice the threads.
    fn abandon(&self, state: &AtomicU8) -> bool {
        let slots = &self.shared.abandoned;
        if slots.fetch_add(1, Ordering::AcqRel) >= self.workers {
            slots.fetch_sub(1, Ordering::AcqRel);
            tracing::error!("render timed out; not replacing its worker: too many stuck");
            return state.load(Ordering::Acquire) != DONE;
        }
        if state
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            slots.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        tracing::warn!("render timed out; replacing its worker");
        spawn_worker(&self.shared);
        true
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

fn outcome<T>(
    received: Result<std::thread::Result<T>, oneshot::error::RecvError>,
) -> Result<T, PoolError> {
    match received {
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

fn spawn_worker(shared: &Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    let kind = if shared.nice > 0 { "idle" } else { "render" };
    let spawned = thread::Builder::new()
        .name(format!("imgmirror-{kind}-{id}"))
        .spawn(move || {
            if shared.nice > 0 {
                lower_priority(shared.nice);
            }
            worker(&shared)
        });
    if let Err(e) = spawned {
        // Fewer workers is degraded, not fatal; the queue still bounds the backlog.
        tracing::error!(error = %e, "could not start render worker {id}");
    }
}

/// Lowers the calling thread to `nice` (19: about 1.5 % of a core's share against one
/// normal thread; 10: about 10 %). Not `SCHED_IDLE`, which would starve it for as long as
/// anything else runs. Linux only (a thread id names one thread for `setpriority` there);
/// elsewhere the single thread alone bounds background work to one core.
fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls about the calling thread; no memory is shared.
        let tid = unsafe { libc::gettid() } as libc::id_t;
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, libc::c_int::from(nice)) } != 0 {
            tracing::warn!("could not lower the priority of a background render thread");
        }
    }
}

fn worker(shared: &Shared) {
    loop {
        // Hold the lock only while taking a job, not while running it. A poisoned lock can
        // only come from a panic inside `recv`, which leaves the receiver usable.
        let job = {
            let guard = shared.receiver.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        match job {
            Ok(job) => {
                if job() {
                    // Replaced while this job ran long: the replacement has our place.
                    shared.abandoned.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
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
    async fn a_timed_out_job_gives_timeout_and_its_worker_is_replaced() {
        let timeout = Duration::from_millis(50);
        let pool = Pool::with_timeout(1, 1, Some(timeout));
        let (started_tx, started_rx) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        // Stuck until released: the pool's only worker.
        let stuck = pool.run(gated(started_tx, gate)).await;
        started_rx.recv().expect("the stuck job ran");
        assert_eq!(stuck, Err(PoolError::Timeout(timeout)));
        assert_eq!(stuck.unwrap_err().code(), "render-timeout");
        // Without a replacement this would wait forever behind the stuck job.
        let next = tokio::time::timeout(Duration::from_secs(10), pool.run(|| 2u32)).await;
        assert_eq!(next.expect("a replacement worker took the job"), Ok(2));
        // The stuck thread stops when its job ends; the pool keeps exactly one worker.
        release.send(()).unwrap();
        for _ in 0..1000 {
            if pool.shared.abandoned.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(pool.shared.abandoned.load(Ordering::Acquire), 0);
        assert_eq!(pool.run(|| 3u32).await, Ok(3));
        // Quick jobs are unaffected by the timeout.
        assert_eq!(pool.run(|| 4u32).await, Ok(4));
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
