// The attention model's Landmarks2TransformMatrix (MediaPipe's custom TFLite operator,
// version 2): from one face's mesh, the 4x4 matrix that maps a pixel of a region's patch (the
// lips, or one eye) to a point of the 48x48 feature map.
//
// The GPU twin of `landmarks_to_transform_matrix` in src/models/attention/custom_ops.rs, in the
// same order of f32 operations: the region turned so that the line from its left to its right
// point is level, the box of its points in that frame, scaled up, centred, turned back. The
// CPU twin multiplies MediaPipe's four 4x4 matrices; the products are written out here (the
// terms it adds are exact zeros). One invocation per face.

@group(0) @binding(0) var<storage, read_write> mesh: array<f32>;     // [N, points * 3]
@group(0) @binding(1) var<storage, read_write> subset: array<u32>;   // the region's points
@group(0) @binding(2) var<storage, read_write> params: array<f32>;   // see below
@group(0) @binding(3) var<storage, read_write> matrices: array<f32>; // [N, 16], row-major
@group(0) @binding(4) var<storage, read_write> info: array<u32>;     // see below

// params: mesh scale (crop to feature-map pixels), target rotation, scale x, scale y.
// info: faces, floats per mesh, subset length, left point, right point, patch width, height.

fn point(face: u32, index: u32) -> vec2<f32> {
    let at = face * info[1] + index * 3u;
    return vec2<f32>(mesh[at] * params[0], mesh[at + 1u] * params[0]);
}

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
    let face = index;
    if face >= info[0] {
        return;
    }
    let left = point(face, info[3]);
    let right = point(face, info[4]);
    let rotation = params[1] - atan2(right.y - left.y, right.x - left.x);

    // The subset's box, measured in the frame turned by `rotation`.
    let s = sin(rotation);
    let c = cos(rotation);
    var low = vec2<f32>(3.40282347e38, 3.40282347e38);
    var high = vec2<f32>(-3.40282347e38, -3.40282347e38);
    for (var i = 0u; i < info[2]; i++) {
        let p = point(face, subset[i]);
        let turned = vec2<f32>(c * p.x - s * p.y, s * p.x + c * p.y);
        low = min(low, turned);
        high = max(high, turned);
    }
    let size = high - low;
    let middle = vec2<f32>((low.x + high.x) / 2.0, (low.y + high.y) / 2.0);
    // The box's centre turned back into feature-map coordinates.
    let s_back = sin(-rotation);
    let c_back = cos(-rotation);
    let centre = vec2<f32>(
        c_back * middle.x - s_back * middle.y,
        s_back * middle.x + c_back * middle.y,
    );

    // shift(centre) * rotate(-rotation) * scale * shift(-patch / 2)
    let patch_size = vec2<f32>(f32(info[5]), f32(info[6]));
    let scale_x = params[2] * size.x / patch_size.x;
    let scale_y = params[3] * size.y / patch_size.y;
    let a = c_back * scale_x;
    let b = -s_back * scale_y;
    let d = s_back * scale_x;
    let e = c_back * scale_y;
    let shift = vec2<f32>(-patch_size.x / 2.0, -patch_size.y / 2.0);
    let m = face * 16u;
    matrices[m] = a;
    matrices[m + 1u] = b;
    matrices[m + 2u] = 0.0;
    matrices[m + 3u] = a * shift.x + b * shift.y + centre.x;
    matrices[m + 4u] = d;
    matrices[m + 5u] = e;
    matrices[m + 6u] = 0.0;
    matrices[m + 7u] = d * shift.x + e * shift.y + centre.y;
    matrices[m + 8u] = 0.0;
    matrices[m + 9u] = 0.0;
    matrices[m + 10u] = 1.0;
    matrices[m + 11u] = 0.0;
    matrices[m + 12u] = 0.0;
    matrices[m + 13u] = 0.0;
    matrices[m + 14u] = 0.0;
    matrices[m + 15u] = 1.0;
}
