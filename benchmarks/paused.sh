#!/usr/bin/env bash
# Run a command on an otherwise idle CPU: every other process whose command line matches
# PATTERN (default: python) is SIGSTOPped while it runs, and SIGCONTed when it ends, fails
# or is interrupted. Use it to time a benchmark or run the tests while a training campaign
# runs in the background (sharing 2 cores slows both about 3x; pausing costs nothing).
# The matches' descendants stop too, so `-p hex_study` also pauses the campaign's spawned
# workers, whose command lines do not name the script. Processes started meanwhile are
# caught too (re-checked every second). This script, its
# ancestors (your shell, make, pytest) and the command's own processes are never stopped.
#
#   bash benchmarks/paused.sh make test
#   bash benchmarks/paused.sh -p hex_study python benchmarks/train_speed.py
set -uo pipefail
PATTERN=python
if [ "${1:-}" = "-p" ]; then PATTERN=$2; shift 2; fi
if [ $# -eq 0 ]; then echo "usage: $0 [-p PATTERN] COMMAND [ARGS...]" >&2; exit 2; fi
STOPPED=$(mktemp)
parent_of() { awk '{print $4}' "/proc/$1/stat" 2>/dev/null || echo 0; }
ANCESTORS=" "
p=$$
while [ "$p" -gt 1 ]; do ANCESTORS+="$p "; p=$(parent_of "$p"); done
# a process of COMMAND descends from this script
ours() { local p=$1; while [ "$p" -gt 1 ]; do [ "$p" = "$$" ] && return 0; p=$(parent_of "$p"); done; return 1; }
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
stop_others() {
  local p
  for p in $(for m in $(pgrep -f -- "$PATTERN"); do echo "$m"; descendants "$m"; done | sort -u); do
    case "$ANCESTORS" in *" $p "*) continue ;; esac
    ours "$p" && continue
    kill -STOP "$p" 2>/dev/null && echo "$p" >> "$STOPPED"
  done
}
resume() { sort -u "$STOPPED" | xargs -r kill -CONT 2>/dev/null; rm -f "$STOPPED"; }
trap resume EXIT
trap 'exit 130' INT TERM
stop_others
"$@" &
CMD=$!
while kill -0 "$CMD" 2>/dev/null; do stop_others; sleep 1; done
wait "$CMD"
