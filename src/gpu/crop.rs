//! Launching `shaders/crop.wgsl`: a batch of rotated crops, cut on the GPU from 8-bit frames
//! uploaded once, written as the normalised `[N, 3, H, W]` model input.
//!
//! Raw wgpu rather than burn's custom-kernel API: the kernel reads packed 8-bit frames and a
//! table of per-crop affine maps, neither of which is a burn tensor, and plain wgpu keeps the
//! launch code short and readable. The CPU twin is `pipeline::crop`; `tests/shaders.rs` holds
//! the two equal.

use bytemuck::{Pod, Zeroable};
use image::RgbImage;
use wgpu::util::DeviceExt;

use crate::pipeline::crop::{Affine, Border, PixelRect};

const SHADER: &str = include_str!("../../shaders/crop.wgsl");
const WORKGROUP: u32 = 8;

/// One crop: which uploaded frame, and which rectangle of it.
#[derive(Debug, Clone, Copy)]
pub struct CropJob {
    pub frame: usize,
    pub rect: PixelRect,
}

/// The shader's `Job`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct GpuJob {
    map: [f32; 6],
    frame_offset: u32,
    frame_width: u32,
    frame_height: u32,
    border_zero: u32,
    range: [f32; 2],
}

/// The shader's `Params`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Params {
    out_width: u32,
    out_height: u32,
    jobs: u32,
    padding: u32,
}

/// The compiled crop pipeline on one wgpu device.
pub struct GpuCrop {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
}

impl GpuCrop {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("crop.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("crop"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Self {
            device,
            queue,
            pipeline,
        }
    }

    /// A device of its own on the adapter wgpu prefers, or None when there is no adapter.
    pub fn on_default_adapter() -> Option<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY,
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        let adapter = pollster::block_on(instance.request_adapter(&Default::default())).ok()?;
        let (device, queue) =
            pollster::block_on(adapter.request_device(&Default::default())).ok()?;
        Some(Self::new(device, queue))
    }

    /// Cuts every job out of its frame into `out_width` x `out_height`, mapped onto `range`,
    /// and reads the `[jobs, 3, out_height, out_width]` values back.
    pub fn crop(
        &self,
        frames: &[&RgbImage],
        jobs: &[CropJob],
        (out_width, out_height): (u32, u32),
        border: Border,
        range: [f32; 2],
    ) -> Vec<f32> {
        // Frames go up once, back to back, padded to whole words.
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(frames.len());
        for frame in frames {
            offsets.push(bytes.len() as u32);
            bytes.extend_from_slice(frame.as_raw());
        }
        bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
        let gpu_jobs: Vec<GpuJob> = jobs
            .iter()
            .map(|job| {
                let frame = frames[job.frame];
                let m = Affine::rect_to_output(&job.rect, out_width, out_height);
                GpuJob {
                    map: [m.a, m.b, m.c, m.d, m.e, m.f].map(|v| v as f32),
                    frame_offset: offsets[job.frame],
                    frame_width: frame.width(),
                    frame_height: frame.height(),
                    border_zero: u32::from(border == Border::Zero),
                    range,
                }
            })
            .collect();
        let params = Params {
            out_width,
            out_height,
            jobs: jobs.len() as u32,
            padding: 0,
        };
        let output_len = jobs.len() * 3 * (out_width * out_height) as usize;
        let output_bytes = (output_len * std::mem::size_of::<f32>()).max(4) as u64;

        let storage = |label, contents: &[u8]| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let frames_buffer = storage("frames", &bytes);
        let jobs_buffer = storage("jobs", bytemuck::cast_slice(&gpu_jobs));
        let params_buffer = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let output = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("crops"),
            size: output_bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("crops readback"),
            size: output_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("crop"),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                entry(0, &frames_buffer),
                entry(1, &jobs_buffer),
                entry(2, &output),
                entry(3, &params_buffer),
            ],
        });

        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(
                out_width.div_ceil(WORKGROUP),
                out_height.div_ceil(WORKGROUP),
                jobs.len() as u32,
            );
        }
        encoder.copy_buffer_to_buffer(&output, 0, &readback, 0, output_bytes);
        self.queue.submit([encoder.finish()]);

        let slice = readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |result| {
            result.expect("mapping the crop readback buffer")
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .expect("waiting for the crop kernel");
        let mapped = slice
            .get_mapped_range()
            .expect("the readback buffer was just mapped");
        let values = bytemuck::cast_slice::<u8, f32>(&mapped)[..output_len].to_vec();
        drop(mapped);
        readback.unmap();
        values
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}
