#!/usr/bin/env bash
# One device call (issues 22 and 23): the GPU check, then the next runs of the GPU study
# (benchmarks/hex_study_gpu_protocol.yaml) in the seconds left, with the length given by
# the protocol's rule. Everything the call returns lies in OUT (at most 8 files):
# gpu_check.json/.md, pytest_gpu.txt, train_speed_cuda.json/.md, device_check.log and
# hex_study_gpu.tgz.
#
#   bash benchmarks/gpu/session.sh OUT DATA.tar.gz [CALL_SECONDS [hex_study.py ARGS...]]
#
# CALL_SECONDS (default 580) is the whole call's budget; CHECK_SECONDS (default 230) the
# check's share; DRY=1 runs both at toy sizes on a CPU (the dry run before the device).
set -uo pipefail
OUT=${1:?usage: session.sh OUT DATA.tar.gz [CALL_SECONDS]}
DATA=${2:?usage: session.sh OUT DATA.tar.gz [CALL_SECONDS]}
CALL=${3:-580}
shift $(( $# < 3 ? $# : 3 ))
START=$(date +%s)
export PYTHONPATH=src PYTHONUNBUFFERED=1 HEXSSL_CACHE=${HEXSSL_CACHE:-/tmp/hexssl-cache}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
dry=()
[ -n "${DRY:-}" ] && dry=(--dry-run)
timeout "${CHECK_SECONDS:-230}" "$PY" benchmarks/gpu/device_check.py --out "$OUT" \
  --data "$DATA" "${dry[@]}" > "$OUT/device_check.log" 2>&1
echo "session.sh: device check exit $? after $(( $(date +%s) - START )) s"
LEFT=$(( CALL - ($(date +%s) - START) - 20 ))  # 20 s to pack the results
EPOCHS=${EPOCHS:-$("$PY" benchmarks/gpu/study_length.py "$OUT/gpu_check.json" "$LEFT" 3)}
echo "session.sh: $LEFT s left; study length by the protocol's rule: $EPOCHS epochs"
if [ "$EPOCHS" -gt 0 ]; then
  bash benchmarks/hex_study_gpu.sh "$DATA" "$OUT" "$LEFT" \
    --arms simclr simclr-hex-paper simclr-dcl --seeds 0 --workers 3 --epochs "$EPOCHS" "$@"
fi
cat "$OUT/gpu_check.md" 2>/dev/null
echo "session.sh: done after $(( $(date +%s) - START )) s"
