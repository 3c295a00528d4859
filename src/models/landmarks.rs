//! FaceMesh, MediaPipe's 468-point face landmark model, as a burn module.
//!
//! Input `[N, 3, 192, 192]` in [0, 1], a crop around one face; outputs per batch item 1404
//! values (468 points of x, y, z in crop pixels) and one face-presence logit. A shared trunk
//! runs down to 6x6, where the network forks into the mesh head and the face-flag head. The
//! tables below are read off `shared/reference/face_landmark.txt`.

use std::borrow::Cow;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::models::description::ModelKind;
use crate::models::head::{Head, HeadLayout, load_block};
use crate::models::layers::{After, BlockShape, Convolution, ResidualBlock, block};
use crate::models::read_rows;
use crate::models::weights::{LayerLoader, Padding, WeightError, WeightFile};

const STEM_CHANNELS: usize = 16;

/// Trunk blocks in file order: block `i` (from 1) uses `depthwise_conv2d_{i}`,
/// `conv2d_{i+1}` and `p_re_lu_{i+1}`. It ends at 6x6x128, where the heads fork.
const TRUNK: [BlockShape; 14] = [
    block(16, 16, 1),
    block(16, 16, 1),
    block(16, 32, 2),
    block(32, 32, 1),
    block(32, 32, 1),
    block(32, 64, 2),
    block(64, 64, 1),
    block(64, 64, 1),
    block(64, 128, 2),
    block(128, 128, 1),
    block(128, 128, 1),
    block(128, 128, 2),
    block(128, 128, 1),
    block(128, 128, 1),
];

const MESH_HEAD: HeadLayout = HeadLayout {
    blocks: Cow::Borrowed(&[
        (block(128, 128, 2), [15, 16, 16]),
        (block(128, 128, 1), [16, 17, 17]),
        (block(128, 128, 1), [17, 18, 18]),
    ]),
    projection: [19, 19],
    last_block: [18, 20, 20],
    output: "conv2d_21",
    output_kernel: 3,
    outputs: 1404,
};

const FACE_FLAG_HEAD: HeadLayout = HeadLayout {
    blocks: Cow::Borrowed(&[(block(128, 128, 2), [23, 28, 26])]),
    projection: [29, 27],
    last_block: [24, 30, 28],
    output: "conv2d_31",
    output_kernel: 3,
    outputs: 1,
};

#[derive(Module, Debug)]
pub struct FaceLandmarker {
    stem: Convolution,
    trunk: Vec<ResidualBlock>,
    mesh: Head,
    face_flag: Head,
}

/// A landmark model's raw outputs for a batch, read back to the host, one row per face.
#[derive(Debug)]
pub struct LandmarkOutput {
    /// The points' (x, y, z) in crop pixels: 468 of them, or 478 with the attention model.
    pub landmarks: Vec<Vec<f32>>,
    /// The face-presence logit, alone in its row.
    pub face_presence: Vec<Vec<f32>>,
}

impl FaceLandmarker {
    pub fn load(weights: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let name = ModelKind::Landmarks.description().name;
        let loader = LayerLoader::new(weights, &name, device)?;
        let trunk = TRUNK
            .iter()
            .enumerate()
            .map(|(i, shape)| load_block(&loader, *shape, [i + 1, i + 2, i + 2]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            stem: Convolution::load(
                &loader,
                "conv2d_1",
                [3, STEM_CHANNELS],
                (3, 2),
                Padding::Same,
                After::Prelu("p_re_lu_1"),
            )?,
            trunk,
            mesh: Head::load(&loader, &MESH_HEAD)?,
            face_flag: Head::load(&loader, &FACE_FLAG_HEAD)?,
        })
    }

    pub fn forward(&self, input: Tensor<4>) -> LandmarkOutput {
        let mut x = self.stem.forward(input);
        for block in &self.trunk {
            x = block.forward(x);
        }
        let [landmarks, face_presence] =
            read_rows([self.mesh.forward(x.clone()), self.face_flag.forward(x)]);
        LandmarkOutput {
            landmarks,
            face_presence,
        }
    }
}
