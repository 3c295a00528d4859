// The attention model's TransformLandmarks (MediaPipe's custom TFLite operator, version 2, for
// 2D points): each of a region's points, predicted in its patch, mapped back by the first two
// rows of its face's matrix, after the matrix is scaled elementwise by the model's constant.
//
// The GPU twin of `transform_landmarks` in src/models/attention/custom_ops.rs. One invocation
// per point.

@group(0) @binding(0) var<storage, read_write> points: array<f32>;   // [N, K * 2]
@group(0) @binding(1) var<storage, read_write> matrices: array<f32>; // [N, 16], row-major
@group(0) @binding(2) var<storage, read_write> scale: array<f32>;    // [16]
@group(0) @binding(3) var<storage, read_write> mapped: array<f32>;   // [N, K * 2]
@group(0) @binding(4) var<storage, read_write> info: array<u32>;     // N, K

const WORKGROUP: u32 = {{ workgroup_size }}u;

@compute
@workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    // Large launches spread over a second grid dimension (at most 65535 workgroups per axis).
    let index = (workgroup.y * workgroups.x + workgroup.x) * WORKGROUP + local;
    let points_per_face = info[1];
    if index >= info[0] * points_per_face {
        return;
    }
    let face = index / points_per_face;
    let m = face * 16u;
    let x = points[2u * index];
    let y = points[2u * index + 1u];
    mapped[2u * index] = matrices[m] * scale[0] * x + matrices[m + 1u] * scale[1] * y
        + matrices[m + 3u] * scale[3];
    mapped[2u * index + 1u] = matrices[m + 4u] * scale[4] * x + matrices[m + 5u] * scale[5] * y
        + matrices[m + 7u] * scale[7];
}
