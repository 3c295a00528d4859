//! `POST /api/clients/users/{external_user_id}/photo/`: a user's reference photo (the seed's
//! `old_profile_photo`), run through the engine like a frame, its face's template stored
//! marked as a photo's. It gives an enrollment's `similarity_with_old_photo` and, where the
//! tenant asks (`use_for_matching`), matches the user before a live enrollment exists (users
//! migrated from another system). The image itself is never kept.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::errors::{ApiError, json_of, limited};
use super::{ApiState, ErrorBody};
use crate::engine::{Analyze, FrameJob, Tracking};
use crate::server::codes::FrameRefusal;
use crate::server::protocol::decode_image;

/// The photo as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PhotoRequest {
    /// The photo, JPEG or PNG: base64, or a data URL.
    image: String,
    /// Whether the photo may match the user until a live enrollment exists (default false:
    /// it only gives `similarity_with_old_photo`).
    #[serde(default)]
    use_for_matching: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PhotoStored {
    user_id: String,
    use_for_matching: bool,
    /// `[x, y, width, height]` of the face found, in the photo's pixels.
    face_bbox: [f32; 4],
    quality_score: f32,
    message: &'static str,
}

/// A photo as uploaded: JSON (`PhotoRequest`) or `multipart/form-data` with the file in a
/// field `photo` (or `image`) and an optional field `use_for_matching` (`true`/`false`).
pub struct PhotoUpload {
    image: Vec<u8>,
    use_for_matching: bool,
}

impl FromRequest<ApiState> for PhotoUpload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, ApiError> {
        let max_image = state.max_photo_bytes;
        let multipart = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("multipart/form-data"));
        // Base64 is four characters for three bytes; the rest of a body is a few hundred.
        let request = limited(request, max_image / 3 * 4 + 4096).await?;
        let too_large = |bytes| FrameRefusal::TooLarge(bytes, max_image);
        if !multipart {
            let body: PhotoRequest = json_of(request).await?;
            let image = decode_image(&body.image, max_image).map_err(refused)?;
            return Ok(PhotoUpload {
                image,
                use_for_matching: body.use_for_matching,
            });
        }
        let mut form = Multipart::from_request(request, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut upload = PhotoUpload {
            image: Vec::new(),
            use_for_matching: false,
        };
        let bad =
            |e: axum::extract::multipart::MultipartError| ApiError::bad_request(e.body_text());
        while let Some(field) = form.next_field().await.map_err(bad)? {
            match field.name() {
                Some("photo" | "image") => {
                    upload.image = field.bytes().await.map_err(bad)?.to_vec()
                }
                Some("use_for_matching") => {
                    let text = field.text().await.map_err(bad)?;
                    upload.use_for_matching = match text.trim() {
                        "true" | "1" => true,
                        "false" | "0" | "" => false,
                        _ => {
                            return Err(ApiError::bad_request(
                                "use_for_matching must be true or false",
                            ));
                        }
                    };
                }
                _ => {}
            }
        }
        if upload.image.is_empty() {
            return Err(ApiError::bad_request(
                "the form needs the photo in a field `photo`",
            ));
        }
        if upload.image.len() > max_image {
            return Err(refused(too_large(upload.image.len())));
        }
        Ok(upload)
    }
}

/// A photo the engine refused, with the status its code names.
fn refused(refusal: FrameRefusal) -> ApiError {
    let status = StatusCode::from_u16(refusal.code()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, refusal.to_string())
}

#[utoipa::path(
    post,
    path = "/api/clients/users/{external_user_id}/photo/",
    tag = "users",
    params(("external_user_id" = String, Path, description = "the tenant's id for the user")),
    request_body = PhotoRequest,
    responses(
        (status = 201, body = PhotoStored),
        (status = 400, body = ErrorBody, description = "no face, or too small to recognise"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody, description = "not a JPEG or PNG"),
    )
)]
pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    Path(user): Path<String>,
    photo: PhotoUpload,
) -> Result<(StatusCode, axum::Json<PhotoStored>), ApiError> {
    let client = &caller.client.id;
    if state.tenants.store().user(client, &user).await?.is_none() {
        return Err(ApiError::not_found("User"));
    }
    let engine = &state.engine;
    let header = crate::frame::Header::read(&photo.image);
    let frame = engine
        .prepare(photo.image, header)
        .await
        .map_err(|not_prepared| refused(not_prepared.into()))?;
    let reply = engine.analyze(FrameJob {
        frame,
        tracking: Tracking::default(),
        session: state.next_job.fetch_add(1, Ordering::Relaxed),
        received: Instant::now(),
        wants_template: true,
        // A reference photo is a photo (often of a document): there is nothing live to judge.
        wants_spoof_score: false,
    });
    let reply = reply.await.map_err(|_| refused(FrameRefusal::Overloaded))?;
    let analysis = FrameRefusal::of_outcome(reply.outcome).map_err(refused)?;
    let (Some(measures), Some(template)) = (&analysis.first_face, analysis.template) else {
        return Err(ApiError::bad_request("No face found in the photo"));
    };
    let template = template.map_err(|problem| ApiError::bad_request(problem.to_string()))?;
    state
        .identity
        .store_photo(client, &user, &template, photo.use_for_matching)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PhotoStored {
            user_id: user,
            use_for_matching: photo.use_for_matching,
            face_bbox: measures.face_box,
            quality_score: measures.quality.score,
            message: "Reference photo stored (its face's template only; the image is not kept)",
        }),
    ))
}
