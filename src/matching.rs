//! Comparing face templates: normalisation, similarity, the same-person threshold, and the
//! 1:N search of a gallery.
//!
//! Similarity is the cosine of two templates, the dot product once both are L2-normalised,
//! so a template is normalised when it is made and every comparison after is one dot product.
//! The threshold is the model's own (`models/face_recognition_sface.toml`). A gallery keeps its
//! templates back to back in one array and scans it with the widest multiply-adds the CPU has.

use crate::models::description::ModelKind;
use crate::models::recognizer::TEMPLATE_LEN;

/// A face template, L2-normalised. Boxed: frames' answers carry one through the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Box<[f32; TEMPLATE_LEN]>);

/// Why numbers could not be made a template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("a template has {TEMPLATE_LEN} values, not {0}")]
    Length(usize),
    #[error("a template of zeros, infinities or NaN has no direction")]
    Degenerate,
}

impl Template {
    /// Normalises the model's output for one face.
    pub fn from_embedding(values: &[f32]) -> Result<Self, TemplateError> {
        let values: [f32; TEMPLATE_LEN] = values
            .try_into()
            .map_err(|_| TemplateError::Length(values.len()))?;
        let norm = values
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() || norm == 0.0 {
            return Err(TemplateError::Degenerate);
        }
        Ok(Self(Box::new(values.map(|v| (f64::from(v) / norm) as f32))))
    }

    pub fn values(&self) -> &[f32; TEMPLATE_LEN] {
        &self.0
    }

    /// The values as little-endian bytes, for sealing at rest.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A template back from `to_bytes`, normalised again (so a damaged value cannot pass for
    /// a template of another length or norm).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TemplateError> {
        if !bytes.len().is_multiple_of(4) {
            return Err(TemplateError::Length(bytes.len() / 4));
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Self::from_embedding(&values)
    }

    /// Cosine similarity, in [-1, 1].
    pub fn similarity(&self, other: &Template) -> f32 {
        let mut scores = [0.0];
        scores_of(self.values(), other.values(), &mut scores);
        scores[0]
    }
}

/// Two faces compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub similarity: f32,
    pub same_person: bool,
}

/// The model's same-person threshold, applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matcher {
    pub threshold: f32,
}

impl Matcher {
    /// The threshold `models/` gives for SFace.
    pub fn for_model() -> Self {
        let matching = ModelKind::Recognition
            .description()
            .matching
            .expect("the recognition model's description has [matching] (checked by tests)");
        Self {
            threshold: matching.same_person_threshold,
        }
    }

    pub fn compare(&self, a: &Template, b: &Template) -> Comparison {
        self.verdict(a.similarity(b))
    }

    pub fn verdict(&self, similarity: f32) -> Comparison {
        Comparison {
            similarity,
            same_person: similarity >= self.threshold,
        }
    }
}

/// One gallery entry found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<K> {
    pub key: K,
    pub similarity: f32,
}

/// Many templates, each under a key, searched together.
#[derive(Debug, Clone)]
pub struct Gallery<K> {
    keys: Vec<K>,
    /// `keys.len()` templates of `TEMPLATE_LEN` values, back to back.
    values: Vec<f32>,
}

impl<K> Default for Gallery<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: Clone + PartialEq> Gallery<K> {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn insert(&mut self, key: K, template: &Template) {
        self.keys.push(key);
        self.values.extend_from_slice(template.values());
    }

    /// Removes every template under `key`; returns how many there were.
    pub fn remove(&mut self, key: &K) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.keys.len() {
            if &self.keys[i] == key {
                let last = self.keys.len() - 1;
                self.keys.swap_remove(i);
                self.values.copy_within(
                    last * TEMPLATE_LEN..(last + 1) * TEMPLATE_LEN,
                    i * TEMPLATE_LEN,
                );
                self.values.truncate(last * TEMPLATE_LEN);
                removed += 1;
            } else {
                i += 1;
            }
        }
        removed
    }

    /// The highest similarity of `probe` to the templates under `key`; `None` when there are
    /// none.
    pub fn best_for(&self, key: &K, probe: &Template) -> Option<f32> {
        let mut score = [0.0f32];
        self.keys
            .iter()
            .zip(self.values.chunks(TEMPLATE_LEN))
            .filter(|(k, _)| *k == key)
            .map(|(_, row)| {
                scores_of(&probe.0, row, &mut score);
                score[0]
            })
            .reduce(f32::max)
    }

    /// The `limit` most similar templates to `probe`, most similar first.
    pub fn search(&self, probe: &Template, limit: usize) -> Vec<Candidate<K>> {
        if limit == 0 {
            return Vec::new();
        }
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(limit + 1);
        let mut scores = [0.0f32; SCAN_ROWS];
        for (chunk, rows) in self.values.chunks(SCAN_ROWS * TEMPLATE_LEN).enumerate() {
            let scores = &mut scores[..rows.len() / TEMPLATE_LEN];
            scores_of(&probe.0, rows, scores);
            for (i, &score) in scores.iter().enumerate() {
                if best.len() == limit && score <= best[limit - 1].0 {
                    continue;
                }
                let at = best.partition_point(|&(kept, _)| kept >= score);
                best.insert(at, (score, chunk * SCAN_ROWS + i));
                best.truncate(limit);
            }
        }
        best.into_iter()
            .map(|(similarity, i)| Candidate {
                key: self.keys[i].clone(),
                similarity,
            })
            .collect()
    }
}

/// Rows scored per pass of the gallery scan: their scores stay in L1 while the best are kept.
const SCAN_ROWS: usize = 256;

/// `scores[i]` = `probe` . row `i` of `rows`, with AVX2 and FMA where the CPU has them.
fn scores_of(probe: &[f32; TEMPLATE_LEN], rows: &[f32], scores: &mut [f32]) {
    debug_assert_eq!(rows.len(), scores.len() * TEMPLATE_LEN);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        return unsafe { avx2::scores(probe, rows, scores) };
    }
    for (score, row) in scores.iter_mut().zip(rows.chunks_exact(TEMPLATE_LEN)) {
        *score = probe.iter().zip(row).map(|(a, b)| a * b).sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::TEMPLATE_LEN;

    const LANES: usize = 8;
    const REGISTERS: usize = TEMPLATE_LEN / LANES;

    /// The probe sits in sixteen registers while the rows stream past, two rows at a time so
    /// that two chains of multiply-adds overlap.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scores(probe: &[f32; TEMPLATE_LEN], rows: &[f32], scores: &mut [f32]) {
        let probe: [__m256; REGISTERS] =
            std::array::from_fn(|r| unsafe { _mm256_loadu_ps(probe.as_ptr().add(r * LANES)) });
        let mut pairs = rows.chunks_exact(2 * TEMPLATE_LEN);
        let mut out = scores.chunks_exact_mut(2);
        for (pair, out) in (&mut pairs).zip(&mut out) {
            let (a, b) = pair.split_at(TEMPLATE_LEN);
            let (mut sum_a, mut sum_b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (r, &p) in probe.iter().enumerate() {
                // SAFETY: both rows hold TEMPLATE_LEN values, r * LANES + LANES <= TEMPLATE_LEN.
                let (x, y) = unsafe {
                    (
                        _mm256_loadu_ps(a.as_ptr().add(r * LANES)),
                        _mm256_loadu_ps(b.as_ptr().add(r * LANES)),
                    )
                };
                sum_a = _mm256_fmadd_ps(p, x, sum_a);
                sum_b = _mm256_fmadd_ps(p, y, sum_b);
            }
            out[0] = horizontal_sum(sum_a);
            out[1] = horizontal_sum(sum_b);
        }
        if let ([last], row) = (out.into_remainder(), pairs.remainder()) {
            let mut sum = _mm256_setzero_ps();
            for (r, &p) in probe.iter().enumerate() {
                // SAFETY: as above.
                let x = unsafe { _mm256_loadu_ps(row.as_ptr().add(r * LANES)) };
                sum = _mm256_fmadd_ps(p, x, sum);
            }
            *last = horizontal_sum(sum);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let halves = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pairs = _mm_add_ps(halves, _mm_movehl_ps(halves, halves));
        _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template pointing along `seed`-dependent directions, reproducibly.
    fn template(seed: u64) -> Template {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let values: Vec<f32> = (0..TEMPLATE_LEN)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        Template::from_embedding(&values).unwrap()
    }

    fn plain_dot(a: &Template, b: &Template) -> f32 {
        a.0.iter()
            .zip(b.values())
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum::<f64>() as f32
    }

    #[test]
    fn a_template_is_normalised_and_its_own_best_match() {
        let a = template(1);
        let norm: f32 = a.0.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert!((a.similarity(&a) - 1.0).abs() < 1e-5);
        let scaled: Vec<f32> = a.0.iter().map(|v| v * 40.0).collect();
        assert!((Template::from_embedding(&scaled).unwrap().similarity(&a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn bad_embeddings_are_refused() {
        assert_eq!(
            Template::from_embedding(&[1.0; 3]),
            Err(TemplateError::Length(3))
        );
        assert_eq!(
            Template::from_embedding(&[0.0; TEMPLATE_LEN]),
            Err(TemplateError::Degenerate)
        );
        let mut nan = [1.0; TEMPLATE_LEN];
        nan[7] = f32::NAN;
        assert_eq!(
            Template::from_embedding(&nan),
            Err(TemplateError::Degenerate)
        );
    }

    #[test]
    fn a_template_survives_its_bytes() {
        let a = template(3);
        let back = Template::from_bytes(&a.to_bytes()).unwrap();
        assert!((a.similarity(&back) - 1.0).abs() < 1e-6);
        assert_eq!(
            Template::from_bytes(&[0; 12]),
            Err(TemplateError::Length(3))
        );
        assert_eq!(Template::from_bytes(&[0; 5]), Err(TemplateError::Length(1)));
    }

    #[test]
    fn the_threshold_is_the_models_and_inclusive() {
        let matcher = Matcher::for_model();
        assert_eq!(matcher.threshold, 0.363);
        assert!(matcher.verdict(0.363).same_person);
        assert!(!matcher.verdict(0.3629).same_person);
    }

    /// The SIMD scan equals a plain f64 dot product, on galleries that end on a full scan
    /// chunk, a pair, and a lone row.
    #[test]
    fn search_scores_every_template_and_ranks_them() {
        let probe = template(0);
        for size in [1, 2, 3, SCAN_ROWS, SCAN_ROWS + 3, 1001] {
            let mut gallery = Gallery::default();
            let templates: Vec<Template> = (1..=size as u64).map(template).collect();
            for (i, t) in templates.iter().enumerate() {
                gallery.insert(i, t);
            }
            let found = gallery.search(&probe, size + 5);
            assert_eq!(found.len(), size);
            let mut expected: Vec<(f32, usize)> = templates
                .iter()
                .enumerate()
                .map(|(i, t)| (plain_dot(&probe, t), i))
                .collect();
            expected.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (candidate, (score, _)) in found.iter().zip(&expected) {
                assert!((candidate.similarity - score).abs() < 1e-5, "size {size}");
                assert!((plain_dot(&probe, &templates[candidate.key]) - score).abs() < 1e-5);
            }
            let top = gallery.search(&probe, 3);
            assert_eq!(top, found[..size.min(3)]);
        }
    }

    #[test]
    fn the_probe_itself_is_found_first_and_removal_takes_it_away() {
        let mut gallery = Gallery::default();
        for seed in 1..=500 {
            gallery.insert(format!("user-{seed}"), &template(seed));
        }
        gallery.insert("user-77".to_string(), &template(9_999));
        let found = gallery.search(&template(77), 1);
        assert_eq!(found[0].key, "user-77");
        assert!((found[0].similarity - 1.0).abs() < 1e-5);

        let best = gallery.best_for(&"user-77".to_string(), &template(9_999));
        assert!((best.unwrap() - 1.0).abs() < 1e-5, "the better of its two");
        assert_eq!(gallery.best_for(&"nobody".to_string(), &template(1)), None);

        assert_eq!(gallery.remove(&"user-77".to_string()), 2);
        assert_eq!(gallery.len(), 499);
        let found = gallery.search(&template(77), 500);
        assert!(found.iter().all(|c| c.key != "user-77"));
        // The templates moved into the removed places are still found under their own keys.
        for seed in [1, 250, 500] {
            assert_eq!(
                gallery.search(&template(seed), 1)[0].key,
                format!("user-{seed}")
            );
        }
        assert!(gallery.search(&template(1), 0).is_empty());
    }
}
