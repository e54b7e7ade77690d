#!/usr/bin/env bash
# Issue 11's GPU runs in one call: benchmarks/hex_study_gpu_protocol.yaml (SimCLR and
# SimCLR + HEX paper, ResNet-18 width 64, bf16, batch 512, 100 epochs, data on the GPU),
# seed 0 for both arms, then seed 1 while time is left. Needs python3 with torch and
# lightning and a CUDA GPU; everything else is optional (Pillow decodes the JPEGs when
# kornia_rs is missing). Results go to OUT_DIR/hex_study_gpu.tgz (JSONs, curves, log; the
# 22 MB weights are left out), to be unpacked into benchmarks/results/hex_study_gpu/.
#
#   benchmarks/hex_study_gpu.sh DATA.tar.gz OUT_DIR [SECONDS [hex_study.py ARGS...]]
#
# Extra arguments go to benchmarks/hex_study.py (a later --set replaces the data.root one;
# the CPU smoke test uses them). PYTHON picks the interpreter (default python3).
# On the lent device (the data archive copied into the ignored .devdata/ and carried):
#   bash benchmarks/hex_study_gpu.sh .devdata/tiny-imagenet-hier50.tar.gz "$OUT" 520
set -uo pipefail
DATA=${1:?usage: benchmarks/hex_study_gpu.sh DATA.tar.gz OUT_DIR [SECONDS]}
OUT_DIR=${2:?usage: benchmarks/hex_study_gpu.sh DATA.tar.gz OUT_DIR [SECONDS]}
SECONDS_LEFT=${3:-520}
[ -f "$DATA" ] || { echo "data archive not found: $DATA" >&2; exit 2; }
mkdir -p "$OUT_DIR/hex_study_gpu"
export PYTHONPATH=src PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
} > "$OUT_DIR/hex_study_gpu/machine.txt" 2>&1
# the campaign resumes and skips as on CPU; a run cut by the time limit is simply missing
timeout --signal=INT "$SECONDS_LEFT" "$PY" benchmarks/hex_study.py \
  --protocol benchmarks/hex_study_gpu_protocol.yaml \
  --results "$OUT_DIR/hex_study_gpu" --runs-dir "$OUT_DIR/.runs" \
  --set "data.root=$DATA" "${@:4}" 2>&1 | tee "$OUT_DIR/hex_study_gpu/log.txt"
status=${PIPESTATUS[0]}
tar czf "$OUT_DIR/hex_study_gpu.tgz" --exclude=weights -C "$OUT_DIR" hex_study_gpu
rm -rf "$OUT_DIR/hex_study_gpu" "$OUT_DIR/.runs"  # checkpoints stay behind
echo "hex_study_gpu.sh: campaign exit $status; wrote $OUT_DIR/hex_study_gpu.tgz"
