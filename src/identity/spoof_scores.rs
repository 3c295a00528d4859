//! The anti-spoofing scores one session gathers: a few of its good frames, spread over the
//! whole session, judged by the anti-spoofing networks, and their mean as the session's score.
//!
//! A presentation attack (a print, a phone or tablet replaying a video) is there for the whole
//! session, so a few frames show it. Those few are few indeed (the check costs two or three
//! frames' mesh): of three scores a median is one frame's, and a replay whose frames score
//! low, middling and high passes on its middling one. The mean counts every frame judged, so
//! each frame that shows the attack pulls the session down; a live face scores near 1 on
//! almost every frame, so one stray frame of it moves the mean of three by a third at most.
//! The first usable frame is judged, so that even the shortest session has a score, then one
//! in every `CHECK_EVERY`.

use crate::identity::session_faces::thin_out;

/// Usable frames between two checks at first. On the CPU a check (both networks) costs about
/// as much as two or three tracked frames of the mesh (`BENCHMARKS.md`): one in forty keeps it
/// under 5% of a verification's device time, and still judges a sign-in of ten seconds at ten
/// frames a second three times, at its start, middle and end.
pub const CHECK_EVERY: usize = 40;

/// Scores held at most; past it every other one goes and the spacing doubles, so that the ones
/// held stay spread over the whole session however long it runs.
pub const MAX_HELD: usize = 16;

#[derive(Debug)]
pub struct SpoofScores {
    held: Vec<f32>,
    spacing: usize,
    /// Usable frames to go before the next check is asked for.
    frames_to_next: usize,
}

impl Default for SpoofScores {
    fn default() -> Self {
        Self {
            held: Vec::new(),
            spacing: CHECK_EVERY,
            frames_to_next: 0,
        }
    }
}

impl SpoofScores {
    /// Whether the next frame should bring its face's anti-spoofing score.
    pub fn wants_score(&self) -> bool {
        self.frames_to_next == 0
    }

    /// A usable frame that brought no score because none was asked of it.
    pub fn pass_frame(&mut self) {
        self.frames_to_next = self.frames_to_next.saturating_sub(1);
    }

    /// A usable frame's score (0 spoof .. 1 real).
    pub fn take(&mut self, score: f32) {
        self.held.push(score);
        self.frames_to_next = self.spacing - 1;
        thin_out(&mut self.held, MAX_HELD, &mut self.spacing);
    }

    /// Scores held.
    pub fn count(&self) -> usize {
        self.held.len()
    }

    /// The mean of the scores held; `None` before the first.
    pub fn mean(&self) -> Option<f32> {
        (!self.held.is_empty()).then(|| self.held.iter().sum::<f32>() / self.held.len() as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `frames` usable frames, each scoring `score(i)` when asked.
    fn session(frames: usize, score: impl Fn(usize) -> f32) -> SpoofScores {
        let mut scores = SpoofScores::default();
        for frame in 0..frames {
            if scores.wants_score() {
                scores.take(score(frame));
            } else {
                scores.pass_frame();
            }
        }
        scores
    }

    #[test]
    fn the_first_frame_and_then_one_in_forty_are_judged() {
        assert_eq!(session(1, |_| 0.9).count(), 1);
        assert_eq!(session(95, |_| 0.9).count(), 3);
    }

    #[test]
    fn a_long_session_keeps_its_scores_spread_and_few() {
        let scores = session(100_000, |frame| frame as f32);
        assert!(scores.count() < MAX_HELD);
        // Still reaching from the start to near the end of the session.
        assert_eq!(scores.held[0], 0.0);
        assert!(*scores.held.last().unwrap() > 80_000.0, "{:?}", scores.held);
    }

    #[test]
    fn every_frame_judged_counts_in_the_mean() {
        // A live face with one stray frame still scores live.
        let live = session(200, |frame| if frame == 80 { 0.0 } else { 0.9 });
        assert_eq!(live.count(), 5);
        assert!((live.mean().unwrap() - 0.72).abs() < 1e-6);
        // A replay with one frame that fooled the networks still scores an attack.
        let replay = session(95, |frame| if frame == 40 { 0.8 } else { 0.1 });
        assert!((replay.mean().unwrap() - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(SpoofScores::default().mean(), None);
    }
}
