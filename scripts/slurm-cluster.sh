#!/usr/bin/env bash
# A single-node SLURM on localhost for the tests marked `slurm` and for CI.
#
#   scripts/slurm-cluster.sh install   apt-get the packages (slurmctld slurmd slurm-client munge)
#                                      when they are missing; nothing else installs anything
#   eval "$(scripts/slurm-cluster.sh start)"   start munged, slurmctld and slurmd; prints
#                                      `export SLURM_CONF=...` once the node is idle
#   eval "$(scripts/slurm-cluster.sh env)"     the same line for the cluster already running
#   scripts/slurm-cluster.sh stop      cancel its jobs, shut it down, remove its folder
#
# Needs root (SlurmUser=root, munged runs as the `munge` user). Every file of a cluster
# (slurm.conf, state, spool, pid files, logs, munge's socket) lives in one fresh folder
# under ${TMPDIR:-/tmp}, so no stale job is ever recovered; its path is recorded in
# $POINTER for `env` and `stop`. The settings and their reasons: ../docs/slurm.md.
# Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

POINTER="${TMPDIR:-/tmp}/hexssl-slurm-cluster.path"
NODE_CPUS=16      # declared, not real (config_overrides): several tiny test jobs run at once
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

alive() {  # whether the pid in file $1 is a live process (read from /proc: no signal sent)
  [ -s "$1" ] && [ -d "/proc/$(cat "$1")" ]
}

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "packages already installed: ${PACKAGES[*]}"
    return
  fi
  say "installing ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

real_memory_mb() {  # 90 % of what slurmd sees: a node may not declare more than it has
  local mb
  mb=$(slurmd -C | tr ' ' '\n' | sed -n 's/^RealMemory=//p')
  echo $((mb * 9 / 10))
}

write_conf() {  # $1: the cluster's folder
  local dir=$1
  cat >"$dir/slurm.conf" <<EOF
ClusterName=hexssl-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# the munge socket of this cluster; credentials expire after 10 s so a requeued job is
# eligible again within seconds (the default waits about 121 s)
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# no cgroups on this kind of machine: plain process tracking, no task containment
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# declare more CPUs than the machine has, so that several tiny jobs run concurrently
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NODE_CPUS RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {  # munged refuses folders it does not own, so its own subfolder
  local dir=$1
  install -d -o munge -g munge -m 0755 "$dir/munge"
  runuser -u munge -- munged \
    --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  munge -n -S "$dir/munge/munge.socket" | unmunge -S "$dir/munge/munge.socket" >/dev/null \
    || die "munge does not answer; see $dir/munge/munged.log"
}

wait_idle() {  # poll until the node is idle (usually well under a second); 30 s at most
  local state=""
  for _ in $(seq 300); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [ "$state" = "idle" ] && return
    sleep 0.1
  done
  die "node not idle after 30 s (state: '${state}'); logs in $1/log"
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (SlurmUser=root; munged runs as munge)"
  command -v slurmctld >/dev/null || die "SLURM is not installed; run: $0 install"
  if [ -s "$POINTER" ] && alive "$(cat "$POINTER")/slurmctld.pid"; then
    die "a cluster is already running from $(cat "$POINTER"); stop it first: $0 stop"
  fi
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hexssl-slurm.XXXXXX")
  chmod 0755 "$dir"  # munged (user munge) must reach its subfolder
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  echo "$dir" >"$POINTER"
  write_conf "$dir"
  export SLURM_CONF="$dir/slurm.conf"
  start_munge "$dir"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N localhost
  wait_idle "$dir"
  say "cluster up in $dir"
  echo "export SLURM_CONF=$SLURM_CONF"
}

print_env() {
  [ -s "$POINTER" ] && alive "$(cat "$POINTER")/slurmctld.pid" \
    || die "no cluster is running; start one: $0 start"
  echo "export SLURM_CONF=$(cat "$POINTER")/slurm.conf"
}

wait_gone() {  # wait until pid file $1 is removed or names no live process; 30 s at most
  for _ in $(seq 300); do
    alive "$1" || return 0
    sleep 0.1
  done
  say "warning: $1 still names a live process after 30 s"
}

stop() {
  [ -s "$POINTER" ] || die "no cluster recorded in $POINTER"
  local dir
  dir=$(cat "$POINTER")
  export SLURM_CONF="$dir/slurm.conf"
  if alive "$dir/slurmctld.pid"; then
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    [ -z "$jobs" ] || scancel $jobs || true
    scontrol shutdown || true  # slurmctld and every slurmd
  fi
  wait_gone "$dir/slurmctld.pid"
  wait_gone "$dir/slurmd.pid"
  # munged ends itself: --stop signals the pid in the pid file *this* munged wrote
  if alive "$dir/munge/munged.pid"; then
    runuser -u munge -- munged --stop \
      --socket="$dir/munge/munge.socket" --pid-file="$dir/munge/munged.pid" >&2 || true
  fi
  wait_gone "$dir/munge/munged.pid"
  rm -rf "$dir" "$POINTER"
  say "cluster stopped"
}

case "${1:-}" in
  install) install_packages ;;
  start) start ;;
  env) print_env ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|env|stop" >&2; exit 2 ;;
esac
