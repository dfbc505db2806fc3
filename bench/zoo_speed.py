"""Speed and memory of every release: one markdown table, one command.

For each official preset (the 22 releases, plus any DINOv2/DINOv3 preset in the registry) at its official crop and
test mode: seconds per crop (float32 with vitseg's path, float32 with the official per-level deformable attention,
and half precision: bfloat16 on the CPU, float16 on CUDA), images/s on a 683x512 image through the preset's own test
pipeline (resize, slide/whole, flip) in float32 and half (n/a on a CPU without native bfloat16), and the peak
memory of the process (CUDA: peak allocated; CPU: peak resident set). Each preset runs in its own subprocess so its peak is its own. Weights are random (speed
does not depend on them); nothing is downloaded.

    python bench/zoo_speed.py                     # every preset; on a CPU the reduced set (below)
    python bench/zoo_speed.py --quick             # three presets (DeiT-T UperNet, BEiT-L UperNet, BEiT-L M2F)
    python bench/zoo_speed.py --presets NAME ...  # these only
    python bench/zoo_speed.py --device cpu --full # real sizes on the CPU (hours)

On the CPU a full row takes minutes (BEiT-L at 896 is ~1 min per crop on 2 cores), so by default the CPU table is a
REDUCED set: the backbone cut to 4 blocks (one per interaction), crop, stride and test scale divided by 8, and
Mask2Former's pixel decoder cut to 1 layer of 6 and its transformer decoder to 3 of 9 (one per feature level). Those
rows compare paths and presets with each other; they are not the releases' real cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import cpu_name  # bench/, on the path when run as a script

HERE = Path(__file__).resolve().parent
QUICK = ["upernet_deit_adapter_tiny_512_160k_ade20k", "upernet_beit_adapter_large_640_160k_ade20k",
         "mask2former_beit_adapter_large_896_80k_ade20k"]
REDUCED_DEPTH, REDUCED_DIVISOR = 4, 8
REDUCED_PIXEL_DECODER, REDUCED_DECODER = 1, 3  # Mask2Former layers in the reduced set (of 6 and 9)


def release_presets() -> list[str]:
    from vitseg_cli.releases import RELEASES
    from vitseg_cli.presets import SPEC_PRESETS

    names = [r.name for r in RELEASES]
    names += [p for p in SPEC_PRESETS if "dino" in p.lower() and not p.endswith("_ms") and p not in names]
    return names


def machine_line(device: str) -> str:
    import torch

    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}" if device == "cuda" else ""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}; "
            f"load average {load}")


def reduced_overrides(spec: Any) -> dict[str, Any]:
    """Spec overrides that cut a preset to REDUCED_DEPTH blocks and crop / REDUCED_DIVISOR (multiples of 32)."""
    bb = spec.model.backbone
    # [first, last] block ranges, or one block each (DINOv3, whose default None means four evenly spaced blocks)
    pairs = bool(bb.interaction_indexes) and isinstance(bb.interaction_indexes[0], (list, tuple))
    over: dict[str, Any] = {"depth": REDUCED_DEPTH,
                            "interaction_indexes": [[i, i] if pairs else i for i in range(REDUCED_DEPTH)]}
    for key in ("window_attn", "window_size"):
        if getattr(bb, key, None) is not None:
            over[key] = list(getattr(bb, key))[:REDUCED_DEPTH]
    crop = max(64, spec.test.crop_size[0] // REDUCED_DIVISOR // 32 * 32)
    if getattr(bb, "img_size", None) is not None:
        over["img_size"] = crop
    test: dict[str, Any] = {"crop_size": [crop, crop],
                            "stride": [max(32, s // REDUCED_DIVISOR) for s in spec.test.stride]}
    if spec.test.resize is not None:
        resize = spec.test.resize.model_dump() if hasattr(spec.test.resize, "model_dump") else dict(spec.test.resize)
        resize["scale"] = [max(32, s // REDUCED_DIVISOR) for s in resize["scale"]]
        test["resize"] = resize
    if getattr(spec.test, "short_side", None):  # the DINOv3 procedure sizes its views by the short side
        test["short_side"] = crop
    model: dict[str, Any] = {"backbone": over}
    head = spec.model.decode_head
    if hasattr(head, "pixel_decoder"):  # Mask2Former: its 1024-wide decoders would dominate a crop / 8
        model["decode_head"] = {"pixel_decoder": {"num_layers": REDUCED_PIXEL_DECODER},
                                "transformer_decoder": {"num_layers": REDUCED_DECODER}}
    return {"model": model, "test": test}


def _peak_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, device: str, reduced: bool, repeats: int) -> dict[str, Any]:
    """Measure one preset in this process; returns the row as a dict."""
    import numpy as np
    import torch

    from vitseg_cli.engine.inference import InferenceSettings, predict_array
    from vitseg_cli.model.msda import msda_impl
    from vitseg_cli.model.segmentor import build_model
    from vitseg_cli.spec import load_spec

    torch.set_grad_enabled(False)
    spec = load_spec(name)
    if reduced:
        spec = load_spec({"preset": name, **reduced_overrides(spec)})
    dev = torch.device(device)
    model = build_model(spec).eval().to(dev)
    half = torch.float16 if device == "cuda" else torch.bfloat16
    crop = spec.test.crop_size
    x = torch.randn(1, 3, crop[0], crop[1], generator=torch.Generator().manual_seed(0)).to(dev)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def crop_forward(impl: str, dtype: Any) -> None:
        with msda_impl(impl), torch.autocast(device, dtype=half, enabled=dtype is not None):
            model(x)
        sync()

    image = np.random.default_rng(0).integers(0, 256, (512, 683, 3), dtype=np.uint8)

    def pipeline(half_: bool) -> None:
        predict_array(model, image, InferenceSettings.from_spec(spec, half=half_), dev)
        sync()

    runs = {"fp32": lambda: crop_forward("fast", None), "official": lambda: crop_forward("reference", None),
            "half": lambda: crop_forward("fast", half), "img_fp32": lambda: pipeline(False),
            "img_half": lambda: pipeline(True)}
    if not _native_half(device):  # the pipeline refuses --half here; emulated bf16 would only measure emulation
        del runs["half"], runs["img_half"]
    times: dict[str, list[float]] = {k: [] for k in runs}
    # warm-up: every column on CUDA (kernel selection, Triton compiles); on the CPU one crop forward is enough (the
    # columns share allocations and weights) and a reduced row then takes ~40% less of a shared machine
    for fn in (runs.values() if device == "cuda" else [runs["fp32"]]):
        fn()
    for _ in range(repeats):  # alternating, so a load change hits every column alike
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"name": name, "crop": crop[0], "mode": spec.test.mode, "flip": spec.test.flip,
            "fp32": med["fp32"], "official": med["official"], "half": med.get("half"),
            "img_fp32": 1 / med["img_fp32"], "img_half": 1 / med["img_half"] if "img_half" in med else None,
            "peak_mb": _peak_mb(device)}


def _native_half(device: str) -> bool:
    import torch

    if device == "cuda":
        return True
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def run_row(name: str, device: str, reduced: bool, repeats: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--device", device,
           "--repeats", str(repeats)] + (["--reduced"] if reduced else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"over {timeout:.0f} s"}
    if done.returncode:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rate(x: float) -> str:
    """images/s with two significant digits below 0.1 (a reduced ViT-7B row is ~0.003), else two decimals."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def table(rows: list[dict[str, Any]], half_name: str) -> str:
    head = (f"| preset | crop | mode | s/crop fp32 | s/crop official | speedup | s/crop {half_name} | "
            f"img/s fp32 | img/s {half_name} | peak MB |")
    lines = [head, "|" + "|".join(["---"] * 10) + "|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | | | {r['error']} | | | | | | |")
            continue
        mode = r["mode"] + ("+flip" if r["flip"] else "")
        half = "n/a" if r["half"] is None else f"{r['half']:.3f}"
        img_half = "n/a" if r["img_half"] is None else _rate(r["img_half"])
        lines.append(f"| {r['name']} | {r['crop']} | {mode} | {r['fp32']:.3f} | {r['official']:.3f} | "
                     f"{r['official'] / r['fp32']:.2f}x | {half} | {_rate(r['img_fp32'])} | {img_half} | "
                     f"{r['peak_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--presets", nargs="*", help="these presets only")
    ap.add_argument("--full", action="store_true", help="real depth and crop on the CPU too")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per column (median; default 3, CPU 1)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per preset before it is given up")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds for the whole table: presets not started by then are listed as not run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--reduced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.device, args.reduced, args.repeats or 2)))
        return ""
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    reduced = device == "cpu" and not args.full
    names = args.presets or (QUICK if args.quick else release_presets())
    repeats = args.repeats or (3 if device == "cuda" else 1)
    half_name = "fp16" if device == "cuda" else "bf16"
    out = [f"machine: {machine_line(device)}",
           f"device: {device}; " + (f"REDUCED SET on the CPU: backbone cut to {REDUCED_DEPTH} blocks, crop, stride "
                                    f"and test scale / {REDUCED_DIVISOR}, Mask2Former pixel decoder "
                                    f"{REDUCED_PIXEL_DECODER} layer, transformer decoder {REDUCED_DECODER}"
                                    if reduced else "full presets")
           + f"; median of {repeats}; official = the reference path, every official form (per-level grid_sample "
           "deformable attention, explicit block attention, NCHW convs)", ""]
    rows = []
    start = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        if args.budget and t0 - start > args.budget:
            rows.append({"name": name, "error": f"not run (over the {args.budget:.0f} s budget)"})
            continue
        rows.append(run_row(name, device, reduced, repeats, args.timeout))
        # each row as soon as it is measured, so a long run that is cut off still leaves its rows
        print(f"  {time.perf_counter() - t0:.0f} s {table(rows[-1:], half_name).splitlines()[-1]}",
              file=sys.stderr, flush=True)
    out.append(table(rows, half_name))
    text = "\n".join(out)
    print(text)
    failed = [r["name"] for r in rows if r.get("error") and not r["error"].startswith("not run")]
    if failed:  # a row that broke is a failure of the script, not a blank in the table
        sys.exit(f"zoo_speed: {len(failed)} row(s) failed: {', '.join(failed)}")
    return text


if __name__ == "__main__":
    main()
