//! `shaders/crop.wgsl` on the GPU: a batch of rotated crops cut from 8-bit frames uploaded
//! once, written straight into the model's normalised `[N, 3, H, W]` input tensor.
//!
//! The shader is launched through burn's template kernels as a backend extension, on burn's
//! own buffers: the crops never come back to the host, and Fusion queues the launch with the
//! model's first layers. Only the frames' bytes travel (packed four to a word in an int
//! tensor), with one small table of affine maps. The CPU twin is `crop::cpu` followed by
//! `models::input::images_to_tensor`; `tests/shaders.rs` holds the two equal.

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{CubeBackend, into_contiguous};
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, Int, Shape, Tensor, TensorData};
use burn_cubecl::cubecl::{CubeCount, CubeDim};
use image::RgbImage;

use crate::gpu::wgsl::{WgslShader, launch, new_output, word};
use crate::pipeline::crop::geometry::{Affine, Border, PixelRect};

const SHADER: &str = include_str!("../../../shaders/crop.wgsl");
/// Workgroups are this many output pixels on a side.
const WORKGROUP: u32 = 8;
const MAP_VALUES: usize = 8;
const PLACEMENT_VALUES: usize = 4;

/// One crop: which frame of the batch, and which rectangle of it.
#[derive(Debug, Clone, Copy)]
pub struct CropJob {
    pub frame: usize,
    pub rect: PixelRect,
}

/// Cuts every job out of its frame into `out_width` x `out_height`, each byte mapped onto
/// `range`, as a `[jobs, 3, out_height, out_width]` tensor on `device`, a wgpu device.
pub fn crop_on_device(
    frames: &[&RgbImage],
    jobs: &[CropJob],
    (out_width, out_height): (u32, u32),
    border: Border,
    range: [f32; 2],
    device: &Device,
) -> Tensor<4> {
    // Frames go up once, back to back, as little-endian words.
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(frames.len());
    for frame in frames {
        offsets.push(bytes.len());
        bytes.extend_from_slice(frame.as_raw());
    }
    bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
    let words_of_frames: Vec<i32> = bytes
        .chunks_exact(4)
        .map(|w| i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let mut maps = Vec::with_capacity(jobs.len() * MAP_VALUES);
    let mut placements = Vec::with_capacity(jobs.len() * PLACEMENT_VALUES);
    for job in jobs {
        let frame = frames[job.frame];
        let m = Affine::rect_to_output(&job.rect, out_width, out_height);
        maps.extend([m.a, m.b, m.c, m.d, m.e, m.f].map(|v| v as f32));
        maps.extend(range);
        placements.extend([
            i32::try_from(offsets[job.frame]).expect("a batch's frames are under 2 GiB"),
            frame.width() as i32,
            frame.height() as i32,
            i32::from(border == Border::Zero),
        ]);
    }
    let words = |values: Vec<i32>| {
        let len = values.len();
        Tensor::<1, Int>::from_data(TensorData::new(values, [len]), device)
    };
    let frames = words(words_of_frames);
    let maps = Tensor::<2>::from_data(TensorData::new(maps, [jobs.len(), MAP_VALUES]), device);
    let placements = words(placements);
    Tensor::from_dispatch(<Dispatch as FrameCrop>::crop_frames(
        frames.into_dispatch(),
        maps.into_dispatch(),
        placements.into_dispatch(),
        out_width as usize,
        out_height as usize,
    ))
}

#[backend_extension(Cube, Fusion)]
pub trait FrameCrop: Backend {
    /// `frames`: the frames' bytes, four to a word; `maps` `[jobs, 8]`; `placements`
    /// `[jobs * 4]` -> `[jobs, 3, out_height, out_width]`.
    #[fusion(meta = crop_spec)]
    fn crop_frames(
        frames: IntTensor<Self>,
        maps: FloatTensor<Self>,
        placements: IntTensor<Self>,
        out_width: usize,
        out_height: usize,
    ) -> FloatTensor<Self>;
}

/// The output's shape and type, for Fusion to queue the launch before it runs.
fn crop_spec(
    _frames: &TensorSpec,
    maps: &TensorSpec,
    _placements: &TensorSpec,
    out_width: &usize,
    out_height: &usize,
) -> TensorSpec {
    let jobs = maps.shape.dims::<2>()[0];
    TensorSpec::new(Shape::new([jobs, 3, *out_height, *out_width]), DType::F32)
}

impl FrameCrop for CubeBackend {
    fn crop_frames(
        frames: IntTensor<Self>,
        maps: FloatTensor<Self>,
        placements: IntTensor<Self>,
        out_width: usize,
        out_height: usize,
    ) -> FloatTensor<Self> {
        for (name, tensor) in [("frames", &frames), ("placements", &placements)] {
            assert_eq!(
                tensor.dtype.size(),
                4,
                "the crop shader reads {name} as 32-bit words"
            );
        }
        assert_eq!(maps.dtype, DType::F32, "the crop shader reads float32 maps");
        let (frames, maps, placements) = (
            into_contiguous(frames),
            into_contiguous(maps),
            into_contiguous(placements),
        );
        let jobs = maps.meta.shape().dims::<2>()[0];
        let output = new_output(&maps, Shape::new([jobs, 3, out_height, out_width]));
        let info = [word(out_width), word(out_height), word(jobs)];
        let info = maps.client.create_from_slice(bytemuck::cast_slice(&info));
        let count = CubeCount::Static(
            word(out_width).div_ceil(WORKGROUP),
            word(out_height).div_ceil(WORKGROUP),
            word(jobs),
        );
        let shader = WgslShader {
            name: "crop.wgsl",
            source: SHADER,
            workgroup_size: WORKGROUP,
        };
        let buffers = vec![
            frames.handle.clone(),
            maps.handle.clone(),
            placements.handle.clone(),
            output.handle.clone(),
            info,
        ];
        launch(
            &maps,
            shader,
            CubeDim::new_2d(WORKGROUP, WORKGROUP),
            count,
            buffers,
        );
        output
    }
}
