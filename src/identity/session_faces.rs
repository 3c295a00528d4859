//! The face one session shows: templates from its good frames, spread over the whole session,
//! each checked against the session's face so far, so that a session whose face changes (a
//! person who blinks, then a photo held up) is caught wherever the change falls.

use crate::matching::{Matcher, Template};
use crate::models::recognizer::TEMPLATE_LEN;

/// Usable frames between two templates at first. On the CPU a template costs about six
/// tracked frames of the mesh (`benches/identity.rs`): every fifth frame keeps that to about
/// as much again as the liveness check itself, while a face swap still shows within half a
/// second at a camera's 10 frames a second.
pub const TEMPLATE_EVERY: usize = 5;

/// Templates held at most; past it every other one goes and the spacing doubles, so that
/// however long the session, the ones held stay spread over all of it.
pub const MAX_HELD: usize = 32;

/// A template that does not look like the session's face so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceChanged {
    /// Its cosine similarity to the session's face.
    pub similarity: f32,
}

pub struct SessionFaces {
    matcher: Matcher,
    /// Spread over the session, oldest first, with the quality score of the frame of each.
    held: Vec<(Template, f32)>,
    /// The sum of every template taken, held or not: the session's face is its direction.
    sum: [f64; TEMPLATE_LEN],
    taken: usize,
    spacing: usize,
    /// Usable frames to go before the next template is asked for.
    frames_to_next: usize,
    changed: Option<FaceChanged>,
}

impl SessionFaces {
    /// `matcher`'s threshold decides what still is the same person.
    pub fn new(matcher: Matcher) -> Self {
        Self {
            matcher,
            held: Vec::new(),
            sum: [0.0; TEMPLATE_LEN],
            taken: 0,
            spacing: TEMPLATE_EVERY,
            frames_to_next: 0,
            changed: None,
        }
    }

    /// Whether the next frame should bring its face's template.
    pub fn wants_template(&self) -> bool {
        self.changed.is_none() && self.frames_to_next == 0
    }

    /// A usable frame that brought no template because none was asked of it.
    pub fn pass_frame(&mut self) {
        self.frames_to_next = self.frames_to_next.saturating_sub(1);
    }

    /// A usable frame's template, with its quality score. A template unlike the session's
    /// face so far is not taken, and marks the session changed.
    pub fn take(&mut self, template: Template, quality_score: f32) -> Result<(), FaceChanged> {
        if let Some(face) = self.face() {
            let comparison = self.matcher.compare(&face, &template);
            if !comparison.same_person {
                let changed = FaceChanged {
                    similarity: comparison.similarity,
                };
                self.changed = Some(changed);
                return Err(changed);
            }
        }
        for (sum, &value) in self.sum.iter_mut().zip(template.values()) {
            *sum += f64::from(value);
        }
        self.taken += 1;
        self.frames_to_next = self.spacing - 1;
        self.held.push((template, quality_score));
        thin_out(&mut self.held, MAX_HELD, &mut self.spacing);
        Ok(())
    }

    /// Whether a template was unlike the session's face.
    pub fn changed(&self) -> Option<FaceChanged> {
        self.changed
    }

    /// Templates taken over the session.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// The session's face: the direction of the mean of its templates, steadier than any one
    /// frame's. `None` before the first.
    pub fn face(&self) -> Option<Template> {
        if self.taken == 0 {
            return None;
        }
        let mean: Vec<f32> = self.sum.iter().map(|&v| v as f32).collect();
        Template::from_embedding(&mean).ok()
    }

    /// At most `count` of the templates held, evenly spread from the first to the last.
    pub fn spread(&self, count: usize) -> Vec<&Template> {
        let held = self.held.len();
        if held <= count {
            return self.held.iter().map(|(t, _)| t).collect();
        }
        (0..count)
            .map(|i| &self.held[i * (held - 1) / (count - 1).max(1)].0)
            .collect()
    }

    /// The mean quality score of the frames of the templates held.
    pub fn quality_score(&self) -> f32 {
        if self.held.is_empty() {
            return 0.0;
        }
        self.held.iter().map(|(_, q)| q).sum::<f32>() / self.held.len() as f32
    }
}

/// Keeps what a session holds spread over all of it, however long it runs: once `held`
/// reaches `max`, every other item goes (the first stays) and the `spacing` between new ones
/// doubles.
pub(super) fn thin_out<T>(held: &mut Vec<T>, max: usize, spacing: &mut usize) {
    if held.len() < max {
        return;
    }
    let mut index = 0;
    held.retain(|_| {
        index += 1;
        index % 2 == 1
    });
    *spacing *= 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template mostly along `axis`, tilted a little towards `tilt`.
    fn template(axis: usize, tilt: usize, amount: f32) -> Template {
        let mut values = [0.0f32; TEMPLATE_LEN];
        values[axis] = 1.0;
        values[tilt] += amount;
        Template::from_embedding(&values).unwrap()
    }

    #[test]
    fn templates_are_asked_for_every_few_usable_frames() {
        let mut faces = SessionFaces::new(Matcher { threshold: 0.5 });
        assert!(faces.wants_template());
        faces.take(template(0, 1, 0.1), 0.8).unwrap();
        for _ in 1..TEMPLATE_EVERY {
            assert!(!faces.wants_template());
            faces.pass_frame();
        }
        assert!(faces.wants_template());
    }

    #[test]
    fn another_face_marks_the_session_changed_and_is_not_taken() {
        let mut faces = SessionFaces::new(Matcher { threshold: 0.5 });
        faces.take(template(0, 1, 0.2), 0.8).unwrap();
        faces.take(template(0, 2, 0.2), 0.6).unwrap();
        let changed = faces.take(template(5, 0, 0.1), 0.9).unwrap_err();
        assert!(changed.similarity < 0.5);
        assert_eq!(faces.changed(), Some(changed));
        assert!(!faces.wants_template());
        assert_eq!(faces.taken(), 2);
        assert!((faces.quality_score() - 0.7).abs() < 1e-6);
        assert!(faces.face().unwrap().similarity(&template(0, 0, 0.0)) > 0.97);
    }

    #[test]
    fn the_templates_held_stay_spread_over_a_long_session() {
        let mut faces = SessionFaces::new(Matcher { threshold: 0.5 });
        // Tilts growing over the session tell the templates apart.
        for i in 0..100 {
            faces.take(template(0, 1, i as f32 * 0.001), 0.8).unwrap();
        }
        assert_eq!(faces.taken(), 100);
        let spread = faces.spread(5);
        assert_eq!(spread.len(), 5);
        let first = template(0, 1, 0.0);
        // The first held is the session's first; the last held is from its last quarter.
        assert!(spread[0].similarity(&first) > 0.999_999);
        let last = template(0, 1, 0.075);
        assert!(spread[4].similarity(&last) > spread[0].similarity(&last));
        assert!(faces.held.len() < MAX_HELD);
    }
}
