"""The CPU float32 goal, measured: the tiny backbone at 512^2, vitseg's path against the official per-level path.

The official path is `VITSEG_MSDA=reference`: every official form (per-level grid_sample deformable attention, NCHW
convs with separate BatchNorms, ConvTranspose2d, the explicit attention of the official ViT). A second baseline is
the same with torch's fused attention kernel in the ViT blocks instead (what this benchmark measured before the
reference path kept the official attention), so that the ratio is also shown against a baseline whose blocks are as
fast as vitseg's.

In one process, alternating the three forwards, median of --repeats (>= 4) each, with the load average read before
and after. Also: the largest output difference, the model's FLOPs over the vitseg time against a large float32
matmul timed in the same run (how close the forward is to the machine's matmul rate), and where the time goes in
both paths (forward hooks, bench/backbone.py's split). The bound: the ViT blocks are the same matmuls in vitseg and
the fused-attention baseline, so even if everything else cost nothing, the speedup could not exceed official time /
ViT-block time.

With one thread, each run is timed by the wall clock and by this process's CPU time (`time.process_time`). On a
machine shared with other work the CPU time is the steadier measure: it leaves out the time this process waited for
a core. The split, the matmul rate and the ratio on CPU time are then what a quiet core would show (cache sharing
with the other work still slows both paths somewhat).

    python bench/cpu_goal.py [--repeats 4] [--threads 2] [--side 512] [--preset tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import _perturbed, matmul_gflops  # noqa: E402

from vitseg_cli.model import attention as block_attention  # noqa: E402
from vitseg_cli.model.msda import msda_impl  # noqa: E402
from vitseg_cli.model.segmentor import build_model  # noqa: E402

PATHS = {"reference": "official per-level path", "reference+fused": "official path, fused block attention",
         "fast": "vitseg"}


@contextlib.contextmanager
def path(name: str):
    """Run the model on one of PATHS: 'reference+fused' is the reference path whose block attention takes torch's
    fused kernel as vitseg's does."""
    with msda_impl("reference" if name.startswith("reference") else name):
        if name != "reference+fused":
            yield
            return
        real = block_attention.get_msda_impl
        block_attention.get_msda_impl = lambda: "fast"
        try:
            yield
        finally:
            block_attention.get_msda_impl = real


def part_times(backbone, x, clock=time.perf_counter) -> dict[str, float]:
    """Seconds per part of one forward (ViT blocks, SPM, injectors, extractors, the rest)."""
    parts = {"vit blocks": list(backbone.blocks), "spm": [backbone.spm], "patch embed": [backbone.patch_embed],
             "injectors": [i.injector for i in backbone.interactions],
             "extractors": [e for i in backbone.interactions for e in [i.extractor, *(i.extra_extractors or [])]]}
    acc: dict[str, float] = defaultdict(float)
    start: dict[int, float] = {}
    handles = []
    for name, mods in parts.items():
        for m in mods:
            handles.append(m.register_forward_pre_hook(lambda mod, _a: start.__setitem__(id(mod), clock())))
            handles.append(m.register_forward_hook(
                lambda mod, _a, _o, name=name: acc.__setitem__(name, acc[name] + clock() - start[id(mod)])))
    t0 = clock()
    backbone(x)
    acc["other"] = clock() - t0 - sum(acc.values())
    for h in handles:
        h.remove()
    return dict(acc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    load0 = os.getloadavg()
    backbone = _perturbed(build_model(args.preset)).backbone
    x = torch.randn(1, 3, args.side, args.side, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        backbone(x)
    gflop = counter.get_total_flops() / 1e9
    outs: dict[str, torch.Tensor] = {}
    times = {name: {"wall": [], "cpu": []} for name in PATHS}
    for impl in times:  # warm-up, and the outputs to compare
        with path(impl):
            outs[impl] = torch.cat([f.flatten() for f in backbone(x)])
    # CPU time is a per-run clock only with one thread (it sums over threads)
    one_thread = torch.get_num_threads() == 1
    rates = {"wall": [matmul_gflops(2048, 3)], "cpu": [matmul_gflops(2048, 3, clock=time.process_time)]}
    for _ in range(args.repeats):
        for impl in times:
            with path(impl):
                t0, c0 = time.perf_counter(), time.process_time()
                backbone(x)
                times[impl]["wall"].append(time.perf_counter() - t0)
                times[impl]["cpu"].append(time.process_time() - c0)
    rates["wall"].append(matmul_gflops(2048, 3))
    rates["cpu"].append(matmul_gflops(2048, 3, clock=time.process_time))
    clock = time.process_time if one_thread else time.perf_counter
    splits = {}
    for impl in ("reference", "fast"):
        with path(impl):
            runs = [part_times(backbone, x, clock) for _ in range(2)]
        splits[impl] = {k: min(r[k] for r in runs) for k in runs[0]}
    load1 = os.getloadavg()
    diff = max((outs[k] - outs["fast"]).abs().max().item() for k in ("reference", "reference+fused"))
    print(f"{args.preset} backbone {args.side}x{args.side}, float32, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs; load average {load0[0]:.2f} before, {load1[0]:.2f} after; "
          f"max |difference| {diff:.1e}")
    for kind in (["wall", "cpu"] if one_thread else ["wall"]):
        report(kind, times, rates[kind], gflop)
    print(f"where the time goes ({'CPU' if one_thread else 'wall'} s, fastest of 2 hooked runs):")
    for name in splits["fast"]:
        print(f"  {name:<12} official {splits['reference'][name]:.3f}  vitseg {splits['fast'][name]:.3f}")
    vit = splits["fast"]["vit blocks"]
    ref = sum(splits["reference"].values())
    print(f"bound: the ViT blocks alone take {vit:.3f} s, so official / ViT-blocks = {ref / vit:.2f}x is the most "
          "any change outside the blocks could give")


def report(kind: str, times: dict, rates: list[float], gflop: float) -> None:
    med = {k: statistics.median(v[kind]) for k, v in times.items()}
    fast = med["fast"]
    print(f"{kind} clock, median of {len(times['fast'][kind])} runs each:")
    for name, label in PATHS.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name][kind])
        ratio = "" if name == "fast" else f"; vitseg is {med[name] / fast:.2f}x faster (goal 2.0x)"
        print(f"  {label}: {med[name]:.3f} s (runs {runs}){ratio}")
    peak = max(rates)
    print(f"  model {gflop:.1f} GFLOP -> {gflop / fast:.1f} GFLOP/s; 2048^3 float32 matmul {peak:.1f} GFLOP/s "
          f"(rates {', '.join(f'{r:.1f}' for r in rates)}): the forward runs at {100 * gflop / fast / peak:.0f}% "
          "of the matmul rate")


if __name__ == "__main__":
    main()
