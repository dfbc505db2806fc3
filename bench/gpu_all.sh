#!/usr/bin/env bash
# Every GPU check and benchmark in one run (< 8 min on one H100), written as one markdown report:
#   - correctness of every deformable-attention path on the device (packed grid_sample, gather, Triton on CUDA)
#     against the reference, forward and backward, with their time per call; parity vectors; autocast errors
#   - the release table (bench/zoo_speed.py): every row that fits the time budget
#   - predict against the bare forward at 683x512 for the tiny UperNet and the shipped default model (goal >= 80%)
#   - torchrun scaling of predict where more than one GPU exists
#
#   bench/gpu_all.sh [--out gpu_all.md]              # on a CUDA machine
#   bench/gpu_all.sh --device cpu --quick            # the same steps, small, on the CPU (a few minutes)
set -u
cd "$(dirname "$0")/.."
DEVICE=cuda QUICK=0 OUT=gpu_all.md
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
GPUS=0
[ "$DEVICE" = cuda ] && GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$DEVICE" = cuda ] && [ "$GPUS" -lt 1 ]; then echo "no CUDA device (use --device cpu --quick)" >&2; exit 2; fi

if [ "$QUICK" = 1 ]; then IMAGES=3 WORKERS=0 ZOO=(--quick --repeats 1); else IMAGES=32 WORKERS=0,2 ZOO=(--budget 200); fi
SMOKE=(); [ "$DEVICE" = cpu ] && SMOKE=(--cpu-smoke --no-compile)

STEPS=() STATUS=() SECS=() FAILED=0
step() {  # step NAME COMMAND...: run it, keep its output and status
  local name="$1"; shift
  local log="$LOGS/${#STEPS[@]}.log" t0=$SECONDS rc=0
  echo "== $name" >&2
  "$@" > "$log" 2>&1 || rc=$?
  tail -n 3 "$log" >&2
  STEPS+=("$name"); SECS+=($((SECONDS - t0)))
  if [ $rc = 0 ]; then STATUS+=(ok); else STATUS+=("FAIL (exit $rc)"); FAILED=1; fi
}

step "MSDA paths + parity + autocast ($DEVICE)" $PY bench/gpu_check.py "${SMOKE[@]}"
step "release table ($DEVICE)" $PY bench/zoo_speed.py --device "$DEVICE" "${ZOO[@]}"
step "predict vs forward, tiny UperNet, 683x512" $PY bench/predict.py --spec tiny --size 683x512 \
  --images $IMAGES --device "$DEVICE" --workers $WORKERS --procs 0
step "predict vs forward, default model, 683x512" $PY bench/predict.py --size 683x512 --images $IMAGES \
  --device "$DEVICE" --workers $WORKERS --procs 0
if [ "$GPUS" -gt 1 ]; then
  step "torchrun scaling, tiny UperNet ($GPUS GPUs)" $PY bench/predict.py --spec tiny --images $((IMAGES * 2)) \
    --device cuda --workers 2 --procs "1,$GPUS"
fi

{
  echo "# vitseg gpu_all: device $DEVICE$([ "$QUICK" = 1 ] && echo ', quick')"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(uname -n); load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
  for i in "${!STEPS[@]}"; do echo "| ${STEPS[$i]} | ${STATUS[$i]} | ${SECS[$i]} |"; done
  echo "| total | $([ $FAILED = 0 ] && echo ok || echo FAIL) | $SECONDS |"
  for i in "${!STEPS[@]}"; do
    echo; echo "## ${STEPS[$i]}"; echo; echo '```'; cat "$LOGS/$i.log"; echo '```'
  done
} > "$OUT"
echo "wrote $OUT ($SECONDS s)" >&2
exit $FAILED
