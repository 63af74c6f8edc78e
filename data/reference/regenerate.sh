#!/usr/bin/env bash
# Regenerates the reference dataset of issue 4 (point 9): random nets (the mixed family, then the
# cnn-strided family) and the zoo at two resolutions, on three CPU configurations of this machine. The GPU configuration is measured
# on a GPU machine by regenerate-gpu.sh; this script imports its records too. Resumable: after any
# interruption run the same command again; finished nets are skipped.
#
#   data/reference/regenerate.sh                      # the full dataset (days on a quiet machine)
#   N=6 N_STRIDED=3 ZOO="--zoo-model squeezenet1_1" OUT_DIR=/tmp/refsmoke MAX_BUSY= MAX_TIME=1 \
#       data/reference/regenerate.sh                  # smoke run
#
# Each model waits until other work uses at most MAX_BUSY of the CPUs (read from /proc/stat over
# 1 s while the profiler is idle); records measured on a busy machine anyway are flagged
# machine_busy and left out of train.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-2000}
N_STRIDED=${N_STRIDED:-200}
SEED=${SEED:-2026}
STEP=${STEP:-50}
ZOO=${ZOO:---zoo}
OUT_DIR=${OUT_DIR:-data/reference}
MAX_BUSY=${MAX_BUSY-0.1}
MAX_TIME=${MAX_TIME:-10}
MEMORY_LIMIT=${MEMORY_LIMIT:-12}   # GB per model: a giant random net fails as out_of_memory, not the machine
SNIPER=${SNIPER:-.venv/bin/sniper-onnx}
WORK="$OUT_DIR/work"          # uncompressed working files (not committed)
mkdir -p "$WORK"
DB="$WORK/ncd.sqlite"

# A fresh checkout has only the committed .gz files: restore them so the run resumes, not restarts.
# Every run re-imports the records (idempotent): one appended just before a kill is in the JSONL
# but may not be in the database yet.
import_records() {
    for name in cpu-t1 cpu-t2 cpu-t1-noopt gpu-h200-cuda; do  # the GPU records come from regenerate-gpu.sh
        if [[ ! -f "$WORK/$name.jsonl" && -f "$OUT_DIR/$name.jsonl.gz" ]]; then
            gzip -dc "$OUT_DIR/$name.jsonl.gz" > "$WORK/$name.jsonl"
        fi
        if [[ -f "$WORK/$name.jsonl" ]]; then "$SNIPER" db import "$WORK/$name.jsonl" --db "$DB"; fi
    done
}
import_records

# How many of a family's nets every CPU configuration already has, rounded down to STEP. A resume
# starts its first call there: a call with --generate UPTO visits every net below UPTO and skips the
# finished ones, so nothing is lost, and the calls for the STEPs already done (each re-samples the
# seed's specs, about 4 ms a net) are not made again. $1 matches the family's net ids.
generated_done() {
    local id_pattern=$1 least=$2 count name file
    for name in cpu-t1 cpu-t2 cpu-t1-noopt; do
        file="$WORK/$name.jsonl"
        count=0
        if [[ -f "$file" ]]; then
            count=$({ grep -oE "\"key\":\"gen:[^:]*:$id_pattern\|" "$file" || true; } | sort -u | wc -l)
        fi
        if (( count < least )); then least=$count; fi
    done
    echo $(( least / STEP * STEP ))
}

# The three configurations advance together, STEP nets at a time, so an interrupted run leaves a
# balanced dataset. Generated nets are a prefix of the seed's sequence: finished ones are skipped.
measure_family() {
    local family=$1 count=$2 id_pattern=$3 zoo=$4 done_before upto
    done_before=$(generated_done "$id_pattern" "$count")
    if (( done_before > 0 )); then echo "resuming $family: every configuration has at least $done_before of its nets"; fi
    for ((upto = done_before + STEP < count ? done_before + STEP : count; ; upto = upto + STEP < count ? upto + STEP : count)); do
        common=(--generate "$upto" --seed "$SEED" --family "$family" $zoo --resolution 224 --resolution 448
                --db "$DB" --max-time "$MAX_TIME")
        cpu=(--memory-limit "$MEMORY_LIMIT")
        if [[ -n "$MAX_BUSY" ]]; then common+=(--max-busy "$MAX_BUSY" --quiet-timeout 1800); fi
        "$SNIPER" profile "${common[@]}" "${cpu[@]}" --threads 1 --out "$WORK/cpu-t1.jsonl"
        "$SNIPER" profile "${common[@]}" "${cpu[@]}" --threads 2 --out "$WORK/cpu-t2.jsonl"
        "$SNIPER" profile "${common[@]}" "${cpu[@]}" --threads 1 --opt-level disabled --out "$WORK/cpu-t1-noopt.jsonl"
        (( upto < count )) || break
    done
}

# mixed: CNNs and transformers whose CNN stages downsample by pooling or a 3x3 stride-2 conv;
# cnn-strided (since 2026-11-28): CNNs whose blocks stride, as MobileNet's and ResNet's do.
measure_family mixed "$N" '(cnn|transformer)-[0-9a-f]{12}' "$ZOO"
if (( N_STRIDED > 0 )); then measure_family cnn-strided "$N_STRIDED" 'cnn-strided-[0-9a-f]{12}' ""; fi

import_records
"$SNIPER" db stats --db "$DB"
"$SNIPER" db export --db "$DB" -o "$WORK/train.csv" --statistic min \
    --exclude-flag machine_busy --exclude-flag contended_sessions --exclude-flag nan_outputs --exclude-flag inf_outputs --exclude-flag denormal_outputs
for file in "$WORK"/*.jsonl "$WORK/train.csv"; do
    gzip -9 -n -c "$file" > "$OUT_DIR/$(basename "$file").gz"
done
ls -l "$OUT_DIR"/*.gz
