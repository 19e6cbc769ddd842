# Sourced by launch/run.sh and launch/test.sh: a virtualenv with the package installed, and the
# Fashion-MNIST files (Debian package dataset-fashion-mnist) when root can install them. The
# virtualenv is made by $PYTHON, else python3 (3.11 or later); where that Python cannot make
# one (Debian without python3-venv), root installs the Debian package first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALEXNET_VENV:-$ROOT/.venv${ALEXNET_LOWEST:+-lowest}}"
EXTRAS="${1:-}"

if [ ! -x "$VENV/bin/python" ]; then
  BASE="${PYTHON:-python3}"
  if ! "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    FOUND="$("$BASE" --version 2>/dev/null | head -1)" || true
    echo "error: alexnet_jax needs Python 3.11 or later; $BASE is ${FOUND:-not found}:" \
      "set PYTHON=/path/to/python3.11 or later" >&2
    exit 1
  fi
  if ! "$BASE" -c 'import ensurepip, venv' 2>/dev/null; then
    VENV_PKG="python3-venv python$("$BASE" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing $VENV_PKG (Debian packages: $BASE cannot make a virtualenv without them) ..."
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $VENV_PKG >/dev/null; } || true
    fi
    if ! "$BASE" -c 'import ensurepip, venv' 2>/dev/null; then
      echo "error: $BASE cannot make a virtualenv (no ensurepip): apt-get install $VENV_PKG" >&2
      exit 1
    fi
  fi
  # A virtualenv left half made (no pip in it) would fail every later install: removed, unless
  # the folder was there before.
  MADE=1; [ -e "$VENV" ] && MADE=0
  if ! "$BASE" -m venv "$VENV"; then
    [ "$MADE" = 1 ] && rm -rf "$VENV"
    echo "error: $BASE -m venv $VENV failed (above)" >&2
    exit 1
  fi
fi
# ALEXNET_LOWEST=1: the package's dependencies held at the lowest versions pyproject.toml
# allows (each `name>=X` as `name==X`), to show that those floors hold.
CONSTRAINTS=()
if [ -n "${ALEXNET_LOWEST:-}" ]; then
  sed -n '/^dependencies = \[/,/^]/p' "$ROOT/pyproject.toml" |
    sed -nE 's/^ *"([A-Za-z0-9_.-]+)>=([^",;]+)".*/\1==\2/p' >"$VENV/lowest.txt"
  CONSTRAINTS=(--constraint "$VENV/lowest.txt")
fi
# pip's and the build backend's chatter (setuptools warns about every editable install) goes to
# a log, shown only when the install fails.
LOG="$VENV/install.log"
if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
       "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}" "${CONSTRAINTS[@]}"
     } >"$LOG" 2>&1; then
  cat "$LOG" >&2
  echo "error: installing alexnet_jax into $VENV failed (the log above: $LOG)" >&2
  exit 1
fi

FASHION=/usr/share/datasets/fashion-mnist
if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing dataset-fashion-mnist (Debian package) ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
      || echo "warning: could not install dataset-fashion-mnist; tests that need it will skip"
  else
    echo "warning: $FASHION is missing and apt-get needs root: sudo apt-get install dataset-fashion-mnist"
  fi
fi
PY="$VENV/bin/python"
