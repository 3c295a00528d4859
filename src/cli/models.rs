//! `face-service models`: what is loaded, from where, on which device.

use crate::cli::{AnyError, ModelArgs};
use crate::models::{ModelKind, WeightFile};
use crate::tflite::TfliteModel;

/// Prints each model's input, weight file and parameters, and the device.
pub fn run(args: &ModelArgs) -> Result<(), AnyError> {
    let models = args.load()?;
    let options = args.options();
    println!("device: {}", models.device.backend);
    for kind in ModelKind::ALL {
        let description = kind.description();
        let file = WeightFile::load(kind, &options.weights, options.verify_checksum)?;
        let in_file = TfliteModel::parse(&file.bytes)?.float_constant_count();
        let loaded = match models.parameter_count(kind) {
            Some(count) => format!("{count} parameters loaded"),
            None => "not loaded (the other landmark model is; see --refine-landmarks)".to_owned(),
        };
        println!(
            "{:<26} {}x{} input, {} weights in {} ({}), {loaded}",
            description.name,
            description.input.width,
            description.input.height,
            in_file,
            file.path.display(),
            &description.sha256[..12],
        );
    }
    Ok(())
}
