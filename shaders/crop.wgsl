// Cut rotated regions out of 8-bit RGB frames into a normalised float model input.
//
// The GPU twin of src/pipeline/crop.rs, which reproduces MediaPipe's CPU crop (OpenCV
// warpPerspective, INTER_LINEAR on 8-bit images): sample positions rounded to 1/32 pixel,
// 15-bit integer bilinear weights, the result rounded to 8 bits, then mapped onto the
// model's input range. One invocation writes the three channels of one output pixel of one
// job; jobs may read different frames of the same upload.

// Launched on burn's tensors (src/gpu/crop.rs), so every binding is a storage buffer.
// Per job, `maps` holds the affine map from output pixel (u, v) to frame position,
// x = a u + b v + c and y = d u + e v + f, then the model's input range that 0..=255 maps
// onto; `placements` holds where the frame's RGB bytes start in `frames`, its width and height,
// and 1 for black outside the frame (the detector's letterbox) or 0 for the nearest edge pixel.
@group(0) @binding(0) var<storage, read_write> frames: array<u32>;     // bytes, four to a word
@group(0) @binding(1) var<storage, read_write> maps: array<f32>;       // [jobs, 8]
@group(0) @binding(2) var<storage, read_write> placements: array<u32>; // [jobs, 4]
@group(0) @binding(3) var<storage, read_write> output: array<f32>;     // [jobs, 3, H, W]
@group(0) @binding(4) var<storage, read_write> info: array<u32>;       // W, H, jobs

struct Job {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    e: f32,
    f: f32,
    range_lo: f32,
    range_hi: f32,
    frame_offset: u32,
    frame_width: u32,
    frame_height: u32,
    border_zero: u32,
};

fn job_at(index: u32) -> Job {
    let m = index * 8u;
    let p = index * 4u;
    return Job(maps[m], maps[m + 1u], maps[m + 2u], maps[m + 3u], maps[m + 4u], maps[m + 5u],
               maps[m + 6u], maps[m + 7u],
               placements[p], placements[p + 1u], placements[p + 2u], placements[p + 3u]);
}

const SUBPIXEL_BITS: u32 = 5u;
const SUBPIXEL_STEPS: f32 = 32.0;
const WEIGHT_BITS: u32 = 15u;

// Frames arrive as bytes packed four to a word.
fn frame_byte(index: u32) -> i32 {
    return i32((frames[index >> 2u] >> ((index & 3u) * 8u)) & 0xffu);
}

fn tap(job: Job, x: i32, y: i32, channel: u32) -> i32 {
    let width = i32(job.frame_width);
    let height = i32(job.frame_height);
    var px = x;
    var py = y;
    if (job.border_zero == 1u) {
        if (x < 0 || y < 0 || x >= width || y >= height) {
            return 0;
        }
    } else {
        px = clamp(x, 0, width - 1);
        py = clamp(y, 0, height - 1);
    }
    return frame_byte(job.frame_offset + u32(py * width + px) * 3u + channel);
}

@compute @workgroup_size({{ workgroup_size }}, {{ workgroup_size }}, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let out_width = info[0];
    let out_height = info[1];
    if (id.x >= out_width || id.y >= out_height || id.z >= info[2]) {
        return;
    }
    let job = job_at(id.z);
    let u = f32(id.x);
    let v = f32(id.y);
    // Position in 1/32 pixels; round() is round-half-to-even, as on the CPU.
    let x = i32(round((job.a * u + job.b * v + job.c) * SUBPIXEL_STEPS));
    let y = i32(round((job.d * u + job.e * v + job.f) * SUBPIXEL_STEPS));
    let x0 = x >> SUBPIXEL_BITS;
    let y0 = y >> SUBPIXEL_BITS;
    let fx = x & 31;
    let fy = y & 31;
    let gx = 32 - fx;
    let gy = 32 - fy;
    // 32 * 32 steps * 32 = 2^15: the weights are exact and sum to one.
    let w00 = gx * gy * 32;
    let w10 = fx * gy * 32;
    let w01 = gx * fy * 32;
    let w11 = fx * fy * 32;
    let plane = out_width * out_height;
    let pixel = id.y * out_width + id.x;
    for (var channel = 0u; channel < 3u; channel++) {
        let sum = w00 * tap(job, x0, y0, channel) + w10 * tap(job, x0 + 1, y0, channel)
            + w01 * tap(job, x0, y0 + 1, channel) + w11 * tap(job, x0 + 1, y0 + 1, channel);
        let value = clamp((sum + (1 << (WEIGHT_BITS - 1u))) >> WEIGHT_BITS, 0, 255);
        output[(id.z * 3u + channel) * plane + pixel] =
            job.range_lo + (job.range_hi - job.range_lo) * (f32(value) / 255.0);
    }
}
