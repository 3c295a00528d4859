//! Identity: what an issued session decides once its liveness check has passed. An
//! enrollment stores its user's templates unless the face is another user's already; an
//! authentication matches the session's face against its tenant's gallery only, for the user
//! it names (verification) or for any (identification). Either fails if the face changed
//! during the session (`session_faces`), or if the anti-spoofing networks judged it a photo or
//! a screen (`spoof_scores`).
//!
//! Scores are cosine similarities of SFace templates (-1 to 1; the model's same-person
//! threshold is 0.363) between the session's face, the mean of its templates, and a user's
//! nearest template.

pub mod galleries;
pub mod results;
pub mod session_faces;
pub mod spoof_scores;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::matching::{Matcher, Template};
use crate::store::templates::{CompletedEnrollment, TemplateRow};
use crate::store::{StoreError, StoreResult};
use crate::tenants::Tenants;
use crate::tenants::sealing::{MasterKey, Sealer};
use galleries::Galleries;
use results::{ResultClaims, SealedResult};
use session_faces::SessionFaces;
use spoof_scores::SpoofScores;

use crate::webhooks::Webhooks;

#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(next_help_heading = "Identity")]
pub struct IdentityConfig {
    /// File holding the key (64 hex digits) that seals face templates at rest with
    /// AES-256-GCM; created if missing. Every process on one database needs the same key.
    /// Without it templates are sealed under a key derived from the master key, and the
    /// server warns at start: biometric data deserves a key of its own, kept apart from the
    /// database and its backups.
    #[arg(long, env = "FACE_SERVICE_TEMPLATE_KEY_FILE")]
    pub template_key_file: Option<PathBuf>,
    /// Similarity (cosine of SFace templates, -1 to 1) from which an authentication matches
    /// a user. Default: the model's same-person threshold, 0.363.
    #[arg(long, env = "FACE_SERVICE_MATCH_THRESHOLD")]
    pub match_threshold: Option<f32>,
    /// Similarity from which an enrolling face counts as another user's already
    /// (`DUPLICATE_FACE_DETECTED`). Default: the model's same-person threshold.
    #[arg(long, env = "FACE_SERVICE_DUPLICATE_THRESHOLD")]
    pub duplicate_threshold: Option<f32>,
    /// Templates an enrollment stores, spread over its session.
    #[arg(
        long,
        env = "FACE_SERVICE_TEMPLATES_PER_ENROLLMENT",
        default_value_t = 5
    )]
    pub templates_per_enrollment: usize,
    /// Templates a user keeps: a re-enrollment adds its own, and the oldest beyond this go.
    #[arg(long, env = "FACE_SERVICE_TEMPLATES_PER_USER", default_value_t = 10)]
    pub templates_per_user: usize,
    /// Issued enrollments walk through the challenges (blink, open the mouth, turn left, turn
    /// right, hold still) instead of the seed's rule (`target_samples` good frames, a blink
    /// and a motion event). A session's `metadata.challenges: true` asks it of one session.
    #[arg(long, env = "FACE_SERVICE_ENROLLMENT_CHALLENGES")]
    pub enrollment_challenges: bool,
    /// Anti-spoofing score (0 spoof .. 1 real; the mean over the frames judged) below which
    /// a session fails as `spoof_detected`. Default: the model description's, 0.5. 0 turns the
    /// check off.
    #[arg(long, env = "FACE_SERVICE_ANTI_SPOOFING_THRESHOLD")]
    pub anti_spoofing_threshold: Option<f32>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            template_key_file: None,
            match_threshold: None,
            duplicate_threshold: None,
            templates_per_enrollment: 5,
            templates_per_user: 10,
            enrollment_challenges: false,
            anti_spoofing_threshold: None,
        }
    }
}

/// The `error` of an enrollment and the `reason` of an authentication that the
/// anti-spoofing check failed.
const SPOOF_DETECTED: &str = "spoof_detected";

/// What an issued session is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    Enrollment {
        user: String,
        enrollment_id: String,
    },
    /// Is this that user?
    Verification {
        user: String,
    },
    /// Which of the tenant's users is this?
    Identification,
}

/// One session's identity step: whose, and for what.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRequest {
    pub client_id: String,
    pub session_token: String,
    pub purpose: Purpose,
}

/// What the identity step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Enrolled {
        user_id: String,
        enrollment_id: String,
        templates_stored: usize,
        quality_score: f32,
        /// To the user's reference photo, where it has one.
        similarity_with_old_photo: Option<f32>,
    },
    EnrollmentFailed {
        /// The seed's `error` and `error_code`.
        error: &'static str,
        error_code: &'static str,
        message: String,
        similarity: Option<f32>,
        /// The other user a duplicate face belongs to: stored for the tenant's backend, never
        /// sent to the browser.
        conflicting_user: Option<String>,
    },
    Authenticated {
        user_id: String,
        confidence: f32,
    },
    NotAuthenticated {
        reason: &'static str,
        message: String,
        /// The similarity to the user claimed (verification) or nearest (identification).
        confidence: Option<f32>,
    },
}

impl Decision {
    /// The kinds of decision, as the metrics name them.
    pub const KINDS: [&'static str; 4] = [
        "enrolled",
        "enrollment_failed",
        "authenticated",
        "not_authenticated",
    ];

    /// Where this decision's kind is in `KINDS`.
    pub fn kind_index(&self) -> usize {
        match self {
            Decision::Enrolled { .. } => 0,
            Decision::EnrollmentFailed { .. } => 1,
            Decision::Authenticated { .. } => 2,
            Decision::NotAuthenticated { .. } => 3,
        }
    }

    /// Whether the anti-spoofing check failed the session.
    pub fn is_spoof(&self) -> bool {
        matches!(
            self,
            Decision::EnrollmentFailed {
                error: SPOOF_DETECTED,
                ..
            } | Decision::NotAuthenticated {
                reason: SPOOF_DETECTED,
                ..
            }
        )
    }

    /// The outcome as the session stores it and its result token carries it.
    pub fn outcome(&self) -> Value {
        match self {
            Decision::Enrolled {
                user_id,
                enrollment_id,
                templates_stored,
                quality_score,
                similarity_with_old_photo,
            } => json!({
                "enrolled": true,
                "user_id": user_id,
                "enrollment_id": enrollment_id,
                "templates_stored": templates_stored,
                "quality_score": quality_score,
                "similarity_with_old_photo": similarity_with_old_photo,
            }),
            Decision::EnrollmentFailed {
                error_code,
                message,
                similarity,
                conflicting_user,
                ..
            } => json!({
                "enrolled": false,
                "error_code": error_code,
                "message": message,
                "similarity_score": similarity,
                "conflicting_user": conflicting_user,
            }),
            Decision::Authenticated {
                user_id,
                confidence,
            } => json!({
                "authenticated": true,
                "user_id": user_id,
                "confidence": confidence,
            }),
            Decision::NotAuthenticated {
                reason,
                message,
                confidence,
            } => json!({
                "authenticated": false,
                "user_id": null,
                "reason": reason,
                "message": message,
                "confidence": confidence,
            }),
        }
    }

    fn enrollment_failed(error: &'static str, error_code: &'static str, message: &str) -> Self {
        Decision::EnrollmentFailed {
            error,
            error_code,
            message: message.to_owned(),
            similarity: None,
            conflicting_user: None,
        }
    }

    fn not_authenticated(reason: &'static str, message: &str, confidence: Option<f32>) -> Self {
        Decision::NotAuthenticated {
            reason,
            message: message.to_owned(),
            confidence,
        }
    }
}

/// The decision, and what the tenant's backend trusts it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion {
    pub decision: Decision,
    /// The session's anti-spoofing score (0 spoof .. 1 real), where a frame was judged.
    pub anti_spoofing_score: Option<f32>,
    /// The decision and the score as the session stores them, the webhook sends them and
    /// the result token carries them.
    pub outcome: Value,
    /// The seed's `encrypted_data`, for a success of a client whose result key is kept.
    pub encrypted_data: Option<Value>,
    pub result_token: Option<String>,
}

pub struct Identity {
    tenants: Tenants,
    galleries: Arc<Galleries>,
    webhooks: Arc<Webhooks>,
    /// What still is the same face within a session.
    same_person: Matcher,
    match_threshold: f32,
    duplicate_threshold: f32,
    templates_per_enrollment: usize,
    templates_per_user: usize,
    enrollment_challenges: bool,
    /// Anti-spoofing scores below this fail the session.
    real_threshold: f32,
}

impl Identity {
    /// Loads the template key (or derives one, with a warning).
    pub fn new(
        tenants: Tenants,
        webhooks: Arc<Webhooks>,
        config: &IdentityConfig,
    ) -> StoreResult<Identity> {
        let key = match &config.template_key_file {
            Some(path) => MasterKey::load_or_create(path).map_err(StoreError::Config)?,
            None => {
                tracing::warn!(
                    "no --template-key-file: face templates are sealed under a key derived from \
                     the master key, which lives with the database; give templates a key of \
                     their own, kept apart from the database and its backups"
                );
                tenants.derived_key("face templates")
            }
        };
        let model = Matcher::for_model();
        Ok(Identity {
            galleries: Arc::new(Galleries::new(tenants.store().clone(), Sealer::new(&key))),
            tenants,
            webhooks,
            same_person: model,
            match_threshold: config.match_threshold.unwrap_or(model.threshold),
            duplicate_threshold: config.duplicate_threshold.unwrap_or(model.threshold),
            templates_per_enrollment: config.templates_per_enrollment.max(1),
            templates_per_user: config.templates_per_user.max(1),
            enrollment_challenges: config.enrollment_challenges,
            real_threshold: config.anti_spoofing_threshold.unwrap_or_else(|| {
                crate::models::ModelKind::AntiSpoofing
                    .description()
                    .anti_spoofing
                    .expect("the anti-spoofing description has its options")
                    .real_threshold
            }),
        })
    }

    pub fn galleries(&self) -> &Arc<Galleries> {
        &self.galleries
    }

    /// Whether issued enrollments walk through the challenges unless they ask otherwise.
    pub fn enrollment_challenges(&self) -> bool {
        self.enrollment_challenges
    }

    /// A new session's record of its face.
    pub fn session_faces(&self) -> SessionFaces {
        SessionFaces::new(self.same_person)
    }

    /// The session's decision, once its liveness check has passed or its face changed, with
    /// the store changed accordingly.
    pub async fn conclude(
        &self,
        request: &IdentityRequest,
        faces: &SessionFaces,
        spoof: &SpoofScores,
    ) -> Conclusion {
        let anti_spoofing_score = spoof.mean();
        let decision = match self.decide(request, faces, anti_spoofing_score).await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::error!(%error, "the identity step failed");
                let message = "The server could not complete the session: try again";
                match request.purpose {
                    Purpose::Enrollment { .. } => {
                        Decision::enrollment_failed("internal_error", "INTERNAL_ERROR", message)
                    }
                    _ => Decision::not_authenticated("internal_error", message, None),
                }
            }
        };
        if let (Purpose::Enrollment { enrollment_id, .. }, Decision::EnrollmentFailed { .. }) =
            (&request.purpose, &decision)
            && let Err(error) = self
                .tenants
                .store()
                .fail_enrollment(&request.client_id, enrollment_id)
                .await
        {
            tracing::error!(%error, "marking the enrollment failed");
        }
        let mut outcome = decision.outcome();
        outcome["anti_spoofing_score"] = json!(anti_spoofing_score);
        tracing::info!(%outcome, frames_judged = spoof.count(), "identity decided");
        self.tell_the_tenant(request, &decision, &outcome).await;
        self.sign(request, decision, anti_spoofing_score, outcome)
            .await
    }

    /// The decision's webhook event, for the tenant's endpoints that subscribed to it.
    async fn tell_the_tenant(
        &self,
        request: &IdentityRequest,
        decision: &Decision,
        outcome: &Value,
    ) {
        let event = match decision {
            Decision::Enrolled { .. } => "enrollment.completed",
            Decision::Authenticated { .. } => "authentication.success",
            Decision::NotAuthenticated { .. } => "authentication.failed",
            Decision::EnrollmentFailed { .. } => return,
        };
        let claimed_user = match &request.purpose {
            Purpose::Verification { user } => Some(user.as_str()),
            _ => None,
        };
        let mut data = outcome.clone();
        data["session_token"] = json!(request.session_token);
        if event != "enrollment.completed" {
            data["claimed_user_id"] = json!(claimed_user);
        }
        self.webhooks.emit(&request.client_id, event, data).await;
    }

    async fn decide(
        &self,
        request: &IdentityRequest,
        faces: &SessionFaces,
        anti_spoofing_score: Option<f32>,
    ) -> StoreResult<Decision> {
        let enrolling = matches!(request.purpose, Purpose::Enrollment { .. });
        if let Some(changed) = faces.changed() {
            let message = "The face changed during the session";
            return Ok(if enrolling {
                Decision::EnrollmentFailed {
                    error: "face_changed",
                    error_code: "FACE_CHANGED",
                    message: message.to_owned(),
                    similarity: Some(changed.similarity),
                    conflicting_user: None,
                }
            } else {
                Decision::not_authenticated("face_changed", message, None)
            });
        }
        if anti_spoofing_score.is_some_and(|score| score < self.real_threshold) {
            let message = "The face looks like a photo or a screen, not a live person";
            return Ok(if enrolling {
                Decision::enrollment_failed(SPOOF_DETECTED, "SPOOF_DETECTED", message)
            } else {
                Decision::not_authenticated(SPOOF_DETECTED, message, None)
            });
        }
        let Some(face) = faces.face() else {
            let message = "No frame showed the face large and sharp enough to recognise";
            return Ok(if enrolling {
                Decision::enrollment_failed("no_face", "FACE_NOT_RECOGNISABLE", message)
            } else {
                Decision::not_authenticated("no_face", message, None)
            });
        };
        let client = &request.client_id;
        let store = self.tenants.store();
        let held = self.galleries.of(client).await?;
        let gallery = &held.gallery;
        match &request.purpose {
            Purpose::Enrollment {
                user,
                enrollment_id,
            } => {
                let duplicate = gallery
                    .search(&face, 16)
                    .into_iter()
                    .find(|candidate| candidate.key != *user);
                if let Some(other) =
                    duplicate.filter(|other| other.similarity >= self.duplicate_threshold)
                {
                    return Ok(Decision::EnrollmentFailed {
                        error: "duplicate_face",
                        error_code: "DUPLICATE_FACE_DETECTED",
                        message: "This face is already enrolled for another user".to_owned(),
                        similarity: Some(other.similarity),
                        conflicting_user: Some(other.key),
                    });
                }
                let now = crate::store::now();
                let templates: Vec<TemplateRow> = faces
                    .spread(self.templates_per_enrollment)
                    .into_iter()
                    .map(|template| TemplateRow {
                        client_id: client.clone(),
                        external_user_id: user.clone(),
                        id: uuid::Uuid::new_v4().to_string(),
                        source: "live".to_owned(),
                        template_sealed: self.galleries.seal(template),
                        created_at: now,
                        for_matching: 1,
                    })
                    .collect();
                let quality_score = faces.quality_score();
                let completed = store
                    .complete_enrollment(&CompletedEnrollment {
                        client_id: client,
                        external_user_id: user,
                        enrollment_id,
                        templates: &templates,
                        keep: self.templates_per_user,
                        quality_score: f64::from(quality_score),
                        at: now,
                    })
                    .await?;
                Ok(if completed {
                    Decision::Enrolled {
                        user_id: user.clone(),
                        enrollment_id: enrollment_id.clone(),
                        templates_stored: templates.len(),
                        quality_score,
                        similarity_with_old_photo: held
                            .photos
                            .get(user)
                            .map(|photo| photo.similarity(&face)),
                    }
                } else {
                    Decision::enrollment_failed(
                        "enrollment_not_pending",
                        "ENROLLMENT_NOT_PENDING",
                        "The enrollment is no longer pending (its user was deleted?)",
                    )
                })
            }
            Purpose::Verification { user } => {
                let Some(row) = store.user(client, user).await? else {
                    return Ok(Decision::not_authenticated(
                        "user_not_found",
                        "The user no longer exists",
                        None,
                    ));
                };
                let refusal = if row.is_active == 0 {
                    Some(("user_inactive", "The user is deactivated"))
                } else if row.face_auth_enabled == 0 {
                    Some((
                        "face_auth_disabled",
                        "Face authentication is off for this user",
                    ))
                } else {
                    None
                };
                if let Some((reason, message)) = refusal {
                    return Ok(Decision::not_authenticated(reason, message, None));
                }
                let Some(claimed) = gallery.best_for(user, &face) else {
                    return Ok(Decision::not_authenticated(
                        "not_enrolled",
                        "The user has no enrolled face",
                        None,
                    ));
                };
                let nearer_other = gallery
                    .search(&face, 16)
                    .into_iter()
                    .find(|candidate| candidate.key != *user)
                    .filter(|other| {
                        other.similarity > claimed && other.similarity >= self.match_threshold
                    });
                if claimed < self.match_threshold || nearer_other.is_some() {
                    return Ok(Decision::not_authenticated(
                        "face_mismatch",
                        "Face does not match specified user",
                        Some(claimed),
                    ));
                }
                store
                    .note_recognition(client, user, crate::store::now())
                    .await?;
                Ok(Decision::Authenticated {
                    user_id: user.clone(),
                    confidence: claimed,
                })
            }
            Purpose::Identification => {
                let nearest = gallery.search(&face, 1).into_iter().next();
                let similarity = nearest.as_ref().map(|n| n.similarity);
                let Some(nearest) = nearest.filter(|n| n.similarity >= self.match_threshold) else {
                    return Ok(Decision::not_authenticated(
                        "no_match",
                        "Face not recognised",
                        similarity,
                    ));
                };
                let usable = store
                    .user(client, &nearest.key)
                    .await?
                    .is_some_and(|row| row.is_active != 0 && row.face_auth_enabled != 0);
                if !usable {
                    return Ok(Decision::not_authenticated(
                        "user_inactive",
                        "The matching user is deactivated or has face authentication off",
                        None,
                    ));
                }
                store
                    .note_recognition(client, &nearest.key, crate::store::now())
                    .await?;
                Ok(Decision::Authenticated {
                    user_id: nearest.key,
                    confidence: nearest.similarity,
                })
            }
        }
    }

    /// Stores `template`, from a reference photo, as the user's photo template (replacing
    /// the one before); it matches the user until a live enrollment exists only if
    /// `for_matching`.
    pub async fn store_photo(
        &self,
        client_id: &str,
        user: &str,
        template: &Template,
        for_matching: bool,
    ) -> StoreResult<()> {
        self.tenants
            .store()
            .replace_photo_template(&TemplateRow {
                client_id: client_id.to_owned(),
                external_user_id: user.to_owned(),
                id: uuid::Uuid::new_v4().to_string(),
                source: "photo".to_owned(),
                template_sealed: self.galleries.seal(template),
                created_at: crate::store::now(),
                for_matching: i64::from(for_matching),
            })
            .await
    }

    /// Adds the seed's `encrypted_data` (to a success) and the signed result token.
    async fn sign(
        &self,
        request: &IdentityRequest,
        decision: Decision,
        anti_spoofing_score: Option<f32>,
        outcome: Value,
    ) -> Conclusion {
        let keys = match self.tenants.result_keys(&request.client_id).await {
            Ok(keys) => keys,
            Err(error) => {
                tracing::error!(%error, "reading the client's result keys");
                None
            }
        };
        let Some(keys) = keys else {
            return Conclusion {
                decision,
                anti_spoofing_score,
                outcome,
                encrypted_data: None,
                result_token: None,
            };
        };
        let now = chrono::Utc::now();
        let session_type = match request.purpose {
            Purpose::Enrollment { .. } => "enrollment",
            _ => "authentication",
        };
        let sealed = match &decision {
            Decision::Enrolled { enrollment_id, .. } => Some((enrollment_id, None)),
            Decision::Authenticated {
                user_id,
                confidence,
            } => Some((user_id, Some(*confidence))),
            _ => None,
        };
        let encrypted_data = match (sealed, keys.encryption) {
            (Some((id, confidence)), Some(key)) => Some(results::encrypted_data(
                &key,
                &SealedResult {
                    id,
                    timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    session_type,
                    session_token: &request.session_token,
                    confidence,
                },
            )),
            _ => None,
        };
        let result_token = results::result_token(
            &ResultClaims {
                iss: "face-service",
                sub: &request.session_token,
                client_id: &request.client_id,
                session_type,
                outcome: &outcome,
                iat: now.timestamp(),
                exp: now.timestamp() + results::RESULT_TOKEN_LIFETIME_SECS,
            },
            &keys.secret,
        );
        Conclusion {
            decision,
            anti_spoofing_score,
            outcome,
            encrypted_data,
            result_token: Some(result_token),
        }
    }
}
