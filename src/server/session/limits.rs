//! What one session may send: frame size, rate, total, and how many frames may wait behind the
//! one on the device; and a session's use of them so far, as a plain struct with time passed
//! in, so that each rule is tested directly.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A session's limits. Every field is a flag of `serve` and an environment variable; the doc
/// comments are the `--help` text.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Session limits")]
pub struct SessionLimits {
    /// Largest encoded frame accepted, in bytes (413 above).
    #[arg(long, env = "FACE_SERVICE_MAX_FRAME_BYTES", default_value_t = 4 << 20)]
    pub max_frame_bytes: usize,
    /// Frames per second one session may send (429 above), as the seed.
    #[arg(long, env = "FACE_SERVICE_MAX_FPS", default_value_t = 10.0)]
    pub max_fps: f32,
    /// Frames one session may send before it is closed with 4429, as the seed (0: no limit).
    #[arg(
        long,
        env = "FACE_SERVICE_MAX_FRAMES_PER_SESSION",
        default_value_t = 120
    )]
    pub max_frames_per_session: u64,
    /// Pixels one session's frames may have in any second, read from their headers before
    /// they are decoded (429 above; 0: no limit). Decoding costs by the pixel, so a session
    /// of small files that decode to huge frames is held back before it costs the others.
    /// The default takes 1080p at 10 frames a second.
    #[arg(
        long,
        env = "FACE_SERVICE_MAX_PIXELS_PER_SECOND",
        default_value_t = 25_000_000
    )]
    pub max_pixels_per_second: u64,
    /// Seconds without a message after which a session is closed (4401).
    #[arg(long, env = "FACE_SERVICE_SESSION_TIMEOUT_SECS", default_value_t = 300)]
    pub session_timeout_secs: u64,
    /// Seconds one answer may take to go out before the session is dropped: a client that
    /// stops reading would otherwise hold its socket, its frames and its buffers for ever.
    #[arg(long, env = "FACE_SERVICE_SEND_TIMEOUT_SECS", default_value_t = 10)]
    pub send_timeout_secs: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 4 << 20,
            max_fps: 10.0,
            max_frames_per_session: 120,
            max_pixels_per_second: 25_000_000,
            session_timeout_secs: 300,
            send_timeout_secs: 10,
        }
    }
}

/// Frames a session may have waiting behind the one on the device: enough to ride out a
/// batch's delay, few enough that a client sending faster than it is answered learns it at
/// once (429).
pub const MAX_WAITING_FRAMES: usize = 4;

/// Why a frame was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// The session has sent all the frames it may: it ends.
    BudgetUsed,
    /// Over the rate: this frame is refused, the session goes on.
    TooFast,
    /// Too many of the session's frames already wait: this one is refused, the session goes on.
    Backlog,
    /// The frame's pixels would take the session past its pixels per second.
    TooManyPixels,
}

/// A session's use of its limits.
#[derive(Debug)]
pub struct Allowance {
    max_fps: f32,
    max_frames: u64,
    accepted: u64,
    /// When the frames taken in the last second arrived, oldest first.
    recent: VecDeque<Instant>,
    max_pixels: u64,
    /// When the frames of the last second whose pixels were taken arrived, and their pixels.
    recent_pixels: VecDeque<(Instant, u64)>,
}

impl Allowance {
    pub fn new(limits: &SessionLimits) -> Self {
        Self {
            max_fps: limits.max_fps,
            max_frames: limits.max_frames_per_session,
            accepted: 0,
            recent: VecDeque::new(),
            max_pixels: limits.max_pixels_per_second,
            recent_pixels: VecDeque::new(),
        }
    }

    /// Takes a frame of `pixels` arriving at `now`, or refuses it for the session's pixels
    /// per second; a refused frame's pixels do not count.
    pub fn take_pixels(&mut self, now: Instant, pixels: u64) -> Result<(), LimitHit> {
        if self.max_pixels == 0 {
            return Ok(());
        }
        while self
            .recent_pixels
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent_pixels.pop_front();
        }
        let in_last_second: u64 = self.recent_pixels.iter().map(|(_, p)| p).sum();
        if in_last_second + pixels > self.max_pixels {
            return Err(LimitHit::TooManyPixels);
        }
        self.recent_pixels.push_back((now, pixels));
        Ok(())
    }

    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// Takes a frame arriving at `now` with `waiting` of the session's frames already waiting,
    /// or says which limit it hits. A refused frame does not count against the rate or the
    /// budget.
    pub fn take(&mut self, now: Instant, waiting: usize) -> Result<(), LimitHit> {
        if self.max_frames > 0 && self.accepted >= self.max_frames {
            return Err(LimitHit::BudgetUsed);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() as f32 >= self.max_fps {
            return Err(LimitHit::TooFast);
        }
        if waiting >= MAX_WAITING_FRAMES {
            return Err(LimitHit::Backlog);
        }
        self.recent.push_back(now);
        self.accepted += 1;
        Ok(())
    }

    pub fn max_fps(&self) -> f32 {
        self.max_fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance(max_fps: f32, max_frames_per_session: u64) -> Allowance {
        Allowance::new(&SessionLimits {
            max_fps,
            max_frames_per_session,
            ..SessionLimits::default()
        })
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_rate_counts_the_frames_taken_in_the_last_second() {
        let mut allowance = allowance(2.0, 0);
        let t0 = Instant::now();
        assert_eq!(allowance.take(t0, 0), Ok(()));
        assert_eq!(allowance.take(t0 + 100 * MS, 0), Ok(()));
        assert_eq!(allowance.take(t0 + 200 * MS, 0), Err(LimitHit::TooFast));
        // The refused frame did not count: a second after the first, one slot is free again.
        assert_eq!(allowance.take(t0 + 1000 * MS, 0), Ok(()));
        assert_eq!(allowance.take(t0 + 1050 * MS, 0), Err(LimitHit::TooFast));
        assert_eq!(allowance.take(t0 + 1100 * MS, 0), Ok(()));
    }

    #[test]
    fn the_budget_ends_the_session_after_its_last_frame() {
        let mut allowance = allowance(100.0, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(allowance.take(t0 + i * 100 * MS, 0), Ok(()));
        }
        assert_eq!(allowance.take(t0 + 400 * MS, 0), Err(LimitHit::BudgetUsed));
    }

    #[test]
    fn no_budget_means_no_end() {
        let mut allowance = allowance(1000.0, 0);
        let t0 = Instant::now();
        for i in 0..500 {
            assert_eq!(allowance.take(t0 + i * 10 * MS, 0), Ok(()));
        }
    }

    #[test]
    fn pixels_are_counted_over_the_last_second() {
        let mut allowance = allowance_of(1000);
        let t0 = Instant::now();
        assert_eq!(allowance.take_pixels(t0, 600), Ok(()));
        assert_eq!(
            allowance.take_pixels(t0 + 10 * MS, 600),
            Err(LimitHit::TooManyPixels)
        );
        assert_eq!(allowance.take_pixels(t0 + 20 * MS, 400), Ok(()));
        assert_eq!(allowance.take_pixels(t0 + 1000 * MS, 600), Ok(()));
        let mut unlimited = allowance_of(0);
        assert_eq!(unlimited.take_pixels(t0, u64::MAX / 2), Ok(()));
    }

    fn allowance_of(max_pixels_per_second: u64) -> Allowance {
        Allowance::new(&SessionLimits {
            max_pixels_per_second,
            ..SessionLimits::default()
        })
    }

    #[test]
    fn a_backlog_refuses_without_spending_the_rate_or_the_budget() {
        let mut allowance = allowance(2.0, 2);
        let t0 = Instant::now();
        assert_eq!(
            allowance.take(t0, MAX_WAITING_FRAMES),
            Err(LimitHit::Backlog)
        );
        assert_eq!(allowance.take(t0, MAX_WAITING_FRAMES - 1), Ok(()));
        assert_eq!(allowance.take(t0 + MS, 0), Ok(()));
        assert_eq!(allowance.take(t0 + 2 * MS, 0), Err(LimitHit::BudgetUsed));
    }
}
