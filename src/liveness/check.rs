//! One session's liveness check: fed one frame at a time, it keeps every counter and says how
//! far the session has come.
//!
//! Two kinds of session, as the seed has them:
//! - **enrollment** walks through challenges in order (blink, open the mouth, turn left, turn
//!   right, hold still); each done adds its weight to the score, and all done is a pass. Or,
//!   where its rules say so, it asks what the seed's enrollment asks: a number of good frames,
//!   a blink and a motion event;
//! - **authentication** asks for blinks and motion events within a timeout, the score being
//!   their weighted share of what is required.
//!
//! A pass says only that a live person was in front of the camera; matching who it is comes
//! after (`identity`), from `Verdict::Passed`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::liveness::blinks::{BlinkCounter, BlinkRules, BlinkUpdate};
use crate::liveness::events::{
    MotionCounter, MotionRules, MouthCounter, MouthRules, Side, StillnessCounter, StillnessRules,
    TurnCounter, TurnRules,
};
use crate::liveness::indicators::{
    LEFT_EYE, MOUTH, RIGHT_EYE, eye_aspect_ratio, motion, mouth_aspect_ratio,
};
use crate::liveness::pose::HeadPose;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Enrollment,
    Authentication,
}

impl SessionKind {
    pub fn name(self) -> &'static str {
        match self {
            SessionKind::Enrollment => "enrollment",
            SessionKind::Authentication => "authentication",
        }
    }
}

/// The enrollment challenges, in the order they are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Challenge {
    Blink,
    OpenMouth,
    TurnLeft,
    TurnRight,
    HoldStill,
}

impl Challenge {
    pub const SEQUENCE: [Challenge; 5] = [
        Challenge::Blink,
        Challenge::OpenMouth,
        Challenge::TurnLeft,
        Challenge::TurnRight,
        Challenge::HoldStill,
    ];

    /// What to ask of the person in front of the camera.
    pub fn instruction(self) -> &'static str {
        match self {
            Challenge::Blink => "Blink your eyes",
            Challenge::OpenMouth => "Open your mouth",
            Challenge::TurnLeft => "Turn your head to your left, then back",
            Challenge::TurnRight => "Turn your head to your right, then back",
            Challenge::HoldStill => "Look at the camera and hold still",
        }
    }
}

/// How much each challenge adds to an enrollment's score; they sum to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChallengeWeights {
    pub blink: f32,
    pub open_mouth: f32,
    pub turn_left: f32,
    pub turn_right: f32,
    pub hold_still: f32,
}

impl ChallengeWeights {
    fn of(&self, challenge: Challenge) -> f32 {
        match challenge {
            Challenge::Blink => self.blink,
            Challenge::OpenMouth => self.open_mouth,
            Challenge::TurnLeft => self.turn_left,
            Challenge::TurnRight => self.turn_right,
            Challenge::HoldStill => self.hold_still,
        }
    }
}

/// Every constant of the check, by name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessRules {
    pub blinks: BlinkRules,
    pub mouth: MouthRules,
    pub motion: MotionRules,
    pub turns: TurnRules,
    pub stillness: StillnessRules,
    /// A frame whose face moved more than this (box-centre shift over box diagonal) since the
    /// last cannot show a closed eye: tracking lags a fast-moving face, and its eye landmarks
    /// sag enough to read as a blink (a printed photo waved about did, in
    /// `tests/liveness.rs`). The seed has no such guard; twice the most the carphone clip's
    /// talking head moves between frames (0.03) leaves its blinks untouched.
    pub max_blink_motion: f32,
    /// Whether enrollment walks through the challenges, or asks for blinks and motion events
    /// as the seed's does.
    pub enrollment_challenges: bool,
    /// Blinks the enrollment's blink challenge (or the seed's rule) asks for.
    pub enrollment_blinks: usize,
    /// Motion events the seed's enrollment rule asks for.
    pub enrollment_motion_events: usize,
    pub challenge_weights: ChallengeWeights,
    /// Usable frames (a face, good quality) a session must have seen before it passes: the
    /// seed's `target_samples` for enrollment, `min_frames_required` for authentication.
    pub min_frames: usize,
    /// What authentication asks for, and how long it may take from the session's start.
    pub authentication_blinks: usize,
    pub authentication_motion_events: usize,
    pub authentication_timeout: Duration,
    /// The authentication score's share for blinks; motion has the rest.
    pub authentication_blink_weight: f32,
}

impl Default for LivenessRules {
    fn default() -> Self {
        Self {
            blinks: BlinkRules::default(),
            mouth: MouthRules::default(),
            motion: MotionRules::default(),
            turns: TurnRules::default(),
            stillness: StillnessRules::default(),
            max_blink_motion: 0.06,
            enrollment_challenges: true,
            enrollment_blinks: 1,
            enrollment_motion_events: 1,
            min_frames: 0,
            challenge_weights: ChallengeWeights {
                blink: 0.25,
                open_mouth: 0.2,
                turn_left: 0.2,
                turn_right: 0.2,
                hold_still: 0.15,
            },
            authentication_blinks: 2,
            authentication_motion_events: 2,
            authentication_timeout: Duration::from_secs(30),
            authentication_blink_weight: 0.6,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    InProgress,
    /// Liveness is proven; in an issued session the identity step follows.
    Passed,
    /// Authentication ran out of time.
    TimedOut,
}

/// One frame's raw measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Indicators {
    pub eye_aspect_ratio_left: f32,
    pub eye_aspect_ratio_right: f32,
    pub eye_aspect_ratio: f32,
    pub blink_threshold: f32,
    pub eyes_closed: bool,
    pub mouth_aspect_ratio: f32,
    pub head_pose: HeadPose,
    pub motion: f32,
}

/// Where an enrollment stands in its challenge sequence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChallengeProgress {
    /// The challenge asked now; `None` once all are done.
    pub current: Option<Challenge>,
    pub instruction: Option<&'static str>,
    pub completed: Vec<Challenge>,
    /// Completed over total, 0 to 1.
    pub progress: f32,
}

/// The session's progress after a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub verdict: Verdict,
    pub liveness_verified: bool,
    pub liveness_score: f32,
    pub blinks_detected: usize,
    pub blinks_required: usize,
    pub motion_events: usize,
    pub motion_events_required: usize,
    pub mouth_openings: usize,
    pub turns_left: usize,
    pub turns_right: usize,
    pub still_frames: usize,
    /// For enrollment sessions.
    pub challenge: Option<ChallengeProgress>,
    /// What to tell the person now.
    pub message: &'static str,
}

pub struct LivenessCheck {
    kind: SessionKind,
    rules: LivenessRules,
    blinks: BlinkCounter,
    mouth: MouthCounter,
    motion: MotionCounter,
    turns: TurnCounter,
    stillness: StillnessCounter,
    last_box: Option<[f32; 4]>,
    usable_frames: usize,
    /// Enrollment: challenges done, and the current one's event count when it was asked.
    completed: Vec<Challenge>,
    count_when_asked: usize,
    verdict: Verdict,
}

impl LivenessCheck {
    pub fn new(kind: SessionKind, rules: LivenessRules) -> Self {
        Self {
            kind,
            rules,
            blinks: BlinkCounter::new(rules.blinks),
            mouth: MouthCounter::new(rules.mouth),
            motion: MotionCounter::new(rules.motion),
            turns: TurnCounter::new(rules.turns),
            stillness: StillnessCounter::new(rules.stillness),
            last_box: None,
            usable_frames: 0,
            completed: Vec::new(),
            count_when_asked: 0,
            verdict: Verdict::InProgress,
        }
    }

    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    /// Whether the session walks through the challenges (an enrollment whose rules ask it).
    pub fn asks_challenges(&self) -> bool {
        self.kind == SessionKind::Enrollment && self.rules.enrollment_challenges
    }

    /// The blinks and motion events the session asks for, unless it walks through
    /// challenges.
    fn events_required(&self) -> Option<(usize, usize)> {
        match self.kind {
            _ if self.asks_challenges() => None,
            SessionKind::Enrollment => Some((
                self.rules.enrollment_blinks,
                self.rules.enrollment_motion_events,
            )),
            SessionKind::Authentication => Some((
                self.rules.authentication_blinks,
                self.rules.authentication_motion_events,
            )),
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// How long an authentication may take; `None` for enrollment.
    pub fn timeout(&self) -> Option<Duration> {
        (self.kind == SessionKind::Authentication).then_some(self.rules.authentication_timeout)
    }

    /// Feeds one usable frame: its face's 468 points and box (`[x, y, w, h]`) in pixels, its
    /// head pose (`pose::head_pose` of the points; the frame's quality needed it first), the
    /// frame's quality score, and its time since the session began.
    pub fn observe(
        &mut self,
        points: &[[f32; 3]],
        face_box: [f32; 4],
        pose: HeadPose,
        quality_score: f32,
        time: Duration,
    ) -> (Indicators, Progress) {
        let left = eye_aspect_ratio(points, LEFT_EYE);
        let right = eye_aspect_ratio(points, RIGHT_EYE);
        let eyes = (left + right) / 2.0;
        let moved = self
            .last_box
            .map_or(0.0, |previous| motion(previous, face_box));
        self.last_box = Some(face_box);
        self.usable_frames += 1;
        let blink = if moved > self.rules.max_blink_motion {
            self.blinks.interrupt();
            BlinkUpdate {
                threshold: self.blinks.threshold(),
                eyes_closed: false,
                blink_completed: false,
            }
        } else {
            self.blinks.update(eyes)
        };
        let mouth_ratio = mouth_aspect_ratio(points, MOUTH);
        self.mouth.update(mouth_ratio);
        self.turns.update(pose.yaw);
        self.motion.update(moved, time);
        self.stillness.update(moved, quality_score);
        let indicators = Indicators {
            eye_aspect_ratio_left: left,
            eye_aspect_ratio_right: right,
            eye_aspect_ratio: eyes,
            blink_threshold: blink.threshold,
            eyes_closed: blink.eyes_closed,
            mouth_aspect_ratio: mouth_ratio,
            head_pose: pose,
            motion: moved,
        };
        self.judge(time);
        (indicators, self.progress())
    }

    /// A frame with no usable face: motion and stillness start over, and time still runs.
    pub fn observe_no_face(&mut self, time: Duration) -> Progress {
        self.last_box = None;
        self.stillness.interrupt();
        self.judge(time);
        self.progress()
    }

    /// Time passing without frames: an authentication may run out.
    pub fn tick(&mut self, time: Duration) -> Verdict {
        self.judge(time);
        self.verdict
    }

    /// Moves the challenges on and settles the verdict; a verdict once given stands.
    fn judge(&mut self, time: Duration) {
        if self.verdict != Verdict::InProgress {
            return;
        }
        let Some((blinks, motion_events)) = self.events_required() else {
            self.judge_challenges();
            return;
        };
        if self.blinks.blinks() >= blinks
            && self.motion.events() >= motion_events
            && self.usable_frames >= self.rules.min_frames
        {
            self.verdict = Verdict::Passed;
        } else if self.timeout().is_some_and(|timeout| time > timeout) {
            self.verdict = Verdict::TimedOut;
        }
    }

    fn judge_challenges(&mut self) {
        while let Some(current) = self.current_challenge() {
            if self.events_for(current) - self.count_when_asked < self.needed_for(current) {
                break;
            }
            self.completed.push(current);
            if let Some(next) = self.current_challenge() {
                self.count_when_asked = self.events_for(next);
                // Holding still counts the frames after it is asked, not before.
                self.stillness.interrupt();
            }
        }
        if self.current_challenge().is_none() && self.usable_frames >= self.rules.min_frames {
            self.verdict = Verdict::Passed;
        }
    }

    fn current_challenge(&self) -> Option<Challenge> {
        Challenge::SEQUENCE.get(self.completed.len()).copied()
    }

    /// The session's count of the events a challenge asks for.
    fn events_for(&self, challenge: Challenge) -> usize {
        match challenge {
            Challenge::Blink => self.blinks.blinks(),
            Challenge::OpenMouth => self.mouth.openings(),
            Challenge::TurnLeft => self.turns.turns(Side::Left),
            Challenge::TurnRight => self.turns.turns(Side::Right),
            Challenge::HoldStill => self.stillness.holds(),
        }
    }

    fn needed_for(&self, challenge: Challenge) -> usize {
        match challenge {
            Challenge::Blink => self.rules.enrollment_blinks,
            _ => 1,
        }
    }

    fn score(&self) -> f32 {
        let Some((blinks, motion_events)) = self.events_required() else {
            return self
                .completed
                .iter()
                .map(|&c| self.rules.challenge_weights.of(c))
                .sum();
        };
        let share = |have: usize, need: usize| {
            if need == 0 {
                1.0
            } else {
                (have as f32 / need as f32).min(1.0)
            }
        };
        let blink_weight = self.rules.authentication_blink_weight;
        blink_weight * share(self.blinks.blinks(), blinks)
            + (1.0 - blink_weight) * share(self.motion.events(), motion_events)
    }

    pub fn progress(&self) -> Progress {
        let challenge = self.asks_challenges().then(|| {
            let current = self.current_challenge();
            ChallengeProgress {
                current,
                instruction: current.map(Challenge::instruction),
                completed: self.completed.clone(),
                progress: self.completed.len() as f32 / Challenge::SEQUENCE.len() as f32,
            }
        });
        let message = match (self.verdict, self.current_challenge()) {
            (Verdict::Passed, _) => "Liveness passed",
            (Verdict::TimedOut, _) => "Authentication timed out",
            (Verdict::InProgress, Some(current)) if self.asks_challenges() => current.instruction(),
            _ => "Blink naturally and move your head a little",
        };
        let (blinks_required, motion_events_required) = self
            .events_required()
            .unwrap_or((self.rules.enrollment_blinks, 0));
        Progress {
            verdict: self.verdict,
            liveness_verified: self.verdict == Verdict::Passed,
            liveness_score: self.score(),
            blinks_detected: self.blinks.blinks(),
            blinks_required,
            motion_events: self.motion.events(),
            motion_events_required,
            mouth_openings: self.mouth.openings(),
            turns_left: self.turns.turns(Side::Left),
            turns_right: self.turns.turns(Side::Right),
            still_frames: self.stillness.still_frames(),
            challenge,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::pose::head_pose;
    use crate::liveness::synthetic::{Pose, REST, face};

    fn pose_of(points: &[[f32; 3]]) -> HeadPose {
        head_pose(points).expect("the synthetic face has axes")
    }

    struct Session {
        check: LivenessCheck,
        frame: u32,
    }

    impl Session {
        fn new(kind: SessionKind) -> Self {
            Self {
                check: LivenessCheck::new(kind, LivenessRules::default()),
                frame: 0,
            }
        }

        /// Feeds `frames` frames of `pose` at 10 fps with good quality.
        fn feed(&mut self, pose: Pose, frames: usize) -> Progress {
            let mut last = self.check.progress();
            for _ in 0..frames {
                let (points, face_box) = face(pose);
                let time = Duration::from_millis(100 * self.frame as u64);
                self.frame += 1;
                last = self
                    .check
                    .observe(&points, face_box, pose_of(&points), 0.9, time)
                    .1;
            }
            last
        }

        fn blink(&mut self) -> Progress {
            self.feed(REST, 10);
            self.feed(Pose { eyes: 0.05, ..REST }, 2);
            self.feed(REST, 1)
        }

        fn current(&self) -> Option<Challenge> {
            self.check.progress().challenge.unwrap().current
        }
    }

    #[test]
    fn the_synthetic_face_reads_as_set() {
        let (points, _) = face(Pose {
            eyes: 0.25,
            mouth: 0.4,
            yaw: 20.0,
            shift: 0.0,
        });
        let pose = head_pose(&points).unwrap();
        assert!((pose.yaw - 20.0).abs() < 0.01);
        // The eyes are turned with the face, so their ratio shrinks with the yaw's cosine.
        let cos = 20f32.to_radians().cos();
        assert!((eye_aspect_ratio(&points, LEFT_EYE) - 0.25 / cos).abs() < 1e-4);
        assert!((mouth_aspect_ratio(&points, MOUTH) - 0.4 / cos).abs() < 1e-4);
    }

    #[test]
    fn enrollment_walks_the_challenges_in_order_and_passes() {
        let mut session = Session::new(SessionKind::Enrollment);
        let weights = LivenessRules::default().challenge_weights;
        // Doing a later challenge first does not count it.
        session.feed(Pose { mouth: 0.5, ..REST }, 2);
        session.feed(REST, 2);
        assert_eq!(session.current(), Some(Challenge::Blink));
        assert_eq!(session.check.progress().liveness_score, 0.0);

        let after_blink = session.blink();
        assert_eq!(
            after_blink.challenge.as_ref().unwrap().completed,
            [Challenge::Blink]
        );
        assert_eq!(after_blink.message, Challenge::OpenMouth.instruction());
        assert_eq!(after_blink.liveness_score, weights.blink);

        session.feed(Pose { mouth: 0.5, ..REST }, 1);
        assert_eq!(session.current(), Some(Challenge::TurnLeft));
        // A right turn while left is asked is not the left turn.
        session.feed(Pose { yaw: -20.0, ..REST }, 3);
        session.feed(REST, 1);
        assert_eq!(session.current(), Some(Challenge::TurnLeft));
        session.feed(Pose { yaw: 20.0, ..REST }, 3);
        assert_eq!(session.current(), Some(Challenge::TurnRight));
        session.feed(REST, 1);
        let turned = session.feed(Pose { yaw: -20.0, ..REST }, 3);
        assert_eq!(
            turned.challenge.as_ref().unwrap().current,
            Some(Challenge::HoldStill)
        );
        assert!(!turned.liveness_verified);

        let held = session.feed(REST, 8);
        assert_eq!(held.verdict, Verdict::Passed);
        assert!(held.liveness_verified);
        assert!((held.liveness_score - 1.0).abs() < 1e-6);
        assert_eq!(held.message, "Liveness passed");
        assert_eq!(held.challenge.unwrap().progress, 1.0);
    }

    #[test]
    fn holding_still_needs_good_frames_without_motion() {
        let mut session = Session::new(SessionKind::Enrollment);
        session.blink();
        session.feed(Pose { mouth: 0.5, ..REST }, 1);
        session.feed(Pose { yaw: 20.0, ..REST }, 3);
        session.feed(REST, 1);
        session.feed(Pose { yaw: -20.0, ..REST }, 3);
        // Moving frames (a 3% shift of the box diagonal each) never hold still.
        for step in 0..20 {
            let shift = 6.0 * step as f32;
            session.feed(Pose { shift, ..REST }, 1);
        }
        assert_eq!(session.current(), Some(Challenge::HoldStill));
        // Nor do still frames of poor quality.
        let (points, face_box) = face(REST);
        for i in 0..10 {
            let time = Duration::from_secs(10 + i);
            session
                .check
                .observe(&points, face_box, pose_of(&points), 0.3, time);
        }
        assert_eq!(session.current(), Some(Challenge::HoldStill));
        // A lost face breaks a run.
        session.feed(REST, 7);
        session.check.observe_no_face(Duration::from_secs(30));
        session.feed(REST, 7);
        assert_eq!(session.check.verdict(), Verdict::InProgress);
        assert_eq!(session.feed(REST, 1).verdict, Verdict::Passed);
    }

    #[test]
    fn authentication_needs_blinks_and_motion_before_the_timeout() {
        let mut session = Session::new(SessionKind::Authentication);
        session.blink();
        let one_blink = session.blink();
        assert_eq!(one_blink.blinks_detected, 2);
        assert!((one_blink.liveness_score - 0.6).abs() < 1e-6);
        assert_eq!(one_blink.verdict, Verdict::InProgress);
        session.feed(
            Pose {
                shift: 10.0,
                ..REST
            },
            1,
        );
        session.feed(
            Pose {
                shift: 20.0,
                ..REST
            },
            1,
        );
        assert_eq!(
            session.check.progress().motion_events,
            1,
            "0.2 s apart at least"
        );
        let moved = session.feed(
            Pose {
                shift: 30.0,
                ..REST
            },
            1,
        );
        assert_eq!(moved.motion_events, 2);
        assert_eq!(moved.verdict, Verdict::Passed);
        assert!((moved.liveness_score - 1.0).abs() < 1e-6);
        assert!(moved.challenge.is_none());
    }

    #[test]
    fn the_seeds_enrollment_rule_needs_its_frames_a_blink_and_a_motion_event() {
        let rules = LivenessRules {
            enrollment_challenges: false,
            min_frames: 30,
            ..LivenessRules::default()
        };
        let mut session = Session {
            check: LivenessCheck::new(SessionKind::Enrollment, rules),
            frame: 0,
        };
        assert!(!session.check.asks_challenges());
        let blinked = session.blink();
        assert!(blinked.challenge.is_none());
        assert_eq!(
            (blinked.blinks_required, blinked.motion_events_required),
            (1, 1)
        );
        let moved = session.feed(
            Pose {
                shift: 10.0,
                ..REST
            },
            1,
        );
        assert_eq!((moved.blinks_detected, moved.motion_events), (1, 1));
        // A blink and a motion event in 14 frames: the target's 30 frames are still owed.
        assert_eq!(moved.verdict, Verdict::InProgress);
        assert_eq!(moved.liveness_score, 1.0);
        assert_eq!(session.feed(REST, 15).verdict, Verdict::InProgress);
        assert_eq!(session.feed(REST, 1).verdict, Verdict::Passed);
        assert_eq!(session.check.timeout(), None);
    }

    #[test]
    fn authentication_times_out_at_the_timeout_and_not_before() {
        let mut check = LivenessCheck::new(SessionKind::Authentication, LivenessRules::default());
        assert_eq!(check.timeout(), Some(Duration::from_secs(30)));
        assert_eq!(check.tick(Duration::from_secs(30)), Verdict::InProgress);
        assert_eq!(
            check.observe_no_face(Duration::from_millis(30_001)).verdict,
            Verdict::TimedOut
        );
        // The verdict stands, whatever comes after.
        let (points, face_box) = face(REST);
        let pose = pose_of(&points);
        let (_, progress) = check.observe(&points, face_box, pose, 0.9, Duration::from_secs(31));
        assert_eq!(progress.message, "Authentication timed out");
        assert!(!progress.liveness_verified);
        let enrollment = LivenessCheck::new(SessionKind::Enrollment, LivenessRules::default());
        assert_eq!(enrollment.timeout(), None);
    }

    #[test]
    fn a_still_photo_never_passes_either_kind() {
        for kind in [SessionKind::Enrollment, SessionKind::Authentication] {
            let mut session = Session::new(kind);
            let progress = session.feed(REST, 300);
            assert_eq!(progress.blinks_detected, 0);
            assert_eq!(progress.motion_events, 0);
            assert!(!progress.liveness_verified, "{kind:?}");
        }
    }

    #[test]
    fn eyes_read_on_a_jumping_face_are_no_blink() {
        let mut session = Session::new(SessionKind::Authentication);
        session.feed(REST, 10);
        // Closed-looking eyes on frames where the face jumped 0.07 of its diagonal.
        let shift = 0.07 * 120f32.hypot(140.0);
        session.feed(
            Pose {
                eyes: 0.05,
                shift,
                ..REST
            },
            1,
        );
        session.feed(
            Pose {
                eyes: 0.05,
                shift: 0.0,
                ..REST
            },
            1,
        );
        let after = session.feed(Pose { shift: 0.0, ..REST }, 1);
        assert_eq!(after.blinks_detected, 0);
        // The same closed eyes on a still face are a blink.
        assert_eq!(session.blink().blinks_detected, 1);
        // The edge: a face that moved just under 0.06 of its diagonal still shows its eyes.
        let diagonal = 120f32.hypot(140.0);
        session.feed(REST, 10);
        session.feed(
            Pose {
                eyes: 0.05,
                shift: 0.059 * diagonal,
                ..REST
            },
            1,
        );
        let after = session.feed(
            Pose {
                shift: 0.059 * diagonal,
                ..REST
            },
            1,
        );
        assert_eq!(after.blinks_detected, 2);
    }

    #[test]
    fn the_weights_sum_to_one() {
        let w = LivenessRules::default().challenge_weights;
        let sum: f32 = Challenge::SEQUENCE.iter().map(|&c| w.of(c)).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }
}
