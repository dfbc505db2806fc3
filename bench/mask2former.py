"""BEiT-Adapter + Mask2Former at its official crop: time per crop and peak memory, fast vs official deformable attention.

    python bench/mask2former.py                                   # BEiT-Adapter-L + Mask2Former, ADE20K 896 crop, CPU
    python bench/mask2former.py --preset nano_mask2former --repeats 3
    python bench/mask2former.py --device cuda --repeats 5

Each path runs in a fresh child process, so the peak memory printed is that path's own (CPU: peak RSS of the process,
weights included; CUDA: torch.cuda.max_memory_allocated). The model has random weights: speed and memory do not depend
on their values. "official" is the official pure-PyTorch deformable attention (per-level grid_sample,
VITSEG_MSDA=reference); "fast" is vitseg's default.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

DEFAULT = "mask2former_beit_adapter_large_896_80k_ade20k"


def _child(preset: str, path: str, device: str, repeats: int) -> dict:
    from vitseg_cli.model.msda import msda_impl
    from vitseg_cli.model.segmentor import build_model
    from vitseg_cli.spec import load_spec

    spec = load_spec(preset)
    crop = tuple(spec.test.crop_size)
    torch.manual_seed(0)
    model = build_model(spec).eval().to(device)
    x = torch.randn(1, 3, *crop, device=device)
    times = []
    with torch.inference_mode(), msda_impl("reference" if path == "official" else "fast"):
        for _ in range(repeats + 1):  # the first run warms up (allocator, kernels) and is not counted
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"crop": list(crop), "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "median_s": statistics.median(times[1:]), "peak_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=DEFAULT)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--child", choices=["fast", "official"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(_child(args.preset, args.child, args.device, args.repeats)))
        return
    rows = {}
    for path in ("official", "fast"):
        cmd = [sys.executable, __file__, "--preset", args.preset, "--device", args.device, "--repeats",
               str(args.repeats), "--threads", str(args.threads), "--child", path]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows[path] = json.loads(out.strip().splitlines()[-1])
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    crop = rows["fast"]["crop"]
    print(f"{args.preset}: {rows['fast']['params_m']:.1f}M parameters, one {crop[1]}x{crop[0]} crop, batch 1, "
          f"median of {args.repeats} after a warm-up; {device}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}")
    print("| deformable attention | s / crop | peak memory (MB) | vs official |")
    print("|---|---:|---:|---:|")
    base = rows["official"]["median_s"]
    for path in ("official", "fast"):
        r = rows[path]
        print(f"| {path} | {r['median_s']:.2f} | {r['peak_mb']:.0f} | {base / r['median_s']:.2f}x |")


if __name__ == "__main__":
    main()
