//! Counting mouth openings, motion events, head turns and holding still from per-frame
//! indicators, as the seed's liveness detector does (`shared/PROTOCOL.md`).

use std::time::Duration;

/// Mouth openings: the mouth aspect ratio rising above `open_above` counts one opening; the
/// next one needs the mouth to close first (ratio below `closed_below`), so jitter around the
/// threshold is not counted twice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthRules {
    pub open_above: f32,
    pub closed_below: f32,
}

impl Default for MouthRules {
    fn default() -> Self {
        // A closed mouth measures under 0.05, a mouth opened to speak or on request 0.3-0.6.
        Self {
            open_above: 0.3,
            closed_below: 0.2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MouthCounter {
    rules: MouthRules,
    open: bool,
    openings: usize,
}

impl MouthCounter {
    pub fn new(rules: MouthRules) -> Self {
        Self {
            rules,
            open: false,
            openings: 0,
        }
    }

    pub fn openings(&self) -> usize {
        self.openings
    }

    /// Feeds one frame's mouth aspect ratio; true on the frame an opening is counted.
    pub fn update(&mut self, ratio: f32) -> bool {
        if !self.open && ratio > self.rules.open_above {
            self.open = true;
            self.openings += 1;
            return true;
        }
        if self.open && ratio < self.rules.closed_below {
            self.open = false;
        }
        false
    }
}

/// Motion events: a frame whose face moved at least `min_motion` (box-centre shift over box
/// diagonal) counts, if the last event was at least `min_interval` earlier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionRules {
    pub min_motion: f32,
    pub min_interval: Duration,
}

impl Default for MotionRules {
    fn default() -> Self {
        Self {
            min_motion: 0.015,
            min_interval: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MotionCounter {
    rules: MotionRules,
    last_event: Option<Duration>,
    events: usize,
}

impl MotionCounter {
    pub fn new(rules: MotionRules) -> Self {
        Self {
            rules,
            last_event: None,
            events: 0,
        }
    }

    pub fn events(&self) -> usize {
        self.events
    }

    /// Feeds one frame's motion at `time` (since the session began); true when it counts.
    pub fn update(&mut self, motion: f32, time: Duration) -> bool {
        let spaced = self
            .last_event
            .is_none_or(|last| time.saturating_sub(last) >= self.rules.min_interval);
        if motion >= self.rules.min_motion && spaced {
            self.last_event = Some(time);
            self.events += 1;
            return true;
        }
        false
    }
}

/// Which way the head turned, in the person's own terms (see `pose::HeadPose::yaw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// Head turns: a yaw beyond `turn_degrees` to one side for `frames_in_a_row` frames counts one
/// turn that way; the next turn counts only after the head came back within `centre_degrees`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnRules {
    pub turn_degrees: f32,
    pub centre_degrees: f32,
    pub frames_in_a_row: usize,
}

impl Default for TurnRules {
    /// Talking heads wander by up to 10 degrees (the carphone clip: -10 to +9.5), so a
    /// deliberate turn starts at 15.
    fn default() -> Self {
        Self {
            turn_degrees: 15.0,
            centre_degrees: 7.0,
            frames_in_a_row: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TurnCounter {
    rules: TurnRules,
    run: Option<(Side, usize)>,
    back_at_centre: bool,
    left: usize,
    right: usize,
}

impl TurnCounter {
    pub fn new(rules: TurnRules) -> Self {
        Self {
            rules,
            run: None,
            back_at_centre: true,
            left: 0,
            right: 0,
        }
    }

    pub fn turns(&self, side: Side) -> usize {
        match side {
            Side::Left => self.left,
            Side::Right => self.right,
        }
    }

    /// Feeds one frame's yaw in degrees; the side of a turn counted on this frame.
    pub fn update(&mut self, yaw: f32) -> Option<Side> {
        if yaw.abs() < self.rules.centre_degrees {
            self.back_at_centre = true;
        }
        let side = if yaw >= self.rules.turn_degrees {
            Side::Left
        } else if yaw <= -self.rules.turn_degrees {
            Side::Right
        } else {
            self.run = None;
            return None;
        };
        if !self.back_at_centre {
            return None;
        }
        let frames = match self.run {
            Some((running, frames)) if running == side => frames + 1,
            _ => 1,
        };
        self.run = Some((side, frames));
        if frames < self.rules.frames_in_a_row {
            return None;
        }
        self.run = None;
        self.back_at_centre = false;
        match side {
            Side::Left => self.left += 1,
            Side::Right => self.right += 1,
        }
        Some(side)
    }
}

/// Holding still: `frames` frames in a row whose motion stays under `max_motion` and whose
/// quality score reaches `min_quality` count as one hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StillnessRules {
    pub max_motion: f32,
    pub min_quality: f32,
    pub frames: usize,
}

impl Default for StillnessRules {
    /// Under the motion events' 0.015, so that holding still and moving cannot both count.
    fn default() -> Self {
        Self {
            max_motion: 0.01,
            min_quality: 0.5,
            frames: 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StillnessCounter {
    rules: StillnessRules,
    still_frames: usize,
    holds: usize,
}

impl StillnessCounter {
    pub fn new(rules: StillnessRules) -> Self {
        Self {
            rules,
            still_frames: 0,
            holds: 0,
        }
    }

    pub fn holds(&self) -> usize {
        self.holds
    }

    /// Frames in the current still run.
    pub fn still_frames(&self) -> usize {
        self.still_frames
    }

    /// Feeds one frame's motion and quality score; true on the frame a hold is counted.
    pub fn update(&mut self, motion: f32, quality: f32) -> bool {
        if motion >= self.rules.max_motion || quality < self.rules.min_quality {
            self.still_frames = 0;
            return false;
        }
        self.still_frames += 1;
        if self.still_frames == self.rules.frames {
            self.holds += 1;
            return true;
        }
        false
    }

    /// A frame without a usable face breaks the run.
    pub fn interrupt(&mut self) {
        self.still_frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opening_counts_once_until_the_mouth_closes_again() {
        let mut mouth = MouthCounter::new(MouthRules::default());
        let ratios = [0.02, 0.35, 0.28, 0.32, 0.25, 0.1, 0.4, 0.3];
        let counted: Vec<bool> = ratios.iter().map(|&r| mouth.update(r)).collect();
        assert_eq!(
            counted,
            [false, true, false, false, false, false, true, false]
        );
        assert_eq!(mouth.openings(), 2);
        // Exactly at the threshold is not open.
        assert!(!MouthCounter::new(MouthRules::default()).update(0.3));
    }

    #[test]
    fn motion_events_need_enough_motion_and_spacing() {
        let mut motion = MotionCounter::new(MotionRules::default());
        let ms = Duration::from_millis;
        assert!(!motion.update(0.0149, ms(0)));
        assert!(motion.update(0.015, ms(100)));
        assert!(
            !motion.update(0.5, ms(299)),
            "under 0.2 s after the last event"
        );
        assert!(motion.update(0.5, ms(300)));
        assert_eq!(motion.events(), 2);
    }

    #[test]
    fn a_turn_needs_three_frames_beyond_the_threshold_and_a_return_to_centre() {
        let mut turns = TurnCounter::new(TurnRules::default());
        let counted: Vec<Option<Side>> = [16.0, 16.0, 14.9, 16.0, 16.0, 16.0, 30.0, 30.0, 30.0]
            .iter()
            .map(|&yaw| turns.update(yaw))
            .collect();
        let expected = [
            None,
            None,
            None,
            None,
            None,
            Some(Side::Left),
            None,
            None,
            None,
        ];
        assert_eq!(
            counted, expected,
            "the run broke at 14.9; no second turn before centre"
        );
        // Exactly at 15 is a turn; back within 7 degrees re-arms; the other side counts apart.
        for yaw in [6.9, -15.0, -15.0, -15.0, 7.0, 20.0, 20.0] {
            turns.update(yaw);
        }
        assert_eq!((turns.turns(Side::Left), turns.turns(Side::Right)), (1, 1));
        assert_eq!(turns.update(20.0), None, "7.0 is not back at centre");
    }

    #[test]
    fn a_switch_of_side_restarts_the_run() {
        let mut turns = TurnCounter::new(TurnRules::default());
        for yaw in [20.0, 20.0, -20.0, -20.0] {
            assert_eq!(turns.update(yaw), None);
        }
        assert_eq!(turns.update(-20.0), Some(Side::Right));
    }

    #[test]
    fn a_hold_is_eight_still_good_frames_in_a_row() {
        let mut still = StillnessCounter::new(StillnessRules::default());
        for _ in 0..7 {
            assert!(!still.update(0.0099, 0.5));
        }
        // Too much motion, or too poor a frame, starts over.
        assert!(!still.update(0.01, 0.9));
        for _ in 0..7 {
            still.update(0.0, 0.9);
        }
        assert!(!still.update(0.0, 0.49));
        still.interrupt();
        let counted: Vec<bool> = (0..9).map(|_| still.update(0.0, 0.9)).collect();
        assert_eq!(counted.iter().filter(|&&c| c).count(), 1);
        assert!(counted[7]);
        assert_eq!((still.holds(), still.still_frames()), (1, 9));
    }
}
