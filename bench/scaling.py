"""Time and peak memory (VmHWM, resident set) of one prediction against image side, whole vs slide mode.

Each (mode, side) runs in its own subprocess so the peak RSS is that run's alone; inference goes through the shared
`vitseg_cli.engine.inference` (`InferenceSettings`, `iter_predictions`), exactly what `vitseg predict` runs.

    python bench/scaling.py                        # nano, sides 256 512 1024 2048
    python bench/scaling.py --preset tiny --sides 256 512 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(preset: str, mode: str, side: int, threads: int) -> None:
    import cv2
    import numpy as np
    import torch

    from vitseg_cli.engine.inference import InferenceSettings, iter_predictions
    from vitseg_cli.model.segmentor import build_model

    torch.set_num_threads(threads)
    model = build_model(preset).eval()
    base_mb = _vm_hwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "img.png"
        cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8))
        crop = 512 if preset != "nano" else 256
        settings = InferenceSettings(mode=mode, crop_size=(crop, crop), stride=(crop * 2 // 3, crop * 2 // 3),
                                     flip=False, scales=[1.0], resize=None)
        t0 = time.perf_counter()
        pred = next(iter_predictions(model, [path], settings, torch.device("cpu")))
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": _vm_hwm_mb(), "model_mb": base_mb,
                      "error": getattr(pred, "error", None)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="nano")
    ap.add_argument("--sides", type=int, nargs="*", default=[256, 512, 1024, 2048])
    ap.add_argument("--modes", nargs="*", default=["whole", "slide"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.preset, args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print(f"{args.preset}, {args.threads} threads, one random image per run, peak = VmHWM of the run's process")
    print(f"{'mode':<6} {'side':>5} {'seconds':>8} {'peak MB':>8} {'after model MB':>15}")
    for mode in args.modes:
        for side in args.sides:
            cmd = [sys.executable, __file__, "--preset", args.preset, "--child", mode, str(side), str(args.threads)]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode:
                print(f"{mode:<6} {side:>5}  failed: {(run.stderr.strip().splitlines() or ['?'])[-1][:100]}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            note = f"  error: {r['error']}" if r["error"] else ""
            print(f"{mode:<6} {side:>5} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {r['model_mb']:>15.0f}{note}")


if __name__ == "__main__":
    main()
