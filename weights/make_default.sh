#!/usr/bin/env bash
# How weights/default.safetensors is made: a `nano` ViT-Adapter trained from scratch on synthetic shapes.
# Usage: bash weights/make_default.sh WORKDIR [ITERS] [DEVICE]
#   VITSEG (default: vitseg) is the command to run; TRAIN_SECONDS > 0 stops training after that many seconds
#   (SIGTERM: the run saves its state and last.safetensors, and `vitseg train --resume` would continue it).
set -euo pipefail
work=${1:?usage: make_default.sh WORKDIR [ITERS] [DEVICE]}
iters=${2:-4000}
device=${3:-auto}
vitseg=${VITSEG:-vitseg}
mkdir -p "$work"
$vitseg data synth "$work/train" --num 2000 --seed 1
$vitseg data synth "$work/val" --num 100 --seed 2
set +e
timeout -s TERM "${TRAIN_SECONDS:-0}" $vitseg train --spec nano --data "$work/train" --format folder \
  --val-data "$work/val" --out "$work/run" --iters "$iters" --batch-size 16 --device "$device" --workers 8 \
  --eval-every 500 --save-every 500 --seed 0 --quiet
rc=$?
set -e
case $rc in 0|124|130|143) ;; *) exit $rc ;; esac
ls -la "$work/run"
