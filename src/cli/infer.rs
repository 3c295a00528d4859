//! `face-service infer`: one raw model on one image resized to its input size, outputs as JSON.

use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use serde_json::json;

use crate::cli::{AnyError, ModelArgs};
use crate::models::ModelKind;
use crate::models::input::images_to_tensor;
use crate::pipeline::detection::sigmoid;

/// Which model, on which image.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// Which model.
    #[arg(long, value_enum, default_value = "landmarks")]
    pub model: RawModel,
    /// The image (JPEG or PNG).
    pub image: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RawModel {
    Detector,
    Landmarks,
}

/// Prints the raw outputs of one model on one image.
pub fn run(args: InferArgs, models: &ModelArgs) -> Result<(), AnyError> {
    let models = &models.load()?;
    let (model, path) = (args.model, &args.image);
    let kind = match model {
        RawModel::Detector => ModelKind::Detector,
        RawModel::Landmarks => models.landmarker.kind(),
    };
    let input = kind.description().input;
    let image = image::open(path)?.to_rgb8();
    // A plain resize (no letterbox, no face crop): this shows the raw model, not the pipeline.
    let resized = image::imageops::resize(
        &image,
        input.width as u32,
        input.height as u32,
        image::imageops::FilterType::Triangle,
    );
    let tensor = images_to_tensor(&[&resized], &input, &models.device.device)?;
    let started = Instant::now();
    let mut report = match model {
        RawModel::Landmarks => {
            let mut output = models.landmarker.forward(tensor);
            let logit = output.face_presence[0][0];
            let presence = sigmoid(logit);
            let points = output.landmarks.swap_remove(0);
            json!({
                "face_presence_logit": logit,
                "face_presence": presence,
                "landmarks": points.chunks(3).collect::<Vec<_>>(),
            })
        }
        RawModel::Detector => {
            let output = models.detector.forward(tensor);
            let scores = output.scores.into_data().try_to_vec::<f32>()?;
            let regressors = output.regressors.into_data().try_to_vec::<f32>()?;
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
            let best: Vec<_> = order
                .iter()
                .take(5)
                .map(|&anchor| {
                    json!({
                        "anchor": anchor,
                        "score_logit": scores[anchor],
                        "regressors": &regressors[anchor * 16..anchor * 16 + 16],
                    })
                })
                .collect();
            json!({ "best_anchors": best })
        }
    };
    report["model"] = json!(kind.description().name);
    report["image"] = json!(path);
    report["device"] = json!(models.device.backend.to_string());
    report["input_size"] = json!([input.width, input.height]);
    report["forward_ms"] = json!(started.elapsed().as_secs_f64() * 1e3);
    println!("{report}");
    Ok(())
}
