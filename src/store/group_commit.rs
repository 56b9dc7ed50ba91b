//! Group commit: writers that arrive while a commit is running are committed together by
//! the next one, so N concurrent writes cost one transaction (one fsync) instead of N
//! queued one after another.
//!
//! Leader/follower, on the blocking threads the store already runs its IO on: a writer
//! queues its operation; if no commit is running it becomes the leader, takes every queued
//! operation and runs them as one batch; otherwise it sleeps until a leader has committed
//! its operation. Nobody returns before the batch holding its operation has committed, so
//! nothing is acknowledged before it is durable. Knows nothing of what the operations are
//! (the index supplies the batch function).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

pub(super) struct GroupCommit<Op, Out> {
    queue: Mutex<Queue<Op, Out>>,
    committed: Condvar,
}

struct Queue<Op, Out> {
    next: u64,
    pending: Vec<(u64, Op)>,
    done: HashMap<u64, Out>,
    leading: bool,
}

impl<Op, Out> Default for GroupCommit<Op, Out> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                next: 0,
                pending: Vec::new(),
                done: HashMap::new(),
                leading: false,
            }),
            committed: Condvar::new(),
        }
    }
}

impl<Op, Out> GroupCommit<Op, Out> {
    /// Runs `op` in the next batch and returns its outcome once that batch is done.
    /// `batch` gets the operations in arrival order and must return one outcome per
    /// operation, in the same order; `failed` makes the outcome of an operation whose
    /// batch panicked (the panic is re-raised in the leader).
    pub fn run(
        &self,
        op: Op,
        batch: impl FnOnce(Vec<Op>) -> Vec<Out>,
        failed: impl Fn() -> Out,
    ) -> Out {
        let mut queue = self.lock();
        let ticket = queue.next;
        queue.next += 1;
        queue.pending.push((ticket, op));
        let mut batch = Some(batch);
        loop {
            if let Some(out) = queue.done.remove(&ticket) {
                return out;
            }
            if queue.leading {
                queue = self
                    .committed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Our operation is still queued and no commit runs: lead one. (`batch` is
            // only used once: a leader's own operation is always in the batch it leads.)
            let Some(run) = batch.take() else {
                queue = self
                    .committed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            queue.leading = true;
            let (tickets, ops): (Vec<u64>, Vec<Op>) =
                std::mem::take(&mut queue.pending).into_iter().unzip();
            drop(queue);
            let outcome = catch_unwind(AssertUnwindSafe(|| run(ops)));
            queue = self.lock();
            queue.leading = false;
            let panic = match outcome {
                Ok(outs) if outs.len() == tickets.len() => {
                    queue.done.extend(tickets.into_iter().zip(outs));
                    None
                }
                Ok(_) => {
                    queue
                        .done
                        .extend(tickets.into_iter().map(|t| (t, failed())));
                    None
                }
                Err(panic) => {
                    queue
                        .done
                        .extend(tickets.into_iter().map(|t| (t, failed())));
                    Some(panic)
                }
            };
            self.committed.notify_all();
            if let Some(panic) = panic {
                queue.done.remove(&ticket);
                drop(queue);
                resume_unwind(panic);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<Op, Out>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_writers_share_batches_and_each_gets_its_own_outcome() {
        let group: Arc<GroupCommit<u32, u32>> = Arc::default();
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32u32)
            .map(|n| {
                let (group, batches) = (group.clone(), batches.clone());
                std::thread::spawn(move || {
                    let out = group.run(
                        n,
                        |ops| {
                            batches.fetch_add(1, Ordering::Relaxed);
                            // A slow commit, so writers pile up behind it.
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            ops.into_iter().map(|op| op * 10).collect()
                        },
                        || u32::MAX,
                    );
                    assert_eq!(out, n * 10);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let batches = batches.load(Ordering::Relaxed);
        assert!(batches < 32, "32 writers took {batches} batches");
    }

    #[test]
    fn a_panicking_batch_fails_its_writers_and_the_next_batch_runs() {
        let group: GroupCommit<u32, u32> = GroupCommit::default();
        let panicked = catch_unwind(AssertUnwindSafe(|| group.run(1, |_| panic!("boom"), || 0)));
        assert!(panicked.is_err());
        assert_eq!(group.run(2, |ops| ops, || 0), 2);
    }
}
