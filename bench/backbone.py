"""Backbone speed: reference vs fast deformable attention, FLOPs, achieved GFLOP/s against the machine's matmul rate,
where the time goes (ViT blocks, SPM, injectors, extractors, head), and optionally ONNX Runtime vs PyTorch.

    python bench/backbone.py                      # nano+tiny at 256 and 512, quick
    python bench/backbone.py --small --1024 --repeats 5 --threads 2 --onnx

Reference and fast runs are interleaved and the median of the repeats is printed (the machine is shared).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitseg_cli.model.msda import msda_impl
from vitseg_cli.model.segmentor import build_model


def matmul_gflops(n: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32, clock=time.perf_counter) -> float:
    """Achieved GEMM rate of this machine (median of repeats), the practical ceiling."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = clock()
        a @ b
        times.append(clock() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random, non-trivial weights (init has zero offsets/weights and gamma 0, which would hide the attention)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def split(model, x) -> dict[str, float]:
    """Seconds per part of one fast forward, from forward pre/post hooks on the part's modules."""
    backbone = model.backbone
    parts = {"vit blocks": list(backbone.blocks), "spm": [backbone.spm], "patch embed": [backbone.patch_embed],
             "injectors": [i.injector for i in backbone.interactions],
             "extractors": [e for i in backbone.interactions
                            for e in [i.extractor, *(i.extra_extractors or [])]],
             "head": [model.decode_head]}
    acc: dict[str, float] = defaultdict(float)
    start: dict[int, float] = {}
    handles = []
    for name, mods in parts.items():
        for m in mods:
            handles.append(m.register_forward_pre_hook(lambda mod, _a: start.__setitem__(id(mod), time.perf_counter())))
            handles.append(m.register_forward_hook(
                lambda mod, _a, _o, name=name: acc.__setitem__(name, acc[name] + time.perf_counter() - start[id(mod)])))
    t0 = time.perf_counter()
    model(x)
    total = time.perf_counter() - t0
    for h in handles:
        h.remove()
    acc["other (outputs, norms)"] = total - sum(acc.values())
    return {k: v / total for k, v in acc.items()}


def onnx_row(model, x, repeats: int) -> tuple[float, float, float]:
    from vitseg_cli.engine.export import export_onnx
    from vitseg_cli.engine.onnx_backend import OnnxSegmentor

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", x.shape[-2], x.shape[-1])
        runner = OnnxSegmentor(path, threads=torch.get_num_threads())
        runner(x)
        model(x)
        t_onnx, t_torch = [], []
        for _ in range(repeats):
            t_torch += timed(lambda: model(x), 1)
            t_onnx += timed(lambda: runner(x), 1)
        err = (torch.from_numpy(runner(x)) - model(x)).abs().max().item()
    return statistics.median(t_torch), statistics.median(t_onnx), err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="also the small preset")
    ap.add_argument("--1024", dest="big", action="store_true", help="also 1024x1024")
    ap.add_argument("--sizes", type=int, nargs="*", help="image sides (default 256 512)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--onnx", action="store_true", help="also ONNX Runtime vs PyTorch (needs vitseg[onnx])")
    ap.add_argument("--no-split", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = ["nano", "tiny"] + (["small"] if args.small else [])
    sizes = args.sizes or ([256, 512] + ([1024] if args.big else []))
    peak = matmul_gflops()
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; float32 matmul (1024^3) {peak:.1f} GFLOP/s"
          + (f", bfloat16 {matmul_gflops(dtype=torch.bfloat16):.1f} GFLOP/s" if bf16 else ", no native bfloat16"))
    print("backbone alone (the table); the time split is for the whole segmentor, UperNet head included")
    print("bf16: the fast path under CPU bfloat16 autocast (`--half`), its speedup over the float32 reference path "
          "and its max error relative to the largest output")
    print(f"{'preset':<6} {'size':>5} {'GFLOP':>7} {'ref ms':>8} {'fast ms':>8} {'speedup':>7} "
          f"{'GFLOP/s':>8} {'%peak':>6} {'max|d|':>8}" + (f" {'bf16 ms':>8} {'speedup':>7} {'rel err':>8}" if bf16 else ""))
    splits = {}
    torch.set_grad_enabled(False)
    for preset in presets:
        model = _perturbed(build_model(preset))
        for side in sizes:
            x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
            backbone = model.backbone
            with FlopCounterMode(display=False) as counter:
                backbone(x)
            gflop = counter.get_total_flops() / 1e9
            runs = {"reference": ("reference", False), "fast": ("fast", False)}
            if bf16:
                runs["bf16"] = ("fast", True)

            def forward(name: str) -> list[torch.Tensor]:
                impl, half = runs[name]
                with msda_impl(impl), torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                    return backbone(x)

            # warm-up; outputs to compare
            outs = {name: torch.cat([f.float().flatten() for f in forward(name)]) for name in runs}
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name in times:
                    times[name] += timed(lambda: forward(name), 1)
            ref, fast = (statistics.median(times[k]) for k in ("reference", "fast"))
            diff = (outs["reference"] - outs["fast"]).abs().max().item()
            row = (f"{preset:<6} {side:>5} {gflop:>7.1f} {ref * 1e3:>8.1f} {fast * 1e3:>8.1f} {ref / fast:>6.2f}x "
                   f"{gflop / fast:>8.1f} {100 * gflop / fast / peak:>5.1f}% {diff:>8.1e}")
            if bf16:
                half = statistics.median(times["bf16"])
                rel = ((outs["bf16"] - outs["reference"]).abs().max() / outs["reference"].abs().max()).item()
                row += f" {half * 1e3:>8.1f} {ref / half:>6.2f}x {rel:>8.1e}"
            print(row)
            if not args.no_split and side == 512:
                splits[preset] = split(model, x)
            if args.onnx:
                t_torch, t_onnx, err = onnx_row(model, x, args.repeats)
                print(f"{'':<6} {'':>5} onnxruntime {t_onnx * 1e3:.1f} ms vs torch {t_torch * 1e3:.1f} ms "
                      f"(x{t_torch / t_onnx:.2f}), max|d| {err:.1e}")
    for preset, parts in splits.items():
        print(f"\ntime split, {preset} 512x512, fast path (segmentor incl. UperNet head):")
        for name, frac in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<24} {100 * frac:5.1f}%")


if __name__ == "__main__":
    main()
