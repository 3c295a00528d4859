#!/usr/bin/env python3
"""burn vs MediaPipe, per frame: the tables in BENCHMARKS.md.

Runs, in one go on one machine:
  1. MediaPipe's own runtime (benches/mediapipe_models.py): the same .tflite files in the TFLite
     interpreter with XNNPACK, batch 1, one thread; and its FaceMesh solution on 640x480 frames;
  2. `cargo bench --bench models` (burn, per frame, by batch size, on each backend present) and
     `cargo bench --bench pipeline` (face-service's whole pipeline on the same frames);
then prints Markdown tables with the ratio face-service / MediaPipe for each row.

    /var/tmp/mpvenv/bin/python benches/compare_models.py [--batches 1,8,32,128] [--threads N]

`--threads` sets RAYON_NUM_THREADS for the burn CPU backend (default: all cores); MediaPipe's
figure is always one thread, as the seed's FaceMesh instances run.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/face-service-target"))


def mediapipe_figures():
    """{model or pipeline mode: ms per frame} from MediaPipe."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "mediapipe_models.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            key = row["mode"] if row["model"] == "face_mesh_solution" else row["model"]
            figures[key] = row["ms_per_frame_median"]
    return figures


def burn_figures(batches, threads):
    """{(model, backend, batch): ms per frame} from criterion's estimates."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET), FACE_SERVICE_BENCH_BATCHES=batches)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    for bench in ("models", "pipeline"):
        subprocess.run(["cargo", "bench", "--bench", bench], cwd=ROOT, env=env, check=True,
                       stdout=sys.stderr)
    figures = {}
    for estimates in (TARGET / "criterion").glob("*/per_frame_batch/*/new/estimates.json"):
        group = estimates.parts[-5]  # e.g. "landmarks_cpu"
        model, backend = group.rsplit("_", 1)
        batch = int(estimates.parts[-3])
        if str(batch) in batches.split(","):
            median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
            figures[(model, backend, batch)] = median_ns / 1e6
    for group, suffix in (("face_mesh_cpu", ""), ("face_mesh_refined_cpu", "_refined")):
        for mode in ("video", "static"):
            estimates = TARGET / "criterion" / group / mode / "new" / "estimates.json"
            figures[("pipeline", mode + suffix)] = (
                json.loads(estimates.read_text())["median"]["point_estimate"] / 1e6)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--threads", type=int, default=0, help="RAYON_NUM_THREADS for burn's CPU backend")
    args = parser.parse_args()

    reference = mediapipe_figures()
    ours = burn_figures(args.batches, args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"burn CPU threads: {args.threads or 'all'}")
    print("| model | backend | batch | burn ms/frame | MediaPipe ms/frame (batch 1, 1 thread) | burn / MediaPipe |")
    print("|---|---|---:|---:|---:|---:|")
    model_rows = sorted(key for key in ours if key[0] != "pipeline")
    for key in model_rows:
        model, backend, batch = key
        ms = ours[key]
        mp = reference.get(model)
        if mp is None:  # the attention model: no standalone MediaPipe figure (see mediapipe_models.py)
            print(f"| {model} | {backend} | {batch} | {ms:.3f} | n/a | n/a |")
        else:
            print(f"| {model} | {backend} | {batch} | {ms:.3f} | {mp:.3f} | {ms / mp:.2f}x |")
    print()
    print("| whole pipeline, 640x480 carphone frames | face-service CPU ms/frame | MediaPipe FaceMesh ms/frame | face-service / MediaPipe |")
    print("|---|---:|---:|---:|")
    for mode, meaning in (("video", "tracking (video mode)"), ("static", "detecting every frame (static mode)"),
                          ("video_refined", "tracking, refine_landmarks (478 points)"),
                          ("static_refined", "detecting every frame, refine_landmarks")):
        ms, mp = ours[("pipeline", mode)], reference[mode]
        print(f"| {meaning} | {ms:.3f} | {mp:.3f} | {ms / mp:.2f}x |")


if __name__ == "__main__":
    main()
