#!/usr/bin/env bash
# Prepares ImageNet (ILSVRC-2012) for training: TFDS array_record files of the originals, then
# §2's 256x256 form once (alexnet_jax.data.prepare: array_record shards of 256x256 JPEGs, the
# mean image and RGB PCA computed in the same pass), which training reads from then on.
#
#   bash launch/prepare_imagenet.sh MANUAL_DIR DATA_DIR
#
# MANUAL_DIR holds the two archives from image-net.org (they cannot be downloaded for you):
#   ILSVRC2012_img_train.tar  (138 GB)   ILSVRC2012_img_val.tar  (6.3 GB)
# DATA_DIR receives imagenet2012/<version>/*.array_record (the originals) and
# alexnet_jax_prepared/imagenet2012-256-shorter_side-q90-420/ (the §2 form, its statistics and a report of unreadable
# files). Building needs TensorFlow: installs the `imagenet-build` extra. Both steps resume
# where they stopped when run again. An ImageFolder tree (ROOT/{train,val}/<class>/*) needs only
# the second: python -m alexnet_jax.data.prepare --config=configs/paper.py \
#   --config.data.name=image_folder --config.data.data_dir=ROOT
# Train with: python -m alexnet_jax.main --config=configs/paper.py --workdir=DIR \
#               --config.data.data_dir=DATA_DIR
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bash launch/prepare_imagenet.sh MANUAL_DIR DATA_DIR" >&2
  exit 2
fi
MANUAL_DIR="$(realpath "$1")"
DATA_DIR="$(realpath -m "$2")"
for tar in ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar; do
  if [ ! -f "$MANUAL_DIR/$tar" ]; then
    echo "error: $MANUAL_DIR/$tar is missing (download it from https://image-net.org)" >&2
    exit 2
  fi
done
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" imagenet-build
mkdir -p "$DATA_DIR"
"$VENV/bin/tfds" build imagenet2012 --manual_dir="$MANUAL_DIR" --data_dir="$DATA_DIR" \
  --file_format=array_record
cd "$ROOT"
"$PY" -m alexnet_jax.data.prepare --config=configs/paper.py --config.data.data_dir="$DATA_DIR"
