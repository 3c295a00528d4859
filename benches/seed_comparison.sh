#!/usr/bin/env bash
# face-service against a Python server built the way the seed is, on this machine, same run.
#
#   bash benches/seed_comparison.sh [SESSIONS ...]        (default: 16 32 64)
#
# Sets up the seed's stack from PyPI (benches/seed_server/requirements.txt) in a venv, builds
# face-service in release, then for each session count loads each server in turn with
# `face-service bench` (the seed protocol: JSON base64 JPEG frames of the carphone clip at
# 640x480, 9.5 frames a second per session, under the seed's 10 fps limit) and prints, for
# both, results per second (frames answered with a face or no face; error answers such as 503
# # do not count), answers per second, latency and errors, and the ratio of results. Both
# servers run on the CPU with the same refine_landmarks setting: off, or on with
# REFINE_LANDMARKS=1 (MediaPipe's attention model in both). The per-session frame budget (120)
# is lifted on both, or sessions would close mid-run.
#
# Environment: SEED_VENV (/var/tmp/seedvenv), SEED_WORKERS (cores), FACE_MESH_POOL_SIZE (4),
# REFINE_LANDMARKS (0), RUN_SECONDS (20), WARMUP_SECONDS (5), OUT (/var/tmp/seed-comparison).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/face-service-target}"
venv="${SEED_VENV:-/var/tmp/seedvenv}"
workers="${SEED_WORKERS:-$(nproc)}"
export FACE_MESH_POOL_SIZE="${FACE_MESH_POOL_SIZE:-4}"
run_seconds="${RUN_SECONDS:-20}"
warmup_seconds="${WARMUP_SECONDS:-5}"
out="${OUT:-/var/tmp/seed-comparison}"
refine="${REFINE_LANDMARKS:-0}"
refine_flag=()
[ "$refine" = 1 ] && refine_flag=(--refine-landmarks)
sessions_list=("${@:-16 32 64}")
# shellcheck disable=SC2206
sessions_list=(${sessions_list[*]})
mkdir -p "$out"

if [ ! -x "$venv/bin/gunicorn" ]; then
    # Debian ships venv support as its own package.
    if ! python3 -c "import ensurepip" 2> /dev/null; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r benches/seed_server/requirements.txt
fi
cargo build --release
bin="$CARGO_TARGET_DIR/release/face-service"

wait_for() {  # URL
    for _ in $(seq 1 600); do
        python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "$1" 2> /dev/null && return 0
        sleep 0.5
    done
    echo "no answer from $1" >&2
    return 1
}

bench() {  # NAME PORT SESSIONS
    "$bin" bench --url "ws://127.0.0.1:$2" --sessions "$3" --fps 9.5 \
        --seconds "$run_seconds" --warmup "$warmup_seconds" --json > "$out/$1-$3.json"
}

for sessions in "${sessions_list[@]}"; do
    echo "== $sessions sessions x 9.5 fps"
    SEED_MAX_FRAMES=0 SEED_REFINE_LANDMARKS="$refine" "$venv/bin/gunicorn" -k uvicorn.workers.UvicornWorker -w "$workers" \
        -b 127.0.0.1:8013 --chdir benches/seed_server seed_server:app \
        > "$out/seed-server.log" 2>&1 &
    seed_pid=$!
    wait_for http://127.0.0.1:8013/api/health/
    bench seed 8013 "$sessions"
    kill -TERM "$seed_pid"; wait "$seed_pid" || true

    "$bin" serve --device cpu --bind 127.0.0.1:8003 --max-frames-per-session 0 \
        "${refine_flag[@]}" > "$out/face-service.log" 2>&1 &
    service_pid=$!
    wait_for http://127.0.0.1:8003/api/ready/
    bench face-service 8003 "$sessions"
    kill -TERM "$service_pid"; wait "$service_pid" || true
done

python3 - "$out" "${sessions_list[@]}" <<'PY'
import json, sys
out, sessions = sys.argv[1], sys.argv[2:]

def results_per_second(r):
    """Frames answered with a result (a face, no face, or a quality rejection), per second:
    error answers (429, 503, 504) are answers but not results."""
    return (r["faces"] + r["no_face"] + r.get("quality_rejected", 0)) / r["seconds"]

print(f"{'sessions':>8} | {'server':<12} | {'results/s':>9} | {'answers/s':>9} | {'p50 ms':>8} "
      f"| {'p99 ms':>8} | errors")
for n in sessions:
    runs = {name: json.load(open(f"{out}/{name}-{n}.json")) for name in ("seed", "face-service")}
    for name, r in runs.items():
        print(f"{n:>8} | {name:<12} | {results_per_second(r):9.1f} | {r['answers_per_second']:9.1f}"
              f" | {r['latency_ms_p50']:8.1f} | {r['latency_ms_p99']:8.1f}"
              f" | {r['errors'] or 'none'}; closed {r['closed'] or 'none'}")
    ratio = results_per_second(runs["face-service"]) / max(results_per_second(runs["seed"]), 1e-9)
    print(f"{n:>8} | ratio face-service / seed: {ratio:.2f}x results per second")
PY
