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
# check's share (0: no check, the study only); CHECK_SECTIONS (default all) names the
# check's sections to run, e.g. "loss_speed train_speed" to re-measure speed only;
# RESULTS (default the committed benchmarks/results/hex_study_gpu) says which runs are
# done, so a call trains the next ones at the committed length; FORCE_EPOCHS overrides it
# (the CPU dry run only); DRY=1 runs the check at toy sizes on a CPU (the dry run before
# the device); the study's runs take their toy CPU settings as hex_study.py arguments
# after CALL_SECONDS (`--set data.dataset=synthetic trainer.accelerator=cpu ...`, as in
# tests/study/test_study.py).
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
if [ "${CHECK_SECONDS:-230}" -gt 0 ]; then
  sections=()
  [ -n "${CHECK_SECTIONS:-}" ] && read -r -a sections <<< "--sections $CHECK_SECTIONS"
  timeout "${CHECK_SECONDS:-230}" "$PY" benchmarks/gpu/device_check.py --out "$OUT" \
    --data "$DATA" "${dry[@]}" "${sections[@]}" > "$OUT/device_check.log" 2>&1
  echo "session.sh: device check exit $? after $(( $(date +%s) - START )) s"
fi
LEFT=$(( CALL - ($(date +%s) - START) - 20 ))  # 20 s to pack the results
# the next runs by the protocol's rule (length fixed by the committed runs, if any); a
# check that measured no speed (cut, CHECK_SECONDS=0, or CHECK_SECTIONS without
# host_syncs) falls back to the committed one
CHECK="$OUT/gpu_check.json,benchmarks/results/gpu/gpu_check.json"
read -r EPOCHS SEEDS ARMS <<< "$("$PY" benchmarks/gpu/study_length.py "$CHECK" "$LEFT" \
  "${RESULTS:-benchmarks/results/hex_study_gpu}")"
EPOCHS=${FORCE_EPOCHS:-$EPOCHS}
echo "session.sh: $LEFT s left; by the protocol's rule: ${EPOCHS} epochs, seeds ${SEEDS:-none}, arms ${ARMS:-none}"
if [ "${EPOCHS:-0}" -gt 0 ] && [ -n "${ARMS:-}" ]; then
  IFS=, read -r -a arm_list <<< "$ARMS"
  IFS=, read -r -a seed_list <<< "$SEEDS"
  bash benchmarks/hex_study_gpu.sh "$DATA" "$OUT" "$LEFT" --arms "${arm_list[@]}" \
    --seeds "${seed_list[@]}" --workers $(( ${#arm_list[@]} * ${#seed_list[@]} )) \
    --epochs "$EPOCHS" "$@"
fi
cat "$OUT/gpu_check.md" 2>/dev/null
echo "session.sh: done after $(( $(date +%s) - START )) s"
