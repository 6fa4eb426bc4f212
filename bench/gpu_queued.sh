#!/usr/bin/env bash
# Issue 17's GPU rows in one short run on a GPU machine (not run on CPU machines: see README, Performance).
#   1. engine MFU, 8B shape, bf16: bench/gpu.py, packed and engine, the whole set in one call;
#   2. queued job / engine in-process, 8B shape: the same random 8B-shaped model saved to disk, two
#      warm `rmscore worker`s on it (chunk pipeline on and off) against real jobs, beside the engine
#      (bench/queued.py; its own redis-server, SQLite).
# Budget: ~5 min model set-up and measuring on an H100/H200; JSON in $OUT.
#   bash bench/gpu_queued.sh             # PY=.venv/bin/python OUT=bench/results MODEL_DIR=/tmp/rmscore-rand8b
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-bench/results}
MODEL_DIR=${MODEL_DIR:-/tmp/rmscore-rand8b}
PORT=${REDIS_PORT:-6399}
mkdir -p "$OUT"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true' EXIT
"$PY" bench/gpu.py --methods packed,engine --chunk 4624 --time-budget 120 --out "$OUT/gpu.json"
[ -f "$MODEL_DIR/config.json" ] || "$PY" bench/gpu.py --save-model "$MODEL_DIR"
# GPU chunk guidance (bench/README.md): >= 16 token budgets per chunk.
"$PY" bench/queued.py --device cuda --model "$MODEL_DIR" --data hh --rounds 1 --chunk-size 2048 \
    --chunk-max-tokens 1048576 --broker-url "redis://127.0.0.1:$PORT/0" --out "$OUT/queued-gpu.json"
