#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (H100/H200 class): the model benches (the
# recognition model among them) by batch size up to 1024 on wgpu and on the CPU, the gallery
# search, the server-part benches (the crop shader against the
# CPU crop), and a harness sweep against `face-service serve --device gpu`; the report, with
# the card's name, goes to $OUT (default /var/tmp/face-service-gpu).
#
#   bash benches/gpu.sh
#
# It needs a Vulkan driver for the card (NVIDIA's, which ships with its display driver) and a
# build of face-service (cargo build --release, or a target directory carried over). MediaPipe's
# own per-frame time is added when a venv with mediapipe is at $MP_VENV (machines without a
# network cannot install one). Environment: BATCHES (1,8,32,128,256,512,1024), SWEEP
# (16,32,64,128,256,512 sessions), P99_BOUND_MS (200), RUN_SECONDS (15).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/face-service-target}"
out="${OUT:-/var/tmp/face-service-gpu}"
batches="${BATCHES:-1,8,32,128,256,512,1024}"
sweep="${SWEEP:-16,32,64,128,256,512}"
bound="${P99_BOUND_MS:-200}"
run_seconds="${RUN_SECONDS:-15}"
mkdir -p "$out"

{
    echo "# face-service on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
    echo
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "driver: $(nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader | head -1)"
    echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
} > "$out/report.md"

cargo build --release
bin="$CARGO_TARGET_DIR/release/face-service"
"$bin" models --device gpu | tee "$out/models.txt"
grep -q "software" "$out/models.txt" && { echo "wgpu found only a software adapter" >&2; exit 1; }

# Model forward passes by batch size, per frame, read back to the host.
FACE_SERVICE_BENCH_BATCHES="$batches" cargo bench --bench models 2>&1 | tee "$out/bench-models.txt"
# The 1:N template search (CPU, one thread) at 10k, 100k and 1M templates.
cargo bench --bench gallery 2>&1 | tee "$out/bench-gallery.txt"
# Decode; a batch of 32 landmark inputs cut on the CPU and uploaded, against the frames
# uploaded and cut by the crop shader; the engine's queue; JSON.
cargo bench --bench server_parts 2>&1 | tee "$out/bench-server-parts.txt"
if [ -x "${MP_VENV:-/nonexistent}/bin/python" ]; then
    "$MP_VENV/bin/python" benches/mediapipe_models.py 2>&1 | tee "$out/mediapipe.txt"
fi

# The harness sweep against the server, once with the model inputs cut on the CPU (the
# default) and once with the crop shader (--gpu-crop): the faster becomes the default.
server=""
trap '[ -n "$server" ] && kill -TERM "$server" 2>/dev/null || true' EXIT
sweep_with() {
    local label="$1"
    shift
    "$bin" serve --device gpu --bind 127.0.0.1:8003 --max-frames-per-session 0 "$@" \
        > "$out/serve-$label.log" 2>&1 &
    server=$!
    for _ in $(seq 1 600); do
        python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8003/api/ready/', timeout=2)" \
            2> /dev/null && break
        sleep 0.5
    done
    "$bin" bench --url ws://127.0.0.1:8003 --sweep "$sweep" --fps 9.5 --seconds "$run_seconds" \
        --warmup 5 --p99-bound-ms "$bound" --plot "$out/sweep-$label.svg" --json \
        > "$out/sweep-$label.json"
    kill -TERM "$server"
    wait "$server" || true
    server=""
}
sweep_with cpu-crop
sweep_with gpu-crop --gpu-crop

{
    echo
    echo "## Models (per frame, by batch size)"
    echo '```'
    grep -E "^(detector|landmarks|landmarks_with_attention|recognition)/|time:" "$out/bench-models.txt" || true
    grep -E "^gallery/|time:" "$out/bench-gallery.txt" || true
    echo '```'
    echo "## Server parts"
    echo '```'
    grep -E "^[a-z]+/|time:" "$out/bench-server-parts.txt" || true
    echo '```'
    for label in cpu-crop gpu-crop; do
    echo "## Sweep, $label (9.5 fps per session, p99 bound $bound ms)"
    python3 - "$out/sweep-$label.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print("| sessions | answers/s | p50 ms | p99 ms | errors | mean batch | device ms/batch |")
print("|---|---|---|---|---|---|---|")
for s in report["steps"]:
    server = s.get("server") or {}
    print(f"| {s['sessions']} | {s['answers_per_second']:.1f} | {s['latency_ms_p50']:.1f} | "
          f"{s['latency_ms_p99']:.1f} | {s['errors'] or 'none'} | "
          f"{server.get('mean_batch_size', 0):.1f} | {server.get('mean_device_ms_per_batch', 0):.1f} |")
print()
print(f"largest load served: {report['largest_sessions_served']} sessions, "
      f"{report['largest_load_served_fps']} frames/s")
PY
    done
} >> "$out/report.md"
cat "$out/report.md"
