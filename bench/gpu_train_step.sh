#!/usr/bin/env bash
# Run on the device machine (one H100/H200), from the repository root:
#     bash bench/gpu_train_step.sh            (also writes its log to $OUT/gpu_train_step.log when OUT is set)
# Uses the machine's own python3 (torch, transformers, tokenizers, h5py, pandas, opencv are installed there);
# when a carried .whl/ folder exists its wheels are installed first (see the device README).
# Every stage has a time box and the whole script stops by 285 s:
#   1. CUDA checks of the real training loop: bf16; fp16 + GradScaler + micro-batching + distillation (~40 s)
#   2. bench/train_step: ResNet50 + BERT-base-sized, 224 px, 64 tokens, bf16, batch 256, eager (~60 s)
#   3. the same with micro-batches of 64 (GradCache path) (~30 s)
#   4. the same with torch.compile, if it finishes within what is left
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=${OUT:-/tmp}/gpu_train_step.log
END=$(( $(date +%s) + 285 ))
box() {  # box CAP: seconds for the next stage, at most CAP and what is left before END
    local left=$(( END - $(date +%s) ))
    [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TXTRAYALIGN_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cpus: $(nproc)"
$PY -c "import torch, transformers, tokenizers, h5py; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__, 'h5py', h5py.__version__)"
$PY -c "import cv2; print('opencv', cv2.__version__)" || echo "opencv missing: PIL fallback for augmentation (slower)"

echo "== 1. CUDA checks of the training loop (txtrayalign train on a toy dataset, 64 px)"
TOY=/tmp/toy_gpu
$PY -c "from txtrayalign.train.toydata import write_toy_dataset; write_toy_dataset('$TOY', studies=400, image_size=64)"
for variant in bf16 fp16; do
    if [ $variant = bf16 ]; then
        EXP='{"embed_dim": 64, "train": {"epochs": 3, "batch_size": 32, "image_size": 64, "num_workers": 4, "precision": "bf16"}}'
    else
        EXP='{"embed_dim": 64, "train": {"epochs": 3, "batch_size": 32, "micro_batch_size": 8, "image_size": 64, "num_workers": 4, "precision": "fp16", "distill": {"enabled": true}}}'
    fi
    rm -rf /tmp/run_$variant
    timeout "$(box 60)" $PY -m txtrayalign train --experiment-json "$EXP" --images-index $TOY/images/64/index.parquet \
        --sentences $TOY/text/sentences.parquet --split $TOY/splits/all.parquet --out-dir /tmp/run_$variant \
        --device cuda 2>&1 | grep -E "epoch 3|finished|Error|error" | cut -c1-300
    echo "check $variant: exit ${PIPESTATUS[0]}"
    timeout "$(box 30)" $PY -c "
from txtrayalign.train import load_model; import torch
m = load_model('/tmp/run_$variant', 'cuda')
with torch.no_grad():
    z = m.encode_images(torch.randint(0, 256, (4, 64, 64), dtype=torch.uint8)); t = m.encode_texts(['small nodule in the left lung'])
print('load_model on cuda:', tuple(z.shape), tuple(t.shape), z.dtype, z.device)"
done

echo "== 1b. CUDA tests (tests/test_train_gpu.py)"
timeout "$(box 45)" $PY -m pytest -q -p no:cacheprovider tests/test_train_gpu.py 2>&1 | tail -3

echo "== 2. bench/train_step eager (bf16, batch 256)"
timeout "$(box 120)" $PY bench/train_step --batch 256 --workers 12 --steps 30 || echo "eager bench: exit $?"
echo "== 3. bench/train_step micro-batches of 64 (GradCache)"
timeout "$(box 60)" $PY bench/train_step --batch 256 --micro 64 --workers 12 --steps 10 --warmup 3 || echo "micro bench: exit $?"
echo "== 4. bench/train_step torch.compile (time box: what is left)"
timeout "$(box 200)" $PY bench/train_step --batch 256 --workers 12 --steps 30 --compile \
    || echo "compile bench: exit $? (124 = did not finish in its time box)"
echo "== total $(( $(date +%s) - END + 285 )) s"
} 2>&1 | grep --line-buffered -v -i "warn" | tee "$LOG"
