#!/usr/bin/env python3
"""face-service's recognition model against ONNX Runtime, per face, one thread: the table in
BENCHMARKS.md.

Runs, in one go on one machine:
  1. ONNX Runtime (CPU execution provider, one intra-op thread, default graph optimisations) on
     SFace's float graph (tests/golden/sface_onnx.py: the shipped int8 file with its
     DequantizeLinear of constants folded, as face-service loads it), batch 1 and 32;
  2. `cargo bench --bench models -- recognition/cpu` with RAYON_NUM_THREADS=1, the same
     batches (burn's CPU backend, outputs read back to the host);
  3. `cargo bench --bench gallery` (1:N search at 10k, 100k and 1M templates);
then prints Markdown tables with the ratio face-service / ONNX Runtime.

    /var/tmp/onnxvenv/bin/python benches/compare_recognition.py   # onnxruntime, onnx, numpy
"""
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCHES = (1, 32)
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benches"))
from criterion_results import median_ms, model_ms_per_item, run_one_thread  # noqa: E402
import sface_onnx  # noqa: E402


def onnx_runtime_figures():
    """{batch: ms per face}, the median of repeated runs after a warm-up."""
    session = sface_onnx.session(threads=1)
    figures = {}
    for batch in BATCHES:
        x = (np.random.default_rng(0).random((batch, 3, 112, 112)) * 255).astype(np.float32)
        for _ in range(3):
            session.run(None, {"data": x})
        runs = []
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline or len(runs) < 10:
            started = time.perf_counter()
            session.run(None, {"data": x})
            runs.append(time.perf_counter() - started)
        figures[batch] = statistics.median(runs) / batch * 1e3
    return figures


def face_service_figures():
    model = model_ms_per_item("recognition", BATCHES)
    run_one_thread("gallery")
    gallery = {n: median_ms("gallery", "search_top5", str(n))
               for n in (10_000, 100_000, 1_000_000)}
    return model, gallery


def main():
    reference = onnx_runtime_figures()
    model, gallery = face_service_figures()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; one thread each")
    print("| batch | face-service ms/face | ONNX Runtime ms/face | face-service / ONNX Runtime |")
    print("|---:|---:|---:|---:|")
    for batch in BATCHES:
        print(f"| {batch} | {model[batch]:.2f} | {reference[batch]:.2f} | {model[batch] / reference[batch]:.2f}x |")
    print()
    print("| gallery templates | search (top 5), ms |")
    print("|---:|---:|")
    for size, ms in gallery.items():
        print(f"| {size:,} | {ms:.3f} |")


if __name__ == "__main__":
    main()
