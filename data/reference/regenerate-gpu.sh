#!/usr/bin/env bash
# The reference dataset's GPU configuration (issue 4, point 9): the zoo at 224 and 448, then the
# same random nets as the CPU configurations (generator seed 2026, mixed families, a prefix of one
# sequence), with onnxruntime's CUDA execution provider. Resumable: rerun after any interruption.
#
#   data/reference/regenerate-gpu.sh                 # on a machine with onnxruntime-gpu and a GPU
#   OUT_FILE=data/reference/work/gpu-OTHER.jsonl data/reference/regenerate-gpu.sh   # another GPU
#
# The default continues the committed H200 run (its records are restored from the .gz first); for
# another GPU name another file, and add it to regenerate.sh's import list.
#
# Measured on a lent NVIDIA H200 on 2026-11-27 (data/reference/README.md, "GPU configuration"),
# within a 15-minute allowance, so the run stopped after 61 random nets; the records are in
# gpu-h200-cuda.jsonl.gz. Import them with `sniper-onnx db import` (regenerate.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
SNIPER=${SNIPER:-sniper-onnx}
OUT_FILE=${OUT_FILE:-data/reference/work/gpu-h200-cuda.jsonl}
mkdir -p "$(dirname "$OUT_FILE")"
committed="data/reference/$(basename "$OUT_FILE").gz"
if [[ ! -f "$OUT_FILE" && -f "$committed" ]]; then gzip -dc "$committed" > "$OUT_FILE"; fi
common=(--provider cuda --seed 2026 --family mixed --max-busy 0.1 --quiet-timeout 30 --out "$OUT_FILE")

# A provider that does not load stops here with a one-line error (no failures are recorded).
"$SNIPER" profile --zoo-model squeezenet1_1 --resolution 224 "${common[@]}"
"$SNIPER" profile --zoo --resolution 224 --resolution 448 "${common[@]}"
"$SNIPER" profile --generate "$N" "${common[@]}"
