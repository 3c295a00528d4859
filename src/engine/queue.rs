//! The batching queue's state, as a plain struct: what waits for one model, and the decision
//! of what to run next. No channels, no clock, no device: time comes in as an argument, so
//! every rule is unit-tested directly (the shape of text-generation-inference's queue `State`).
//!
//! The rules, in the order `next_batch` applies them:
//! 1. a frame past its deadline, or from a session that has closed, is dropped before it costs
//!    device time, and reported so its session can be answered;
//! 2. a batch is whatever waits, up to `max_batch`;
//! 3. a batch smaller than `max_batch` is held back until its oldest frame has waited
//!    `max_delay`, so that frames arriving together share one dispatch.
//!
//! `push` refuses a frame when `capacity` frames already wait: the caller answers "overloaded"
//! at once instead of letting the queue, and every frame's latency, grow.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Identifies the session a frame came from.
pub type SessionId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub max_batch: usize,
    pub max_delay: Duration,
    pub capacity: usize,
}

/// A frame (or any work item) waiting in the queue.
#[derive(Debug, PartialEq)]
pub struct Waiting<T> {
    pub item: T,
    pub session: SessionId,
    pub enqueued: Instant,
    pub deadline: Instant,
}

/// Why a waiting item was dropped without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    DeadlinePassed,
    SessionClosed,
}

/// The queue is full: answer the client "overloaded" (503) now. Carries the refused item back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

/// What the device worker should do now.
#[derive(Debug, PartialEq)]
pub enum Next<T> {
    /// Run these, oldest first.
    Run(Vec<Waiting<T>>),
    /// Nothing is ready; look again at this instant (or when something new arrives).
    WaitUntil(Instant),
    /// The queue is empty.
    Idle,
}

#[derive(Debug)]
pub struct BatchQueue<T> {
    limits: QueueLimits,
    waiting: VecDeque<Waiting<T>>,
}

impl<T> BatchQueue<T> {
    pub fn new(limits: QueueLimits) -> Self {
        assert!(limits.max_batch > 0 && limits.capacity > 0, "empty limits");
        Self {
            limits,
            waiting: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues `item`, or refuses it when the queue is at capacity.
    pub fn push(
        &mut self,
        item: T,
        session: SessionId,
        now: Instant,
        deadline: Instant,
    ) -> Result<(), QueueFull<T>> {
        if self.waiting.len() >= self.limits.capacity {
            return Err(QueueFull(item));
        }
        self.waiting.push_back(Waiting {
            item,
            session,
            enqueued: now,
            deadline,
        });
        Ok(())
    }

    /// Removes what can no longer be useful, and decides whether a batch runs now. Dropped
    /// items come back in `dropped` whatever the decision.
    pub fn next_batch(
        &mut self,
        now: Instant,
        session_is_open: impl Fn(&Waiting<T>) -> bool,
        dropped: &mut Vec<(Waiting<T>, DropReason)>,
    ) -> Next<T> {
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for waiting in self.waiting.drain(..) {
            if !session_is_open(&waiting) {
                dropped.push((waiting, DropReason::SessionClosed));
            } else if waiting.deadline <= now {
                dropped.push((waiting, DropReason::DeadlinePassed));
            } else {
                kept.push_back(waiting);
            }
        }
        self.waiting = kept;
        let Some(oldest) = self.waiting.front() else {
            return Next::Idle;
        };
        let ready_at = oldest.enqueued + self.limits.max_delay;
        if self.waiting.len() < self.limits.max_batch && now < ready_at {
            return Next::WaitUntil(ready_at);
        }
        let take = self.waiting.len().min(self.limits.max_batch);
        Next::Run(self.waiting.drain(..take).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn queue(max_batch: usize, max_delay_ms: u64, capacity: usize) -> BatchQueue<&'static str> {
        BatchQueue::new(QueueLimits {
            max_batch,
            max_delay: MS * max_delay_ms as u32,
            capacity,
        })
    }

    fn items(next: Next<&'static str>) -> Vec<&'static str> {
        match next {
            Next::Run(batch) => batch.into_iter().map(|w| w.item).collect(),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn a_lone_frame_waits_at_most_the_max_delay() {
        let t0 = Instant::now();
        let mut q = queue(8, 5, 100);
        q.push("a", 1, t0, t0 + 1000 * MS).unwrap();
        let mut dropped = Vec::new();
        assert_eq!(
            q.next_batch(t0 + MS, |_| true, &mut dropped),
            Next::WaitUntil(t0 + 5 * MS)
        );
        assert_eq!(
            items(q.next_batch(t0 + 5 * MS, |_| true, &mut dropped)),
            ["a"]
        );
        assert_eq!(
            q.next_batch(t0 + 6 * MS, |_| true, &mut dropped),
            Next::Idle
        );
    }

    #[test]
    fn a_full_batch_runs_at_once_oldest_first_and_the_rest_waits() {
        let t0 = Instant::now();
        let mut q = queue(2, 50, 100);
        for (i, item) in ["a", "b", "c"].into_iter().enumerate() {
            q.push(item, i as u64, t0 + MS * i as u32, t0 + 1000 * MS)
                .unwrap();
        }
        let mut dropped = Vec::new();
        assert_eq!(
            items(q.next_batch(t0 + 3 * MS, |_| true, &mut dropped)),
            ["a", "b"]
        );
        assert_eq!(
            q.next_batch(t0 + 3 * MS, |_| true, &mut dropped),
            Next::WaitUntil(t0 + 52 * MS)
        );
        assert!(dropped.is_empty());
    }

    #[test]
    fn late_frames_and_closed_sessions_are_dropped_before_running() {
        let t0 = Instant::now();
        let mut q = queue(8, 0, 100);
        q.push("late", 1, t0, t0 + 2 * MS).unwrap();
        q.push("closed", 2, t0, t0 + 100 * MS).unwrap();
        q.push("fine", 3, t0, t0 + 100 * MS).unwrap();
        let mut dropped = Vec::new();
        assert_eq!(
            items(q.next_batch(t0 + 2 * MS, |w| w.session != 2, &mut dropped)),
            ["fine"]
        );
        let reasons: Vec<_> = dropped.iter().map(|(w, why)| (w.item, *why)).collect();
        assert_eq!(
            reasons,
            [
                ("late", DropReason::DeadlinePassed),
                ("closed", DropReason::SessionClosed)
            ]
        );
    }

    #[test]
    fn a_full_queue_refuses_instead_of_growing() {
        let t0 = Instant::now();
        let mut q = queue(8, 5, 2);
        q.push("a", 1, t0, t0 + MS).unwrap();
        q.push("b", 1, t0, t0 + MS).unwrap();
        assert_eq!(q.push("c", 1, t0, t0 + MS), Err(QueueFull("c")));
        assert_eq!(q.len(), 2);
    }
}
