#!/usr/bin/env bash
# How regenerate-gpu.sh ran on the lent H200 on 2026-11-30 (data/reference/README.md, "GPU configuration").
# The machine could download nothing: onnxruntime-gpu travelled as .dev/ort-site.tar.xz (prune_ort_cuda.py,
# 29 MB), the checkout as PYTHONPATH, and .dev/gpu-h200-cuda.jsonl (if present) as the records to resume.
# Stops at once (exit 3) unless the CUDA provider runs a Conv; DEADLINE caps the measuring (seconds).
#   device run: DEADLINE=535 bash data/reference/lent_gpu_run.sh   (carry .dev; $OUT comes back)
set -u
export PYTHONUNBUFFERED=1
mkdir -p /tmp/site && tar -xJf .dev/ort-site.tar.xz -C /tmp/site || exit 2
export PYTHONPATH=/tmp/site:$PWD:$PWD/generator:$PWD/profiler
NV=$(find /opt /usr /lib /lib64 -name 'libcublasLt.so.13*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
NV2=$(find /opt /usr /lib /lib64 -name 'libcudnn.so.9*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH=${NV}${NV2}${LD_LIBRARY_PATH:-}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
mkdir -p /tmp/bin
printf '#!/bin/sh\nexec python3 -c "import sys; sys.argv[0] = \\"sniper-onnx\\"; from sniper_onnx.cli import main; main()" "$@"\n' > /tmp/bin/sniper-onnx
chmod +x /tmp/bin/sniper-onnx
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
python3 data/reference/lent_gpu_check.py 2>&1 | tee $OUT/check.txt; [ "${PIPESTATUS[0]}" = 0 ] || exit 3
/tmp/bin/sniper-onnx --version || exit 4
[ -f .dev/gpu-h200-cuda.jsonl ] && cp .dev/gpu-h200-cuda.jsonl $OUT/
SNIPER=/tmp/bin/sniper-onnx MAX_TIME=${MAX_TIME:-3} OUT_FILE=$OUT/gpu-h200-cuda.jsonl \
    timeout -s INT -k 30 ${DEADLINE:-500} bash data/reference/regenerate-gpu.sh 2>&1 | tee $OUT/log.txt
echo "regenerate rc ${PIPESTATUS[0]}"
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv | tee -a $OUT/nvidia-smi.txt
wc -l $OUT/gpu-h200-cuda.jsonl
