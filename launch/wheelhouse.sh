#!/usr/bin/env bash
# Downloads into DIR every wheel alexnet_jax and its test and benchmark extras need on a
# Linux x86-64 GPU node with Python 3.12 (CUDA jax), for `launch/gpu_check.sh --wheelhouse DIR`
# on a node without internet. Run it on a machine with network; any OS will do.
#
#   bash launch/wheelhouse.sh DIR [--cuda 12|13] [--python 3.12] [--no-torch]
#
# DIR/requirements.txt lists the project's requirements, DIR/cuda.txt CUDA jax (gpu_check.sh
# installs it only where jax finds no GPU); DIR/pinned.txt, every wheel fetched as
# name==version (pip install -r DIR/pinned.txt --no-index --find-links DIR reproduces the set).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="" CUDA=13 PYVER=3.12 TORCH=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) CUDA="$2"; shift 2 ;;
    --python) PYVER="$2"; shift 2 ;;
    --no-torch) TORCH=0; shift ;;
    -h|--help) sed -n "2,10p" "$0"; exit 0 ;;
    -*) echo "wheelhouse.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
[ -n "$DIR" ] || { echo "usage: bash launch/wheelhouse.sh DIR [--cuda 12|13] [--python 3.12] [--no-torch]" >&2; exit 2; }
case "$CUDA" in 12|13) ;; *) echo "wheelhouse.sh: --cuda is 12 or 13, not $CUDA" >&2; exit 2 ;; esac
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PY="${PYTHON:-python3}"

# The requirements, read from pyproject.toml: the dependencies and the extras; CUDA jax apart.
"$PY" - "$ROOT/pyproject.toml" "$CUDA" "$TORCH" "$DIR" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
# nvImageCodec with the GPU's decoders (nvJPEG) for the node's CUDA, in place of the test
# extra's CPU-only one
nvimgcodec = extras["nvimgcodec" if sys.argv[2] == "12" else "nvimgcodec-cu13"]
wanted = list(project["dependencies"]) + nvimgcodec
wanted += [r for r in extras["test"] if not r.startswith("nvidia-nvimgcodec")]
wanted += [r for r in extras["benchmark"] if sys.argv[3] == "1" or not r.startswith("torch")]
open(f"{sys.argv[4]}/requirements.txt", "w").write("\n".join(wanted) + "\n")
open(f"{sys.argv[4]}/cuda.txt", "w").write("\n".join(extras[f"cuda{sys.argv[2]}"]) + "\n")
EOF

# Every manylinux tag an x86-64 glibc 2.39 node accepts: the CUDA wheels use several.
TAG=(--python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none
     --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64
     --platform linux_x86_64 --platform any)
for n in $(seq 5 39); do TAG+=(--platform "manylinux_2_${n}_x86_64"); done
# pip downloads no source distribution for another platform: the pure-Python packages in the
# tree published only as source (tensorflow-datasets needs promise) are built into wheels here.
for sdist_only in promise; do
  ls "$DIR"/"$sdist_only"-*.whl >/dev/null 2>&1 || "$PY" -m pip wheel -q --no-deps -w "$DIR" "$sdist_only"
done
if ! "$PY" -m pip download -q --only-binary=:all: "${TAG[@]}" --find-links "$DIR" -d "$DIR" \
     -r "$DIR/requirements.txt" -r "$DIR/cuda.txt" 2>"$DIR/.pip.err"; then
  echo "wheelhouse.sh: pip download failed: $(grep -m1 -A3 '^ERROR' "$DIR/.pip.err" | tr '\n' ' ')" >&2
  exit 1
fi
rm -f "$DIR/.pip.err"

# name==version of every wheel: the set as resolved.
ls "$DIR"/*.whl | sed -E 's#.*/##; s#^([^-]+)-([^-]+)-.*#\1==\2#' | sort -f >"$DIR/pinned.txt"
echo "$(wc -l <"$DIR/pinned.txt") wheels, $(du -sh "$DIR" | cut -f1), in $DIR (listed in $DIR/pinned.txt)"
