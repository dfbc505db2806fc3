#!/usr/bin/env bash
# How the shipped default model (vitseg_cli/weights/default.safetensors, package data) is made: a `nano` ViT-Adapter
# trained on synthetic shapes (see weights/README.md for the three stages and the exact values used). The run's
# best.safetensors is copied to vitseg_cli/weights/default.safetensors.
# Usage: bash weights/make_default.sh WORKDIR [ITERS] [DEVICE]
# Environment (defaults = stage 1, from scratch):
#   NUM_TRAIN (2000) synthetic training images (seed 1); BATCH (16); LR (the nano preset's 0.001);
#   WORKERS (8) loader processes; INIT_FROM (none) a vitseg checkpoint to start from;
#   VITSEG (vitseg) the command to run; TRAIN_SECONDS > 0 stops training after that many seconds
#   (SIGTERM: the run saves its state and last.safetensors, and `vitseg train --resume` would continue it).
set -euo pipefail
work=${1:?usage: make_default.sh WORKDIR [ITERS] [DEVICE]}
iters=${2:-4000}
device=${3:-auto}
vitseg=${VITSEG:-vitseg}
extra=()
[ -n "${INIT_FROM:-}" ] && extra+=(--init-from "$INIT_FROM")
[ -n "${LR:-}" ] && extra+=(--lr "$LR")
mkdir -p "$work"
$vitseg data synth "$work/train" --num "${NUM_TRAIN:-2000}" --seed 1
$vitseg data synth "$work/val" --num 100 --seed 2
set +e
timeout -s TERM "${TRAIN_SECONDS:-0}" $vitseg train --spec nano --data "$work/train" --format folder \
  --val-data "$work/val" --out "$work/run" --iters "$iters" --batch-size "${BATCH:-16}" --device "$device" \
  --workers "${WORKERS:-8}" --eval-every 500 --save-every 500 --seed 0 --quiet "${extra[@]}"
rc=$?
set -e
case $rc in 0|124|130|143) ;; *) exit $rc ;; esac
ls -la "$work/run"
