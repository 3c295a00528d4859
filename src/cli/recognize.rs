//! `face-service embed` and `face-service compare`: face templates of images, and how similar
//! the faces of images are, as JSON.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::{AnyError, ModelArgs};
use crate::frame;
use crate::matching::{Matcher, Template};
use crate::models::FaceModels;
use crate::pipeline::recognition::{FaceRecognition, RecognizedFace};

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Faces to find per image.
    #[arg(long, default_value_t = 4)]
    pub max_num_faces: usize,
    /// The images (JPEG or PNG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The images (JPEG or PNG), one face each; every pair is compared.
    #[arg(required = true, num_args = 2..)]
    pub images: Vec<PathBuf>,
}

/// The models both commands run: FaceMesh's and the recognition model.
fn load(args: &ModelArgs) -> Result<FaceModels, AnyError> {
    Ok(args.load()?.with_recognizer(&args.options())?)
}

/// The faces of one image file, or why it has none to give.
fn faces_in(recognition: &FaceRecognition<'_>, path: &Path) -> Result<Vec<RecognizedFace>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let frame = frame::decode(&bytes, frame::DEFAULT_MAX_SIDE).map_err(|e| e.to_string())?;
    let faces = recognition.faces(&frame).map_err(|e| e.to_string())?;
    if faces.is_empty() {
        return Err("no face found".into());
    }
    Ok(faces)
}

/// One JSON line per face: the image, the face's box and its template (128 numbers,
/// L2-normalised), or the reason it has none; an image without faces gets one line with its
/// error. Fails at the end if any image or face had no template.
pub fn embed(args: EmbedArgs, models: &ModelArgs) -> Result<(), AnyError> {
    let models = load(models)?;
    let recognition = FaceRecognition::new(&models, args.max_num_faces);
    let mut failures = 0;
    for path in &args.images {
        match faces_in(&recognition, path) {
            Ok(faces) => {
                for face in faces {
                    let line = match &face.template {
                        Ok(template) => json!({
                            "image": path,
                            "box": face.bounding_box,
                            "template": template.values().as_slice(),
                        }),
                        Err(problem) => {
                            failures += 1;
                            json!({ "image": path, "box": face.bounding_box, "error": problem.to_string() })
                        }
                    };
                    println!("{line}");
                }
            }
            Err(error) => {
                failures += 1;
                println!("{}", json!({ "image": path, "error": error }));
            }
        }
    }
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} images or faces had no template").into()),
    }
}

/// The similarity of every pair of images and the verdict at the model's threshold, as one
/// JSON document. An image must hold exactly one face that can be recognised.
pub fn compare(args: CompareArgs, models: &ModelArgs) -> Result<(), AnyError> {
    let models = load(models)?;
    // Two, so that an image with several faces is told apart from one with one.
    let recognition = FaceRecognition::new(&models, 2);
    let templates: Vec<Result<Template, String>> = args
        .images
        .iter()
        .map(|path| only_template(faces_in(&recognition, path)?))
        .collect();
    let matcher = Matcher::for_model();
    let mut pairs = Vec::new();
    for (i, a) in templates.iter().enumerate() {
        for (j, b) in templates.iter().enumerate().skip(i + 1) {
            if let (Ok(a), Ok(b)) = (a, b) {
                let comparison = matcher.compare(a, b);
                pairs.push(json!({
                    "a": args.images[i],
                    "b": args.images[j],
                    "similarity": comparison.similarity,
                    "same_person": comparison.same_person,
                }));
            }
        }
    }
    let images: Vec<Value> = args
        .images
        .iter()
        .zip(&templates)
        .map(|(path, template)| match template {
            Ok(_) => json!({ "image": path }),
            Err(error) => json!({ "image": path, "error": error }),
        })
        .collect();
    let failed = templates.iter().filter(|t| t.is_err()).count();
    println!(
        "{}",
        json!({ "threshold": matcher.threshold, "images": images, "pairs": pairs })
    );
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} images could not be compared").into()),
    }
}

fn only_template(faces: Vec<RecognizedFace>) -> Result<Template, String> {
    match <[RecognizedFace; 1]>::try_from(faces) {
        Ok([face]) => face.template.map_err(|problem| problem.to_string()),
        Err(faces) => Err(format!(
            "{} faces found; compare takes images of one face each",
            faces.len()
        )),
    }
}
