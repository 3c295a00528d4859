//! FaceMesh with attention: MediaPipe's 478-point landmark model (the mesh, refined lips and
//! eyes, and the irises), what the seed runs with `refine_landmarks=True`.
//!
//! ```text
//! [N,3,192,192] -> trunk ─┬─ block 2: feature map [N,32,48,48] ───────────────┐
//!                         └─ 3x3x128 -> projection -> mesh [N,1404], face flag │
//!   mesh -> per region: Landmarks2TransformMatrix -> 4x4 matrix               │
//!   matrix + feature map -> TransformTensorBilinear -> patch [N,32,16,16] <───┘
//!   patch -> region trunk -> heads (lips | eye, iris) -> TransformLandmarks -> refine
//! ```
//!
//! The layers are burn modules like the 468-point model's; the three custom operators (their
//! options read from the file) are a backend extension (`kernels.rs`): WGSL shaders on the GPU,
//! their CPU twins (`custom_ops.rs`) on the CPU, so the whole pass stays queued on the device
//! and its answers are read back once. The 478 points are put together on the host
//! (`refinement.rs`).

pub mod custom_ops;
pub mod kernels;
pub mod refinement;

use std::borrow::Cow;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::models::description::ModelKind;
use crate::models::head::{Head, HeadLayout, load_block};
use crate::models::landmarks::LandmarkOutput;
use crate::models::layers::{After, BlockShape, Convolution, ResidualBlock, block};
use crate::models::read_rows;
use crate::models::weights::{LayerLoader, Padding, WeightError, WeightFile};
use custom_ops::{Matrix4, RegionTransform};
use kernels::{sample_patches, transform_matrices, transform_points};
use refinement::{MESH_POINTS, RegionOutputs, refine};

const STEM_CHANNELS: usize = 16;
const TOP_CHANNELS: usize = 32;

/// Trunk blocks in file order: block `i` uses `depthwise_conv2d_{i}` (unnumbered for 0),
/// `conv2d_{i+1}` and `p_re_lu_{i+1}`. It ends at 3x3x128.
const TRUNK: [BlockShape; 17] = [
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
    block(128, 128, 2),
    block(128, 128, 1),
    block(128, 128, 1),
];

/// The trunk block whose output (`p_re_lu_3`, 48x48x32) the region patches are cut from.
const FEATURE_MAP_BLOCK: usize = 2;

/// Each region's trunk: from its 16x16x32 patch down to 4x4x128.
const REGION_TRUNK: [BlockShape; 6] = [
    block(32, 32, 1),
    block(32, 32, 1),
    block(32, 64, 2),
    block(64, 64, 1),
    block(64, 64, 1),
    block(64, 128, 2),
];

/// Each region head's blocks before its projection, from 4x4 to 2x2.
const REGION_HEAD: [BlockShape; 5] = [
    block(128, 128, 1),
    block(128, 128, 1),
    block(128, 128, 2),
    block(128, 128, 1),
    block(128, 128, 1),
];

/// Where one region's tensors and operators are in the file.
struct RegionLayout {
    /// Output of its `Landmarks2TransformMatrix` (the same matrix feeds its sampling).
    transform: &'static str,
    /// The scale from mesh (192x192 crop) to feature-map (48x48) pixels, `[1]`.
    mesh_scale: &'static str,
    /// The elementwise scale that turns the matrix into the one for its landmarks, `[1,4,4]`.
    matrix_scale: &'static str,
    /// First [depthwise, pointwise/prelu] numbers of its trunk; they count up from there.
    trunk: [usize; 2],
    /// (output convolution, outputs, first [depthwise, pointwise/prelu] numbers) per head.
    heads: &'static [(&'static str, usize, [usize; 2])],
}

/// In output order: lips, left eye, left iris, right eye, right iris.
const REGIONS: [RegionLayout; 3] = [
    RegionLayout {
        transform: "landmarks_to_transform_matrix_v2",
        mesh_scale: "multiply_by_constant/Constant",
        matrix_scale: "multiply_by_constant_1/Constant",
        trunk: [18, 20],
        heads: &[("conv_lips", 160, [24, 26])],
    },
    RegionLayout {
        transform: "landmarks_to_transform_matrix_v2_1",
        mesh_scale: "multiply_by_constant_2/Constant",
        matrix_scale: "multiply_by_constant_3/Constant",
        trunk: [30, 33],
        heads: &[
            ("conv_left_eye", 142, [36, 39]),
            ("conv_left_iris", 10, [42, 46]),
        ],
    },
    RegionLayout {
        transform: "landmarks_to_transform_matrix_v2_2",
        mesh_scale: "multiply_by_constant_4/Constant",
        matrix_scale: "multiply_by_constant_5/Constant",
        trunk: [48, 53],
        heads: &[
            ("conv_right_eye", 142, [54, 59]),
            ("conv_right_iris", 10, [60, 66]),
        ],
    },
];

/// A region head: five blocks numbered up from [depthwise, pointwise], the projection and
/// last block after them, and a 2x2 output convolution over the 2x2 map.
fn region_head(
    output: &'static str,
    outputs: usize,
    [depthwise, pointwise]: [usize; 2],
) -> HeadLayout {
    HeadLayout {
        blocks: Cow::Owned(
            REGION_HEAD
                .iter()
                .enumerate()
                .map(|(i, &shape)| (shape, [depthwise + i, pointwise + i, pointwise + i]))
                .collect(),
        ),
        projection: [pointwise + 5, pointwise + 5],
        last_block: [depthwise + 5, pointwise + 6, pointwise + 6],
        output,
        output_kernel: 2,
        outputs,
    }
}

#[derive(Module, Debug)]
struct Region {
    trunk: Vec<ResidualBlock>,
    heads: Vec<Head>,
    #[module(skip)]
    transform: RegionTransform,
    #[module(skip)]
    mesh_scale: f32,
    #[module(skip)]
    matrix_scale: Matrix4,
}

impl Region {
    fn load(loader: &LayerLoader<'_>, layout: &RegionLayout) -> Result<Self, WeightError> {
        let [depthwise, pointwise] = layout.trunk;
        let trunk = REGION_TRUNK
            .iter()
            .enumerate()
            .map(|(i, &shape)| {
                load_block(loader, shape, [depthwise + i, pointwise + i, pointwise + i])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let heads = layout
            .heads
            .iter()
            .map(|&(output, outputs, first)| {
                Head::load(loader, &region_head(output, outputs, first))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = loader.custom_options("Landmarks2TransformMatrix", layout.transform)?;
        let transform = RegionTransform::from_options(&options, MESH_POINTS)
            .map_err(|source| loader.in_file(source))?;
        let matrix_scale = loader.constant(layout.matrix_scale, &[1, 4, 4])?;
        Ok(Self {
            trunk,
            heads,
            transform,
            mesh_scale: loader.constant(layout.mesh_scale, &[1])?[0],
            matrix_scale: matrix_scale.try_into().expect("checked to be 4x4"),
        })
    }

    /// The region's outputs for a batch of meshes `[N, 1404]` and the feature map they came
    /// with: one `[N, K * 2]` tensor per head, in crop pixels.
    fn forward(&self, mesh: Tensor<2>, feature_map: Tensor<4>) -> Vec<Tensor<2>> {
        let matrices = transform_matrices(mesh, &self.transform, self.mesh_scale);
        let mut x = sample_patches(feature_map, matrices.clone(), self.patch_size());
        for block in &self.trunk {
            x = block.forward(x);
        }
        self.heads
            .iter()
            .map(|head| {
                transform_points(head.forward(x.clone()), matrices.clone(), self.matrix_scale)
            })
            .collect()
    }

    fn patch_size(&self) -> (usize, usize) {
        (self.transform.output_width, self.transform.output_height)
    }
}

#[derive(Module, Debug)]
pub struct FaceLandmarkerWithAttention {
    stem: Convolution,
    trunk: Vec<ResidualBlock>,
    projection: Convolution,
    last_block: ResidualBlock,
    mesh: Convolution,
    face_flag: Convolution,
    regions: Vec<Region>,
}

impl FaceLandmarkerWithAttention {
    pub fn load(weights: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        let name = ModelKind::LandmarksWithAttention.description().name;
        let loader = LayerLoader::new(weights, &name, device)?;
        let trunk = TRUNK
            .iter()
            .enumerate()
            .map(|(i, &shape)| load_block(&loader, shape, [i, i + 1, i + 1]))
            .collect::<Result<Vec<_>, _>>()?;
        let last = TRUNK.len();
        Ok(Self {
            stem: Convolution::load(
                &loader,
                "conv2d",
                [3, STEM_CHANNELS],
                (3, 2),
                Padding::Same,
                After::Prelu("p_re_lu"),
            )?,
            trunk,
            projection: Convolution::load(
                &loader,
                &format!("conv2d_{}", last + 1),
                [128, TOP_CHANNELS],
                (1, 1),
                Padding::Valid,
                After::Prelu(&format!("p_re_lu_{}", last + 1)),
            )?,
            last_block: load_block(
                &loader,
                block(TOP_CHANNELS, TOP_CHANNELS, 1),
                [last, last + 2, last + 2],
            )?,
            mesh: Convolution::load(
                &loader,
                "output_mesh",
                [TOP_CHANNELS, 3 * MESH_POINTS],
                (3, 3),
                Padding::Valid,
                After::Nothing,
            )?,
            face_flag: Convolution::load(
                &loader,
                "conv_faceflag",
                [TOP_CHANNELS, 1],
                (3, 3),
                Padding::Valid,
                After::Nothing,
            )?,
            regions: REGIONS
                .iter()
                .map(|layout| Region::load(&loader, layout))
                .collect::<Result<Vec<_>, _>>()?,
        })
    }

    /// Float constants the model reads from the file besides its burn parameters (the scales
    /// of the regions' mesh and matrices), so that a test can account for every weight.
    pub fn constant_count(&self) -> usize {
        self.regions.len() * (1 + 16)
    }

    /// `[N, 3, 192, 192]` -> 478 points of (x, y, z) in crop pixels per face, and the
    /// face-presence logits.
    pub fn forward(&self, input: Tensor<4>) -> LandmarkOutput {
        let mut x = self.stem.forward(input);
        let mut feature_map = None;
        for (i, block) in self.trunk.iter().enumerate() {
            x = block.forward(x);
            if i == FEATURE_MAP_BLOCK {
                feature_map = Some(x.clone());
            }
        }
        let feature_map = feature_map.expect("the trunk runs past the feature map's block");
        let x = self.last_block.forward(self.projection.forward(x));
        let batch = x.dims()[0];
        let face_presence = self.face_flag.forward(x.clone()).reshape([batch, 1]);
        let mesh = self.mesh.forward(x).reshape([batch, 3 * MESH_POINTS]);
        // Everything stays queued on the device until this one read: the face flag, the mesh,
        // then lips, left eye, left iris, right eye and right iris.
        let regions = self
            .regions
            .iter()
            .flat_map(|region| region.forward(mesh.clone(), feature_map.clone()));
        let outputs: [Tensor<2>; 7] = [face_presence, mesh.clone()]
            .into_iter()
            .chain(regions)
            .collect::<Vec<_>>()
            .try_into()
            .expect("the regions have five heads");
        let [
            face_presence,
            mesh,
            lips,
            left_eye,
            left_iris,
            right_eye,
            right_iris,
        ] = read_rows(outputs);
        let landmarks = (0..batch)
            .map(|n| {
                refine(&RegionOutputs {
                    mesh: &mesh[n],
                    lips: &lips[n],
                    left_eye: &left_eye[n],
                    right_eye: &right_eye[n],
                    left_iris: &left_iris[n],
                    right_iris: &right_iris[n],
                })
            })
            .collect();
        LandmarkOutput {
            landmarks,
            face_presence,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::WeightSource;
    use crate::tflite::TfliteModel;

    fn load() -> FaceLandmarkerWithAttention {
        let file = WeightFile::load(
            ModelKind::LandmarksWithAttention,
            &WeightSource::Embedded,
            true,
        )
        .unwrap();
        FaceLandmarkerWithAttention::load(&file, &Device::flex()).unwrap()
    }

    /// Every float constant in the file is a burn parameter or one of the region scales.
    #[test]
    fn every_weight_in_the_file_is_used() {
        let model = load();
        let in_file = TfliteModel::parse(ModelKind::LandmarksWithAttention.embedded_weights())
            .unwrap()
            .float_constant_count();
        assert_eq!(model.num_params() + model.constant_count(), in_file);
    }

    /// The region tables here are MediaPipe's refinement mapping; the file's own operator
    /// options list the same points as each region's extent, which checks both.
    #[test]
    fn the_refinement_tables_are_the_regions_of_the_file() {
        let model = load();
        let subsets: Vec<&[usize]> = model
            .regions
            .iter()
            .map(|r| &r.transform.subset[..])
            .collect();
        assert_eq!(subsets[0], &refinement::LIPS[..]);
        assert_eq!(subsets[1], &refinement::LEFT_EYE[..]);
        assert_eq!(subsets[2], &refinement::RIGHT_EYE[..]);
    }
}
