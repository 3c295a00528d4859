//! `face-service models`: what is loaded, from where, on which device.

use crate::cli::{AnyError, ModelArgs};
use crate::models::{ModelKind, WeightFile};
use crate::tflite::TfliteModel;

/// Prints each model's input, weight file and parameters, and the device.
pub fn run(args: &ModelArgs) -> Result<(), AnyError> {
    let options = args.options();
    let models = args.load()?.with_identity_models(&options)?;
    println!("device: {}", models.device.backend);
    for kind in ModelKind::ALL {
        let description = kind.description();
        let file = WeightFile::load(kind, &options.weights, options.verify_checksum)?;
        // The recognition and anti-spoofing models' batch normalisations are folded into their
        // layers at load, so they hold fewer parameters than their files.
        let in_file = match kind {
            ModelKind::Recognition => "an ONNX graph".to_owned(),
            ModelKind::AntiSpoofing => "two PyTorch state dicts".to_owned(),
            _ => format!(
                "{} weights",
                TfliteModel::parse(&file.bytes)?.float_constant_count()
            ),
        };
        let Some(loaded) = models.parameter_count(kind) else {
            println!(
                "{:<26} not loaded (the other landmark model is; see --refine-landmarks)",
                description.name
            );
            continue;
        };
        println!(
            "{:<26} {}x{} input, {in_file} in {} ({}), {loaded} parameters loaded",
            description.name,
            description.input.width,
            description.input.height,
            file.path.display(),
            &description.sha256[..12],
        );
    }
    Ok(())
}
