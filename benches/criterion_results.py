"""Running criterion benches on one thread and reading their results, for the comparison
scripts."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/face-service-target"))


def median_ms(*parts):
    """The median of a criterion benchmark's last run, in milliseconds: `parts` are its group
    (with `/` as `_`), function and parameter."""
    estimates = TARGET / "criterion" / pathlib.Path(*parts) / "new" / "estimates.json"
    return json.loads(estimates.read_text())["median"]["point_estimate"] / 1e6


def run_one_thread(bench, *criterion_args, batches=()):
    """`cargo bench --bench BENCH -- ARGS` on one thread (RAYON_NUM_THREADS=1), the model
    benches at `batches`; its report goes to stderr."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET), RAYON_NUM_THREADS="1",
               FACE_SERVICE_BENCH_BATCHES=",".join(map(str, batches)))
    subprocess.run(["cargo", "bench", "--bench", bench, "--", *criterion_args], cwd=ROOT,
                   env=env, check=True, stdout=sys.stderr)


def model_ms_per_item(model, batches):
    """{batch: ms per item} of `cargo bench --bench models -- MODEL/cpu`, run on one thread."""
    run_one_thread("models", f"{model}/cpu", batches=batches)
    return {b: median_ms(f"{model}_cpu", "per_frame_batch", str(b)) for b in batches}
