#!/usr/bin/env bash
# One training run with every core against one run per core at once (issue 11's campaign):
# benchmarks/train_speed.py's full SimCLR step (width 16, batch 256, fp32 + channels_last)
# timed (a) alone with all threads and (b) as N concurrent copies with 1 thread each.
# Writes benchmarks/results/parallel_runs/*.json and parallel_runs.md. Needs an idle machine.
#
#   bash benchmarks/parallel_runs.sh [N]        # N defaults to the number of cores
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-$(nproc)}
PY=${PYTHON:-.venv/bin/python}
OUT=benchmarks/results/parallel_runs
export PYTHONPATH=src
rm -rf "$OUT" && mkdir -p "$OUT"  # logs: $OUT/*.log (removed at the end)
B=(benchmarks/train_speed.py --runs simclr --sizes 16:256 --settings fp32-cl --steps 8)
"$PY" "${B[@]}" --out "$OUT/alone" > "$OUT/alone.log" 2>&1
for i in $(seq 1 "$N"); do
  OMP_NUM_THREADS=1 "$PY" "${B[@]}" --out "$OUT/copy$i" > "$OUT/copy$i.log" 2>&1 &
done
wait
"$PY" - "$OUT" "$N" <<'PY'
import json, sys
from pathlib import Path
out, n = Path(sys.argv[1]), int(sys.argv[2])
def img_s(d):
    rows = json.loads((d / "train_speed.json").read_text())["rows"]
    return next(r["img_per_s"] for r in rows if r["run"] == "simclr")
alone = img_s(out / "alone")
copies = [img_s(out / f"copy{i}") for i in range(1, n + 1)]
res = {"alone_img_per_s": alone, "copies_img_per_s": copies, "total_img_per_s": sum(copies),
       "gain": sum(copies) / alone}
for d in [out / "alone", *(out / f"copy{i}" for i in range(1, n + 1))]:
    (out / f"{d.name}.json").write_text((d / "train_speed.json").read_text())
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
(out / "parallel_runs.json").write_text(json.dumps(res, indent=2))
md = (f"SimCLR training step, ResNet-18 width 16, batch 256, 32 px, fp32 + channels_last "
      f"(benchmarks/train_speed.py, median of 8 steps).\n\n| setting | img/s |\n|---|---|\n"
      f"| one run, all threads | {alone:.1f} |\n"
      + "".join(f"| copy {i + 1} of {n}, 1 thread | {v:.1f} |\n" for i, v in enumerate(copies))
      + f"| {n} runs at once, total | {sum(copies):.1f} ({sum(copies) / alone:.2f}x) |\n")
(out / "parallel_runs.md").write_text(md)
print(md)
PY
rm -f "$OUT"/*.log
