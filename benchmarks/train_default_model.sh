#!/usr/bin/env bash
# Trains the model that ships inside the package (fast_nst/pretrained/default.pth, the model used
# when none is named): johnson_slim on mosaic (conf/mosaic.yml's tuned weights), 256 px crops.
#
# As shipped it was trained against a stand-in VGG16 (an ImageNet VGG16 fine-tuned on MRI scans,
# in the Caffe VGG16's input convention) on 1,649 photos on a CPU; see docs/gallery.md. To re-train
# it against the real Caffe VGG16 on a GPU, e.g.:
#   LOSS_MODEL_FILE=pretrained/vgg16-00b39a1b.pth TRAIN_DIR=data/train2014 DEVICE=cuda \
#   STEPS=40000 PRECISION=bf16 WORKERS=4 bash benchmarks/train_default_model.sh
# then package the newest checkpoint:
#   python benchmarks/package_default_model.py RUN_DIR/mosaic_slim/... (see that script's --help)
#
# Stop it at any time with Ctrl-C (SIGINT): the trainer saves a checkpoint first.
set -euo pipefail
cd "$(dirname "$0")/.."
LOSS_MODEL_FILE=${LOSS_MODEL_FILE:-../shared/standin-vgg16/vgg16_caffe_standin.pth}
TRAIN_DIR=${TRAIN_DIR:-../shared/data/train}
STYLE_IMAGE=${STYLE_IMAGE:-../shared/data/styles/mosaic.jpg}
MODEL_PATH=${MODEL_PATH:-models}
DEVICE=${DEVICE:-cpu}
STEPS=${STEPS:-5000}
BATCH=${BATCH:-4}
PRECISION=${PRECISION:-bf16}
WORKERS=${WORKERS:-1}
exec "${PYTHON:-python}" train.py -c conf/mosaic.yml \
    --set naming=mosaic_slim \
    --set model_type=johnson_slim \
    --set image_size=256 \
    --set style_image="$STYLE_IMAGE" \
    --set loss_model=vgg16_caffe \
    --set loss_model_file="$LOSS_MODEL_FILE" \
    --set train_dir="$TRAIN_DIR" \
    --set model_path="$MODEL_PATH" \
    --set device="$DEVICE" \
    --set precision="$PRECISION" \
    --set max_steps="$STEPS" \
    --set batch_size="$BATCH" \
    --set num_workers="$WORKERS" \
    --set log_every=10 \
    --set checkpoint_every=100 \
    --set keep_checkpoints=60 \
    --no_progress "$@"
