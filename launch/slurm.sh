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
CONFIG="${1:?usage: sbatch launch/slurm.sh CONFIG WORKDIR [--config.x=y ...]}"
WORKDIR="${2:?usage: sbatch launch/slurm.sh CONFIG WORKDIR [--config.x=y ...]}"
shift 2
ROOT="${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="${ALEXNET_VENV:-$ROOT/.venv}"
cd "$ROOT"
srun --kill-on-bad-exit=1 "$VENV/bin/python" -m alexnet_jax.main --config="$CONFIG" \
  --workdir="$WORKDIR" "$@"
