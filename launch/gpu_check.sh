#!/usr/bin/env bash
# Accepts a GPU node in one command: installs what the node lacks from a wheelhouse made by
# launch/wheelhouse.sh (no network), then times the training step against PyTorch, prepares a
# store of generated photographs and runs the training loop from it, trains the full network
# on Fashion-MNIST for two epochs and projects 90 ImageNet epochs; each phase time-boxed and
# written to OUT/report.json and OUT/report.md as soon as it ends.
#
#   bash launch/gpu_check.sh [--wheelhouse DIR] [--fashion_mnist DIR] [--minutes 9] [--out DIR]
#                            [--smoke]
#
# --smoke: every phase at tiny sizes on the CPU, in a minute or two (the test suite runs it).
# The Python that runs it: $PYTHON, else python3 (activate a virtualenv first to keep the
# node's own environment untouched).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELHOUSE="" ARGS=() OUT="gpu_check-$(date -u +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse|--fashion_mnist|--minutes|--out)
      [ $# -ge 2 ] || { echo "gpu_check.sh: $1 needs a value (--help lists the arguments)" >&2; exit 2; } ;;&
    --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
    --fashion_mnist|--minutes) ARGS+=("$1=$2"); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --smoke) ARGS+=(--smoke); export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (--help lists them)" >&2; exit 2 ;;
  esac
done

if ! command -v "$PY" >/dev/null; then
  echo "gpu_check.sh: no Python at $PY: set PYTHON to one (3.11 or later)" >&2
  exit 2
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ -n "$WHEELHOUSE" ]; then
  if [ ! -f "$WHEELHOUSE/requirements.txt" ]; then
    echo "gpu_check.sh: $WHEELHOUSE has no requirements.txt: make it with launch/wheelhouse.sh" >&2
    exit 2
  fi
  # Requirements the node already meets are left as they are; CUDA jax only where jax finds
  # no GPU.
  CUDA=()
  "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null \
    || CUDA=(-r "$WHEELHOUSE/cuda.txt")
  if ! "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" \
       -r "$WHEELHOUSE/requirements.txt" "${CUDA[@]}" 2>"$OUT/pip.err"; then
    echo "gpu_check.sh: installing from $WHEELHOUSE failed: $(grep -m1 ERROR "$OUT/pip.err" || tail -1 "$OUT/pip.err")" >&2
    exit 1
  fi
  rm -f "$OUT/pip.err"
fi
# What the check imports, looked up without importing it: one line where the Python lacks it.
if ! MISSING="$("$PY" -c 'import importlib.util as u, sys
m = [n for n in ("absl", "jax", "flax", "optax", "orbax.checkpoint", "grain", "ml_collections")
     if u.find_spec(n.split(".")[0]) is None]
print(" ".join(m)); sys.exit(bool(m))')"; then
  echo "gpu_check.sh: $PY lacks $MISSING: give --wheelhouse DIR (made by launch/wheelhouse.sh)" \
    "or set PYTHON to a Python that has alexnet_jax's dependencies" >&2
  rmdir "$OUT" 2>/dev/null || true  # nothing was written to it
  exit 2
fi
cd "$ROOT"
exec "$PY" -m alexnet_jax.gpu_check --out="$OUT" "${ARGS[@]}"
