#!/usr/bin/env bash
# N training processes on this machine, coordinated by jax.distributed on 127.0.0.1: the
# multi-host set-up in miniature (CPU devices, gloo collectives).
#
#   bash launch/local_multiprocess.sh N [--devices=D] -- --config=configs/tiny.py --workdir=DIR ...
#
# Each process gets D CPU devices (default 4); arguments after -- go to alexnet_jax.main. Logs go
# to DIR/process_<i>.log when --workdir is given (appended, each launch under a header line),
# process 0's shown on the terminal as well (it logs progress and the closing summary). A
# workdir whose run is alive (its lock held) is refused before any log is touched. Exits with
# the first failing process's status, with one line for each process that failed.
set -euo pipefail
USAGE="usage: bash launch/local_multiprocess.sh N [--devices=D] -- MAIN_ARGS..."
count() {  # NAME VALUE: VALUE, a whole number >= 1, or one error line
  case "$2" in
    '' | *[!0-9]*) ;;
    *) [ "$((10#$2))" -ge 1 ] && return 0 ;;
  esac
  echo "error: $1 must be a whole number >= 1, got '$2' ($USAGE)" >&2
  exit 2
}
N="${1:-}"
count N "$N"
shift
DEVICES=4
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    --devices=*) DEVICES="${1#--devices=}"; count --devices "$DEVICES" ;;
    *) echo "error: unknown option $1 ($USAGE)" >&2; exit 2 ;;
  esac
  shift
done
[ "${1:-}" = "--" ] && shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
LOGDIR=""
for arg in "$@"; do
  case "$arg" in --workdir=*) LOGDIR="${arg#--workdir=}" ;; esac
done
if [ -n "$LOGDIR" ]; then
  mkdir -p "$LOGDIR"
  if [ -e "$LOGDIR/.alexnet_jax.lock" ] && ! flock -n "$LOGDIR/.alexnet_jax.lock" true; then
    echo "error: $LOGDIR is in use by a running job (its lock is held); its logs are left as" \
      "they are: wait for it to end or use another --workdir" >&2
    exit 2
  fi
  for ((i = 0; i < N; i++)); do
    echo "=== launch of $(date '+%Y-%m-%d %H:%M:%S'): process $i of $N ===" >>"$LOGDIR/process_$i.log"
  done
fi
pids=()
for ((i = 0; i < N; i++)); do
  log=/dev/stderr
  [ -n "$LOGDIR" ] && log="$LOGDIR/process_$i.log"
  run=(env JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$DEVICES"
       "$PY" -m alexnet_jax.main --coordinator_address="127.0.0.1:$PORT" --num_processes="$N"
       --process_id="$i" "$@")
  if [ "$i" = 0 ] && [ -n "$LOGDIR" ]; then
    "${run[@]}" > >(tee -a "$log") 2>&1 &
  else
    "${run[@]}" >>"$log" 2>&1 &
  fi
  pids+=($!)
done
# SIGTERM or SIGINT to this script (kill, a scheduler, Ctrl-C) reaches every process: they stop
# after one agreed step and save it, and the script waits for them.
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM
trap 'kill -INT "${pids[@]}" 2>/dev/null || true' INT
status=0
for i in "${!pids[@]}"; do
  while :; do
    wait "${pids[$i]}" && rc=0 || rc=$?
    # a trapped signal ends `wait` with status > 128 while the process runs on: wait again
    [ "$rc" -gt 128 ] && kill -0 "${pids[$i]}" 2>/dev/null && continue
    break
  done
  [ "$rc" = 0 ] && continue
  [ "$status" = 0 ] && status=$rc
  why="exited with status $rc"
  [ "$rc" -gt 128 ] && why="was ended by signal $((rc - 128))"
  echo "process $i $why${LOGDIR:+ (its log: $LOGDIR/process_$i.log)}" >&2
done
exit "$status"
