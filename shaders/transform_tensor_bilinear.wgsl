// The attention model's TransformTensorBilinear (MediaPipe's custom TFLite operator, version 2):
// cut a small patch out of a feature map along a 4x4 matrix, one matrix per batch item.
//
// The GPU twin of `transform_tensor_bilinear` in src/models/attention/custom_ops.rs. Output
// texel (x, y) samples the map at (M00 x + M01 y + tx, M10 x + M11 y + ty), where the op first
// moves the matrix from pixel corners to pixel centres (tx = M03 + (M00 + M01) / 2 - 1/2, and
// likewise ty). The sample blends its four neighbours; a sample outside the map is zero as a
// whole. Tensors are burn's: channels first, contiguous. One invocation writes one texel of one
// channel of one item.

@group(0) @binding(0) var<storage, read_write> features: array<f32>; // [N, C, H, W]
@group(0) @binding(1) var<storage, read_write> matrices: array<f32>; // [N, 16], row-major
@group(0) @binding(2) var<storage, read_write> patches: array<f32>;  // [N, C, PH, PW]
@group(0) @binding(3) var<storage, read_write> info: array<u32>;     // N, C, H, W, PH, PW

const WORKGROUP: u32 = {{ workgroup_size }}u;

@compute
@workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let items = info[0];
    let channels = info[1];
    let height = info[2];
    let width = info[3];
    let patch_height = info[4];
    let patch_width = info[5];
    // Large batches spread over a second grid dimension (at most 65535 workgroups per axis).
    let index = (workgroup.y * workgroups.x + workgroup.x) * WORKGROUP + local;
    if index >= items * channels * patch_height * patch_width {
        return;
    }
    let x = index % patch_width;
    let y = (index / patch_width) % patch_height;
    let channel = (index / (patch_width * patch_height)) % channels;
    let item = index / (patch_width * patch_height * channels);

    let m = item * 16u;
    let shift_x = matrices[m + 3u] + matrices[m] * 0.5 + matrices[m + 1u] * 0.5 - 0.5;
    let shift_y = matrices[m + 7u] + matrices[m + 4u] * 0.5 + matrices[m + 5u] * 0.5 - 0.5;
    let sample_x = matrices[m] * f32(x) + matrices[m + 1u] * f32(y) + shift_x;
    let sample_y = matrices[m + 4u] * f32(x) + matrices[m + 5u] * f32(y) + shift_y;

    var value = 0.0;
    let inside = sample_x >= 0.0 && sample_x <= f32(width - 1u)
        && sample_y >= 0.0 && sample_y <= f32(height - 1u);
    if inside {
        let left = floor(sample_x);
        let top = floor(sample_y);
        let right_weight = sample_x - left;
        let lower_weight = sample_y - top;
        let column = u32(left);
        let row = u32(top);
        // The right or lower neighbour is past the edge only when its weight is zero.
        let right = min(column + 1u, width - 1u);
        let lower = min(row + 1u, height - 1u);
        let plane = (item * channels + channel) * height * width;
        let upper = (1.0 - right_weight) * features[plane + row * width + column]
            + right_weight * features[plane + row * width + right];
        let under = (1.0 - right_weight) * features[plane + lower * width + column]
            + right_weight * features[plane + lower * width + right];
        value = lower_weight * under + (1.0 - lower_weight) * upper;
    }
    patches[index] = value;
}
