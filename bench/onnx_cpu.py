"""onnxruntime CPU against torch CPU on the same images, through one dynamic-size ONNX graph.

    python bench/onnx_cpu.py                            # tiny UperNet, 512x512 and 683x512, 3 repeats, 1 thread
    python bench/onnx_cpu.py --spec nano --sizes 256x256 --repeats 5 --threads 2

The model (random weights, perturbed so every path counts) is exported once with `--dynamic`; each image size then
runs through that same graph. The two runtimes alternate on identical normalized inputs and the median of the repeats
is printed with the largest logit difference, and a markdown table at the end (the machine is named in it). Export
time is printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import _perturbed as perturbed  # noqa: E402  (the same random weights as the backbone bench)
from machine import cpu_name  # noqa: E402

from vitseg_cli.engine.export import export_onnx  # noqa: E402
from vitseg_cli.engine.onnx_backend import OnnxSegmentor  # noqa: E402
from vitseg_cli.model.segmentor import build_model  # noqa: E402


def median_time(fn, repeats: int, other) -> tuple[float, float]:
    """Medians of `fn` and `other`, run alternately (the machine may be shared), after one warm-up each."""
    fn(), other()
    a, b = [], []
    for _ in range(repeats):
        for fn_, acc in ((fn, a), (other, b)):
            t0 = time.perf_counter()
            fn_()
            acc.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default="tiny", help="spec or preset (default tiny: ViT-Adapter-T + UperNet)")
    ap.add_argument("--sizes", default="512x512,683x512", help="WxH list, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    model = perturbed(build_model(args.spec))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = export_onnx(model, Path(tmp) / "m.onnx", 128, 128, dynamic=True)
        export_s = time.perf_counter() - t0
        print(f"export --dynamic: {export_s:.1f} s")
        runner = OnnxSegmentor(path, threads=args.threads)
        for w, h in sizes:
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(w * h))
            with torch.no_grad():
                err = (torch.from_numpy(runner(x)) - model(x)).abs().max().item()
                t_torch, t_ort = median_time(lambda: model(x), args.repeats, lambda: runner(x))
            rows.append((f"{w}x{h}", t_torch, t_ort, err))
            print(f"{w}x{h}: torch {t_torch:.3f} s, onnxruntime {t_ort:.3f} s (x{t_torch / t_ort:.2f}), "
                  f"max|d| {err:.1e}")
    print(f"\n{args.spec} model, {args.threads} thread(s), median of {args.repeats}, {cpu_name()}, "
          f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}; one graph for all sizes "
          f"(export {export_s:.0f} s)\n")
    print("| input (WxH) | torch CPU s | onnxruntime CPU s | torch / onnxruntime | max abs logit diff |")
    print("|---|---|---|---|---|")
    for size, t_torch, t_ort, err in rows:
        print(f"| {size} | {t_torch:.3f} | {t_ort:.3f} | {t_torch / t_ort:.2f}x | {err:.1e} |")


if __name__ == "__main__":
    main()
