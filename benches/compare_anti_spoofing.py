#!/usr/bin/env python3
"""face-service's anti-spoofing networks against PyTorch, per face, one thread: the table in
BENCHMARKS.md.

Runs, in one go on one machine:
  1. PyTorch (CPU, one intra-op thread, inference mode) on both MiniFASNets as upstream runs
     them (tests/golden/make_anti_spoofing_golden.py's reference, built from the checkpoints in
     weights/), batch 1 and 32;
  2. `cargo bench --bench models -- anti-spoofing/cpu` with RAYON_NUM_THREADS=1, the same
     batches (burn's CPU backend, both networks, outputs read back to the host);
then prints a Markdown table with the ratio face-service / PyTorch.

    /var/tmp/torchvenv/bin/python benches/compare_anti_spoofing.py   # tests/golden/requirements-anti-spoofing.txt
"""
import os
import pathlib
import platform
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCHES = (1, 32)
sys.path.insert(0, str(ROOT / "tests" / "golden"))
sys.path.insert(0, str(ROOT / "benches"))
from criterion_results import model_ms_per_item  # noqa: E402
import make_anti_spoofing_golden as reference  # noqa: E402


def pytorch_figures():
    """{batch: ms per face for both networks}, the median of repeated runs after a warm-up."""
    torch.set_num_threads(1)
    nets = [reference.Net(torch.load(ROOT / "weights" / checkpoint, map_location="cpu",
                                     weights_only=True))
            for _, checkpoint, _ in reference.NETWORKS]
    figures = {}
    for batch in BATCHES:
        x = torch.rand((batch, 3, 80, 80), generator=torch.Generator().manual_seed(0)) * 255
        with torch.inference_mode():
            for _ in range(3):
                for net in nets:
                    net(x)
            runs = []
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline or len(runs) < 10:
                started = time.perf_counter()
                for net in nets:
                    net(x).numpy()
                runs.append(time.perf_counter() - started)
        figures[batch] = statistics.median(runs) / batch * 1e3
    return figures


def main():
    pytorch = pytorch_figures()
    ours = model_ms_per_item("anti-spoofing", BATCHES)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"one thread each; torch {torch.__version__}")
    print("| batch | face-service ms/face | PyTorch ms/face | face-service / PyTorch |")
    print("|---:|---:|---:|---:|")
    for batch in BATCHES:
        print(f"| {batch} | {ours[batch]:.3f} | {pytorch[batch]:.3f} | {ours[batch] / pytorch[batch]:.2f}x |")


if __name__ == "__main__":
    main()
