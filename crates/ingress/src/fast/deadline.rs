//! Timeouts that cost no timer operation per request.
//!
//! `tokio::time::timeout` arms a fresh timer-wheel entry for every wait and removes it when
//! the wait ends; the fast path waits twice per request (the client's next head, the
//! upstream's response head), and that churn was a measurable share of a proxied request's
//! CPU. A [`LazyDeadline`] keeps one timer per connection armed, possibly earlier than the
//! current wait's deadline: when it fires, the current deadline is checked, and only then is
//! the timer moved. So a connection touches the timer wheel about once per timeout period
//! instead of twice per request, with the same guarantee: a wait never outlives its limit.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One reusable timer for successive waits of one connection.
pub struct LazyDeadline {
    timer: Pin<Box<Sleep>>,
}

impl Default for LazyDeadline {
    fn default() -> Self {
        // Not registered with the timer wheel until first polled.
        LazyDeadline { timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))) }
    }
}

impl LazyDeadline {
    /// Runs `future` to completion, or gives up with `None` once `limit` has passed.
    pub async fn run<F: Future>(&mut self, limit: Duration, future: F) -> Option<F::Output> {
        self.run_until(Instant::now() + limit, future).await
    }

    /// Runs `future` to completion, or gives up with `None` at `deadline`.
    pub async fn run_until<F: Future>(&mut self, deadline: Instant, future: F) -> Option<F::Output> {
        // The armed timer may fire before `deadline` (it was set for an earlier wait), never
        // after it: otherwise move it now.
        if self.timer.is_elapsed() || self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        let mut future = std::pin::pin!(future);
        loop {
            tokio::select! {
                biased;
                output = &mut future => return Some(output),
                () = self.timer.as_mut() => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn gives_up_at_each_waits_own_limit() {
        let mut deadline = LazyDeadline::default();
        assert_eq!(deadline.run(Duration::from_secs(5), async { 1 }).await, Some(1));
        // A wait that outlives its limit ends at the limit, even though the timer was armed
        // by the earlier wait.
        let started = Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(deadline.run(Duration::from_secs(5), never).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Waits shorter than the limit succeed, one after another, past many earlier deadlines.
        for _ in 0..10 {
            let slow = tokio::time::sleep(Duration::from_secs(4));
            assert_eq!(deadline.run(Duration::from_secs(5), slow).await, Some(()));
        }
        // A shorter limit than the armed timer's moves the timer.
        let started = Instant::now();
        assert_eq!(deadline.run(Duration::from_secs(1), std::future::pending::<()>()).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
