#!/usr/bin/env python3
"""MediaPipe's own runtime, timed on this machine: the reference face-service is held against.

1. The raw models: the same .tflite files in the TFLite interpreter that MediaPipe embeds
   (ai-edge-litert, XNNPACK), batch 1, one thread, on the golden inputs.
2. Unless --models-only: the whole FaceMesh solution (mediapipe 0.10.21) over the 120 frames
   of the carphone clip upscaled to 640x480 (as benches/pipeline.rs feeds face-service),
   tracking (video mode) and detecting every frame (static mode), with refine_landmarks off
   and on (modes `video_refined`, `static_refined`).

The attention model cannot run in the plain TFLite interpreter (its three custom operators are
registered only inside MediaPipe's graph), so its own time is not measured alone: compare the
refined pipeline rows, or read the difference between the refined and plain video rows as the
attention model's extra cost over the 468-point model.

Prints one JSON object per line:
    {"model": "landmarks", "runtime": "tflite-xnnpack", "threads": 1, "batch": 1,
     "ms_per_frame_median": ..., "ms_per_frame_p90": ...}

    /var/tmp/mpvenv/bin/python benches/mediapipe_models.py [--models-only] [--iterations N]
"""
import argparse
import json
import pathlib
import sys
import time
import tomllib

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "golden" / "fixtures"
sys.path.insert(0, str(ROOT / "tests" / "golden"))
from make_golden import carphone_frames, normalize  # noqa: E402  (same input arithmetic)
from make_face_mesh_golden import upscale  # noqa: E402  (same 640x480 frames)


def percentiles(samples_ms):
    return {
        "ms_per_frame_median": round(float(np.median(samples_ms)), 4),
        "ms_per_frame_p90": round(float(np.percentile(samples_ms, 90)), 4),
    }


def time_model(model_toml, iterations):
    description = tomllib.loads((ROOT / "models" / model_toml).read_text())
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    inputs = [
        normalize(cv2.cvtColor(cv2.imread(str(FIXTURES / case["input"])), cv2.COLOR_BGR2RGB),
                  description["input"]["range"])[None]
        for case in manifest["cases"] if case["model"] == description["name"]
    ]
    interpreter = Interpreter(model_path=str(ROOT / "weights" / description["weights"]), num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    outputs = [d["index"] for d in interpreter.get_output_details()]
    samples = []
    for i in range(iterations + 50):
        started = time.perf_counter()
        interpreter.set_tensor(index, inputs[i % len(inputs)])
        interpreter.invoke()
        for output in outputs:
            interpreter.get_tensor(output)
        if i >= 50:  # the first invocations warm caches and XNNPACK's packed weights
            samples.append((time.perf_counter() - started) * 1e3)
    return {"model": description["name"], "runtime": "tflite-xnnpack", "threads": 1, "batch": 1,
            **percentiles(samples)}


def time_face_mesh(static, refine):
    import mediapipe as mp

    frames = [upscale(frame) for frame in carphone_frames()]
    samples = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                         refine_landmarks=refine) as mesh:
        for repeat in range(3):  # the clip is short: go over it three times, skip the first
            for frame in frames:
                started = time.perf_counter()
                mesh.process(frame)
                if repeat > 0:
                    samples.append((time.perf_counter() - started) * 1e3)
    mode = ("static" if static else "video") + ("_refined" if refine else "")
    return {"model": "face_mesh_solution", "mode": mode,
            "runtime": "mediapipe 0.10.21", "frames": "carphone 640x480", **percentiles(samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-only", action="store_true")
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()
    for model in ("face_landmark.toml", "face_detection_short_range.toml"):
        print(json.dumps(time_model(model, args.iterations)), flush=True)
    if not args.models_only:
        for refine in (False, True):
            for static in (False, True):
                print(json.dumps(time_face_mesh(static, refine)), flush=True)


if __name__ == "__main__":
    main()
