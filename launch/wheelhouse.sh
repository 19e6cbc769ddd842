#!/usr/bin/env bash
# Downloads into DIR every wheel alexnet_jax, its benchmark extra and pytest need on a
# Linux x86-64 GPU node with Python 3.12 (CUDA jax), for `launch/gpu_check.sh --wheelhouse DIR`
# on a node without internet. Run it on a machine with network; any OS will do.
#
#   bash launch/wheelhouse.sh DIR [--cuda 12|13] [--python 3.12] [--no-torch] [--have FILE]
#
# DIR/requirements.txt lists the project's requirements, DIR/cuda.txt CUDA jax (gpu_check.sh
# installs it only where jax finds no GPU); DIR/pinned.txt, every wheel kept as name==version.
# --have FILE: the node's packages, as `python3 -m pip list --format=freeze` prints them there:
# the set is resolved against the node's versions, and the wheels the node does not need are
# left out (launch/wheelhouse_node.py): a small wheelhouse for a node with CUDA jax already.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="" CUDA=13 PYVER=3.12 TORCH=1 HAVE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) CUDA="$2"; shift 2 ;;
    --have) HAVE="$2"; shift 2 ;;
    --python) PYVER="$2"; shift 2 ;;
    --no-torch) TORCH=0; shift ;;
    -h|--help) sed -n "2,12p" "$0"; exit 0 ;;
    -*) echo "wheelhouse.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
[ -n "$DIR" ] || { echo "usage: bash launch/wheelhouse.sh DIR [--cuda 12|13] [--python 3.12] [--no-torch] [--have FILE]" >&2; exit 2; }
case "$CUDA" in 12|13) ;; *) echo "wheelhouse.sh: --cuda is 12 or 13, not $CUDA" >&2; exit 2 ;; esac
if [ -n "$HAVE" ] && [ ! -f "$HAVE" ]; then
  echo "wheelhouse.sh: --have $HAVE is not a file (on the node: python3 -m pip list --format=freeze >FILE)" >&2
  exit 2
fi
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
# the test runner: a node runs the tests that need its GPU or PyTorch, not the lint
wanted += [r for r in extras["test"] if r.startswith("pytest")]
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
download() {
  "$PY" -m pip download -q --only-binary=:all: "${TAG[@]}" --find-links "$DIR" -d "$DIR" \
    -r "$DIR/requirements.txt" -r "$DIR/cuda.txt" "$@" 2>"$DIR/.pip.err"
}
pip_error() { grep -m1 -A3 '^ERROR' "$DIR/.pip.err" | tr '\n' ' '; }
if [ -n "$HAVE" ]; then
  # Resolved against the node's versions; where they leave no solution, without them (the
  # wheels that replace the node's are kept then).
  "$PY" "$ROOT/launch/wheelhouse_node.py" constraints "$DIR" "$HAVE"
  if ! download -c "$DIR/node.txt"; then
    echo "wheelhouse.sh: the node's versions leave no solution ($(pip_error)): resolved without them" >&2
    HAVE_FAILED=1
  fi
fi
if [ -z "$HAVE" ] || [ -n "${HAVE_FAILED:-}" ]; then
  download || { echo "wheelhouse.sh: pip download failed: $(pip_error)" >&2; exit 1; }
fi
rm -f "$DIR/.pip.err"

LEFT=""
[ -z "$HAVE" ] || LEFT="$("$PY" "$ROOT/launch/wheelhouse_node.py" prune "$DIR" "$HAVE" "$PYVER")"

# name==version of every wheel kept.
ls "$DIR"/*.whl | sed -E 's#.*/##; s#^([^-]+)-([^-]+)-.*#\1==\2#' | sort -f >"$DIR/pinned.txt"
echo "$(wc -l <"$DIR/pinned.txt") wheels, $(du -sh "$DIR" | cut -f1), in $DIR (listed in $DIR/pinned.txt)${LEFT:+; left out, the node has them: $LEFT}"
