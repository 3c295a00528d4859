#!/usr/bin/env python3
"""The seed's blink rule applied to MediaPipe's own landmarks of the carphone clip.

Reads MediaPipe FaceMesh's landmarks of the 120 carphone frames (video mode, 640x480, made by
make_face_mesh_golden.py with mediapipe 0.10.21) and counts blinks frame by frame the way the
seed's LivenessDetector does (shared/PROTOCOL.md), written here independently of the Rust:
  EAR per eye = (|p1-p5| + |p2-p4|) / (2 |p0-p3|), left [33,160,158,133,153,144],
  right [362,385,387,263,373,380], averaged over both eyes; the threshold is 0.22 until ten
  ratios are seen, then 0.75 x the mean of the last ten; a blink is a run of 1-5 frames under
  the threshold, counted on the frame the eyes reopen.
Mouth openings are counted beside them with face-service's rule (mouth ratio |13-14| / |61-291|
above 0.3 opens, below 0.2 closes), which the seed leaves to a threshold.

Writes tests/golden/fixtures/liveness/carphone_blinks.json (from the 468-point mesh) and
carphone_blinks_refined.json (from the 478 points of refine_landmarks=True, whose eye points the
attention model refines): per frame the ratio, threshold, closed flag and cumulative blinks and
openings, and the smallest gap between a ratio and its threshold (how far MediaPipe's landmarks
are from flipping a decision).

    /var/tmp/mpvenv/bin/python tests/golden/make_liveness_golden.py
"""
import json
import pathlib
from collections import deque

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "golden" / "fixtures"
LEFT_EYE = [33, 160, 158, 133, 153, 144]
RIGHT_EYE = [362, 385, 387, 263, 373, 380]


def distance(points, a, b):
    return float(np.hypot(*(points[a, :2] - points[b, :2])))


def eye_ratio(points, eye):
    p = eye
    return (distance(points, p[1], p[5]) + distance(points, p[2], p[4])) / (
        2 * distance(points, p[0], p[3]))


def write_reference(manifest, case_name, output):
    case = next(c for c in manifest["cases"] if c["name"] == case_name)
    assert all(n == 1 for n in case["faces_per_frame"]), "one face in every frame"
    points_per_face = 478 if case.get("refine") else 468
    meshes = np.fromfile(FIXTURES / "face_mesh" / case["landmarks"], dtype="<f4").reshape(
        -1, points_per_face, 3)

    recent, closed_run, blinks = deque(maxlen=10), 0, 0
    mouth_open, openings = False, 0
    frames = []
    for points in meshes:
        ratio = (eye_ratio(points, LEFT_EYE) + eye_ratio(points, RIGHT_EYE)) / 2
        threshold = 0.22 if len(recent) < 10 else 0.75 * sum(recent) / len(recent)
        closed = ratio < threshold
        if closed:
            closed_run += 1
        else:
            if 1 <= closed_run <= 5:
                blinks += 1
            closed_run = 0
        recent.append(ratio)
        mouth = distance(points, 13, 14) / distance(points, 61, 291)
        if not mouth_open and mouth > 0.3:
            mouth_open, openings = True, openings + 1
        elif mouth_open and mouth < 0.2:
            mouth_open = False
        frames.append({"eye_aspect_ratio": ratio, "threshold": threshold, "eyes_closed": closed,
                       "blinks": blinks, "mouth_aspect_ratio": mouth, "mouth_openings": openings})

    out = FIXTURES / "liveness"
    out.mkdir(exist_ok=True)
    report = {
        "generated_by": "tests/golden/make_liveness_golden.py",
        "landmarks": f"face_mesh/{case['landmarks']} (mediapipe {manifest['mediapipe']})",
        "frames": frames,
        "blinks": blinks,
        "mouth_openings": openings,
        "closest_ratio_to_threshold": min(abs(f["eye_aspect_ratio"] - f["threshold"]) for f in frames),
    }
    (out / output).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{case_name}: {blinks} blinks, {openings} mouth openings; closest ratio to its threshold "
          f"{report['closest_ratio_to_threshold']:.4f}")


def main():
    manifest = json.loads((FIXTURES / "face_mesh" / "manifest.json").read_text())
    write_reference(manifest, "carphone_video", "carphone_blinks.json")
    write_reference(manifest, "carphone_video_refined", "carphone_blinks_refined.json")


if __name__ == "__main__":
    main()
