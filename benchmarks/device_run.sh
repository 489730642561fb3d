#!/usr/bin/env bash
# What produced the GPU figures in the README / notes (one call on a lent H100; needs the demo's
# data/prepared, data/tokenized and models/stage1, i.e. `dvc repro tokenize`, carried along).
# 1) the ablation grid (plain + each switch alone x 3 seeds), runs fanned out over one GPU;
# 2) the DeBERTa-v3-base-sized throughput benchmark (fp32, bf16, bf16 + compile; seq 128 and 256).
set -u -o pipefail
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${ABL_TIMEOUT:-330}" python3 scripts/ablation_runs.py --out /tmp/abl --seeds 1 2 3 --jobs "${JOBS:-16}" \
  > "$OUT/ablation.log" 2>&1; echo "ablation rc=$?"
grep -E "s$|runs in|Error|error" "$OUT/ablation.log" | tail -30
(cd /tmp && tar czf "$OUT/ablation_runs.tgz" --exclude='*.safetensors' --exclude='*.parquet' abl)
timeout "${BENCH_TIMEOUT:-200}" python3 benchmarks/bench_gpu.py --compile --out "$OUT/bench_gpu.json" 2>&1 \
  | grep -v -i warn | tail -12
