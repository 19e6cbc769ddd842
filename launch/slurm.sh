#!/usr/bin/env bash
# Multi-host GPU training under SLURM: one task (process) per node, every GPU of the node in it.
#
#   sbatch --nodes=8 launch/slurm.sh configs/paper.py WORKDIR [--config.x=y ...]
#
# jax.distributed reads the coordinator, process count and index from SLURM's variables
# (alexnet_jax/distributed.py). Set ALEXNET_VENV to a shared virtualenv made with
#   bash launch/setup.sh cuda12
# Requeue-safe: a preempted job (SIGTERM) saves a checkpoint; the same command resumes.
#SBATCH --job-name=alexnet_jax
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=slurm-%j.out
set -euo pipefail
USAGE="usage: sbatch --nodes=N launch/slurm.sh CONFIG WORKDIR [--config.x=y ...]"
if [ $# -lt 2 ] || [ -z "$1" ] || [ -z "$2" ] || [[ "$1" == -* ]] || [[ "$2" == -* ]]; then
  echo "error: a CONFIG and a WORKDIR come first ($USAGE)" >&2
  exit 2
fi
CONFIG="$1" WORKDIR="$2"
shift 2
ROOT="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="${ALEXNET_VENV:-$ROOT/.venv}"
if ! command -v srun >/dev/null; then
  echo "error: srun not found: submit this script with sbatch on a SLURM cluster ($USAGE)" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "error: $VENV/bin/python not found: set ALEXNET_VENV to a virtualenv every node reads, made with 'bash launch/setup.sh cuda12'" >&2
  exit 2
fi
cd "$ROOT"
srun --kill-on-bad-exit=1 "$VENV/bin/python" -m alexnet_jax.main --config="$CONFIG" \
  --workdir="$WORKDIR" "$@"
