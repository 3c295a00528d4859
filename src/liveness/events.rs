//! Counting mouth openings and motion events from per-frame indicators, as the seed's
//! liveness detector does (`shared/PROTOCOL.md`).

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
}
