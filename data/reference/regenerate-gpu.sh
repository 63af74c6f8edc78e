#!/usr/bin/env bash
# The reference dataset's GPU configuration (issue 4, point 9): the zoo at 224 and 448, then the
# random nets of the CPU configurations (generator seed 2026; prefixes of the same sequences), with
# onnxruntime's CUDA execution provider. Resumable: rerun after any interruption.
#
#   data/reference/regenerate-gpu.sh                 # on a machine with onnxruntime-gpu and a GPU
#   OUT_FILE=data/reference/work/gpu-OTHER.jsonl data/reference/regenerate-gpu.sh   # another GPU
#   PROVIDER=cpu N=2 N_TINY=1 N_TORCH=1 N_STRIDED=1 N_WIDE=1 ZOO="--zoo-model squeezenet1_1" \
#       OUT_FILE=/tmp/gpu-smoke.jsonl MAX_TIME=0.2 MIN_TIME=0.1 data/reference/regenerate-gpu.sh   # smoke run
#
# The default continues the committed H200 run (its records are restored from the .gz first); for
# another GPU name another file, and add it to regenerate.sh's import list.
#
# The families advance in rounds (a few nets of each per round), so a run cut short by a time
# allowance still leaves every family measured. Lent machines give 15 minutes: the H200 run of
# 2026-11-27 stopped after 61 mixed nets; the one of 2026-11-30 went on in rounds
# (data/reference/README.md, "GPU configuration"). Import the records with `sniper-onnx db import`
# (regenerate.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
N_TINY=${N_TINY:-150}
N_TORCH=${N_TORCH:-100}
N_STRIDED=${N_STRIDED:-200}
N_WIDE=${N_WIDE:-100}
SEED=${SEED:-2026}
ZOO=${ZOO---zoo}    # ZOO= measures no zoo network
PROVIDER=${PROVIDER:-cuda}
MAX_TIME=${MAX_TIME:-10}
MIN_TIME=${MIN_TIME:-1}
SNIPER=${SNIPER:-sniper-onnx}
OUT_FILE=${OUT_FILE:-data/reference/work/gpu-h200-cuda.jsonl}
mkdir -p "$(dirname "$OUT_FILE")"
committed="data/reference/$(basename "$OUT_FILE").gz"
if [[ ! -f "$OUT_FILE" && -f "$committed" ]]; then gzip -dc "$committed" > "$OUT_FILE"; fi
common=(--provider "$PROVIDER" --seed "$SEED" --max-busy 0.1 --quiet-timeout 30 --max-time "$MAX_TIME"
        --min-time "$MIN_TIME" --out "$OUT_FILE")

# `profile` exits 1 when a model failed (its failure is recorded and the others are measured): go
# on; 2 and above are errors in the command or the set-up: stop
profile() { "$SNIPER" profile "$@" || (( $? == 1 )); }

# A provider that does not load stops here with a one-line error (no failures are recorded).
if [[ -n "$ZOO" ]]; then profile $ZOO --resolution 224 --resolution 448 "${common[@]}"; fi

# How many nets of a family the file holds ($1 matches the family's net ids).
measured() { { grep -oE "\"key\":\"gen:[^:]*:$1\|" "$OUT_FILE" || true; } | sort -u | wc -l; }

# family, nets wanted, nets per round, net id pattern
families=(
    "mixed $N 8 (cnn|transformer)-[0-9a-f]{12}"
    "tiny $N_TINY 4 tiny-[0-9a-f]{12}"
    "transformer-torch $N_TORCH 3 transformer-torch-[0-9a-f]{12}"
    "cnn-strided $N_STRIDED 3 cnn-strided-[0-9a-f]{12}"
    "cnn-wide $N_WIDE 2 cnn-wide-[0-9a-f]{12}"
)
declare -A start finished
for entry in "${families[@]}"; do
    read -r family count step pattern <<<"$entry"
    start[$family]=$(measured "$pattern")
done
for ((round = 1; ; round++)); do
    left=0
    for entry in "${families[@]}"; do
        read -r family count step pattern <<<"$entry"
        [[ -z "${finished[$family]:-}" ]] || continue   # measured to its count in an earlier round
        upto=$(( start[$family] + round * step ))
        (( upto < count )) && left=1 || { upto=$count; finished[$family]=1; }
        (( upto > 0 )) || continue
        # --generate UPTO visits the first UPTO nets of the family and skips the measured ones
        profile --generate "$upto" --family "$family" "${common[@]}"
    done
    (( left )) || break
done
