# Sourced by launch/run.sh and launch/test.sh: a virtualenv with the package installed, and the
# Fashion-MNIST files (Debian package dataset-fashion-mnist) when root can install them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ALEXNET_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# pip's and the build backend's chatter (setuptools warns about every editable install) goes to
# a log, shown only when the install fails.
LOG="$VENV/install.log"
if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
       "$VENV/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"; } >"$LOG" 2>&1; then
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
