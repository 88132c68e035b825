#!/usr/bin/env bash
# The GPU check: the whole chain on a machine with an NVIDIA GPU, in one go, from the repository root.
#
#   bash scripts/gpu_check.sh [DATA_DIR [OUT]]      (defaults: ../shared/chisiec, results/gpu-check)
#
# 1. ner_core.bench --device cuda: the notebook's loop against ner_core's on the same GPU, for the
#    notebook's configuration, 256 x 1 / batch 16 and 128 x 1, in both precisions, along the path the
#    GPU runs (packed LSTM, the CRF's trees) and the CPU's path (padded LSTM, loops over time).
# 2. A small study on CHisIEC, WORKERS workers sharing the GPU (default 4), TRIALS trials (default 12).
# 3. study.best --test on it, two retrainings at once.
# 4. ner_core.predict with the GPU-trained model on the CPU, the GPU hidden.
# Every step's output is kept in OUT; the figures for docs/design.md, GPU paths come from there.
# FULL=1 runs the 50-trial study with the GPU's default space instead (the 10-minute goal).
set -euo pipefail
data=${1:-../shared/chisiec}
out=${2:-results/gpu-check}
py=${PYTHON:-python3}
workers=${WORKERS:-4}
trials=${TRIALS:-12}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

"$py" -m ner_core.bench --device cuda --data-dir "$data" --preset notebook 256x1 128x1 --epochs 2 \
    --paths auto padded-loop --out "$out/bench.json" 2>&1 | tee "$out/bench.log"

study=(--study-name gpu-check --storage "sqlite:///$out/study.db" --data-dir "$data" --device cuda --workers "$workers")
[ "${FULL:-0}" = 1 ] && size=(--trials 50) || size=(--trials "$trials" --max-epochs 10)
start=$SECONDS
"$py" -m study.run "${study[@]}" "${size[@]}" 2>&1 | tee "$out/study.log"
echo "study wall time: $((SECONDS - start)) s" | tee -a "$out/study.log"

"$py" -m study.best --test --study-name gpu-check --storage "sqlite:///$out/study.db" --device cuda --jobs 2 \
    --out "$out/best" 2>&1 | tee "$out/best.log"

echo '太祖遣使至洛陽' | CUDA_VISIBLE_DEVICES= "$py" -m ner_core.predict "$out/best/model" --device cpu \
    2>&1 | tee "$out/predict.log"
echo "gpu check done: $out"
