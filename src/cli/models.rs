//! `face-service models`: what is loaded, from where, on which device.

use burn::module::Module;

use crate::cli::{AnyError, ModelArgs};
use crate::models::{ModelKind, WeightFile, load_recognizer};
use crate::tflite::TfliteModel;

/// Prints each model's input, weight file and parameters, and the device.
pub fn run(args: &ModelArgs) -> Result<(), AnyError> {
    let models = args.load()?;
    let options = args.options();
    println!("device: {}", models.device.backend);
    for kind in ModelKind::ALL {
        let description = kind.description();
        let file = WeightFile::load(kind, &options.weights, options.verify_checksum)?;
        let (in_file, loaded) = if kind == ModelKind::Recognition {
            // Its batch normalisations are folded into the layers at load, so it holds fewer
            // parameters than the file.
            let recognizer = load_recognizer(&models.device, &options)?;
            ("an ONNX graph".to_owned(), recognizer.num_params())
        } else {
            let in_file = TfliteModel::parse(&file.bytes)?.float_constant_count();
            match models.parameter_count(kind) {
                Some(count) => (format!("{in_file} weights"), count),
                None => {
                    println!(
                        "{:<26} not loaded (the other landmark model is; see --refine-landmarks)",
                        description.name
                    );
                    continue;
                }
            }
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
