//! Counting blinks from the eye aspect ratio, frame by frame, with the seed's adaptive
//! threshold: eyes differ from person to person, so after a few frames the threshold follows
//! this person's open-eye ratio.

use std::collections::VecDeque;

/// The seed's constants, by name so each can be tuned and tested.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlinkRules {
    /// Threshold until `window` ratios have been seen.
    pub initial_threshold: f32,
    /// Ratios remembered for the adaptive threshold.
    pub window: usize,
    /// The adaptive threshold is this fraction of the mean of the remembered ratios.
    pub adaptive_fraction: f32,
    /// A blink is a run of at least this many frames under the threshold...
    pub min_closed_frames: usize,
    /// ...and at most this many (longer is eyes closed or looking down, not a blink).
    pub max_closed_frames: usize,
}

impl Default for BlinkRules {
    fn default() -> Self {
        Self {
            initial_threshold: 0.22,
            window: 10,
            adaptive_fraction: 0.75,
            min_closed_frames: 1,
            max_closed_frames: 5,
        }
    }
}

/// One session's blink state.
#[derive(Debug, Clone)]
pub struct BlinkCounter {
    rules: BlinkRules,
    recent: VecDeque<f32>,
    closed_run: usize,
    blinks: usize,
}

/// What one frame's ratio did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlinkUpdate {
    /// The threshold this frame was judged against.
    pub threshold: f32,
    pub eyes_closed: bool,
    /// True on the frame where the eyes reopened after a blink.
    pub blink_completed: bool,
}

impl BlinkCounter {
    pub fn new(rules: BlinkRules) -> Self {
        Self {
            rules,
            recent: VecDeque::with_capacity(rules.window),
            closed_run: 0,
            blinks: 0,
        }
    }

    pub fn blinks(&self) -> usize {
        self.blinks
    }

    /// The threshold the next frame will be judged against.
    pub fn threshold(&self) -> f32 {
        if self.recent.len() < self.rules.window {
            self.rules.initial_threshold
        } else {
            self.rules.adaptive_fraction * self.recent.iter().sum::<f32>()
                / self.recent.len() as f32
        }
    }

    /// Feeds one frame's (both-eye mean) eye aspect ratio.
    pub fn update(&mut self, ratio: f32) -> BlinkUpdate {
        let threshold = self.threshold();
        let eyes_closed = ratio < threshold;
        let mut blink_completed = false;
        if eyes_closed {
            self.closed_run += 1;
        } else {
            let run = std::mem::take(&mut self.closed_run);
            if (self.rules.min_closed_frames..=self.rules.max_closed_frames).contains(&run) {
                self.blinks += 1;
                blink_completed = true;
            }
        }
        if self.recent.len() == self.rules.window {
            self.recent.pop_front();
        }
        self.recent.push_back(ratio);
        BlinkUpdate {
            threshold,
            eyes_closed,
            blink_completed,
        }
    }

    /// A frame that cannot be trusted to show the eyes (see `LivenessRules::max_blink_motion`):
    /// it breaks a run of closed frames, so no blink is counted across it, and it does not
    /// move the adaptive threshold.
    pub fn interrupt(&mut self) {
        self.closed_run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(ratios: &[f32]) -> usize {
        let mut counter = BlinkCounter::new(BlinkRules::default());
        for &r in ratios {
            counter.update(r);
        }
        counter.blinks()
    }

    #[test]
    fn the_threshold_starts_fixed_then_follows_the_last_ten_ratios() {
        let mut counter = BlinkCounter::new(BlinkRules::default());
        for _ in 0..9 {
            counter.update(0.4);
            assert_eq!(counter.threshold(), 0.22);
        }
        counter.update(0.4);
        assert!((counter.threshold() - 0.3).abs() < 1e-6);
        // The window slides: ten more at 0.2 bring it to 0.15.
        for _ in 0..10 {
            counter.update(0.2);
        }
        assert!((counter.threshold() - 0.15).abs() < 1e-6);
    }

    #[test]
    fn a_blink_is_one_to_five_closed_frames_counted_when_the_eyes_reopen() {
        let open = [0.3f32; 10];
        for closed in 1..=5 {
            let mut ratios = open.to_vec();
            ratios.extend(std::iter::repeat_n(0.05, closed));
            assert_eq!(count(&ratios), 0, "not counted before the eyes reopen");
            ratios.push(0.3);
            assert_eq!(count(&ratios), 1, "{closed} closed frames");
        }
        // Six closed frames is not a blink; neither is a ratio exactly at the threshold.
        let mut long = open.to_vec();
        long.extend([0.05; 6]);
        long.push(0.3);
        assert_eq!(count(&long), 0);
        assert_eq!(count(&[0.22, 0.3]), 0);
        assert_eq!(count(&[0.2199, 0.3]), 1);
    }

    #[test]
    fn an_interrupted_run_is_no_blink() {
        let mut counter = BlinkCounter::new(BlinkRules::default());
        for ratio in [0.3; 10] {
            counter.update(ratio);
        }
        counter.update(0.05);
        counter.interrupt();
        counter.update(0.05);
        counter.update(0.3);
        assert_eq!(
            counter.blinks(),
            1,
            "only the run after the interruption counts"
        );
        counter.update(0.05);
        counter.interrupt();
        counter.update(0.3);
        assert_eq!(counter.blinks(), 1);
    }

    #[test]
    fn separate_blinks_each_count() {
        let mut ratios = vec![0.3f32; 10];
        for _ in 0..3 {
            ratios.extend([0.05, 0.05, 0.3, 0.3, 0.3, 0.3]);
        }
        assert_eq!(count(&ratios), 3);
    }
}
