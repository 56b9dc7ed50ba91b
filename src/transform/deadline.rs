//! The render deadline: a point in time that the long-running steps of a render check
//! between units of work (JPEG markers and rows, GIF frames, pipeline steps).
//!
//! Owns only the clock arithmetic and the typed error. Checking is cooperative: code that
//! never calls [`Deadline::check`] (inside a decoder or encoder that has no hook, such as
//! `image`'s PNG decoder or libwebp's encoder) runs to its end; [`Pool`](super::Pool)
//! stops waiting for it and replaces the worker instead.

use std::time::{Duration, Instant};

use super::TransformError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    /// The configured budget, for the error message.
    secs: u64,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub(crate) fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            secs: budget.as_secs(),
        }
    }

    /// `Timeout` once the deadline has passed. Costs one clock read (~25 ns).
    pub(crate) fn check(&self) -> Result<(), TransformError> {
        if Instant::now() >= self.at {
            return Err(TransformError::Timeout { secs: self.secs });
        }
        Ok(())
    }
}
