"""Benchmark: images/s of the whole `vitseg predict` pipeline (decode, preprocess, inference, write) against the bare
model forward on the same windows of the same images, on synthetic images.

    python bench/predict.py [--images 16] [--size 683x512] [--weights W] [--device auto] [--workers 0,2]

Without --weights it uses the shipped default model, or the `nano` preset with random weights when none is shipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from vitseg_cli import build_model, save_model
from vitseg_cli.data.io import write_image
from vitseg_cli.engine.common import default_weights_path, load_inference_model
from vitseg_cli.engine.inference import InferenceSettings, preprocess, resolve_device, slide_windows
from vitseg_cli.engine.predict import PredictOptions, run_predict


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads){gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def synthetic_images(folder: Path, n: int, h: int, w: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        yy, xx = np.mgrid[:h, :w]
        img = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, ((xx + yy) // 4) % 256], -1).astype(np.uint8)
        img = np.clip(img.astype(np.int16) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"img{i:04d}.jpg")
        write_image(paths[-1], img)
    return paths


def bare_forward(model, paths, settings: InferenceSettings, device) -> float:
    """Seconds for the model alone on every window the pipeline runs (inputs preprocessed beforehand)."""
    from vitseg_cli.data.io import read_image

    spec = model.spec
    inputs = [torch.from_numpy(preprocess(read_image(p), settings.resize, 1.0, spec.data.mean, spec.data.std))[None]
              .to(device) for p in paths]
    with torch.inference_mode():
        model(inputs[0][..., :64, :64])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x in inputs:
            h, w = x.shape[-2:]
            wins = [(0, h, 0, w)] if settings.mode == "whole" else slide_windows(h, w, settings.crop_size,
                                                                                 settings.stride)
            for y1, y2, x1, x2 in wins:
                model(x[..., y1:y2, x1:x2])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--size", default="683x512", help="WxH of the synthetic images")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts to time")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = default_weights_path()
            if not weights.exists():
                torch.manual_seed(0)
                weights = save_model(build_model("nano").eval(), tmp / "nano.safetensors")
        model = load_inference_model(weights, None, device, note=None)
        settings = InferenceSettings.from_spec(model.spec)
        paths = synthetic_images(tmp / "images", args.images, h, w)
        n = len(paths)
        rows = [("model forward only (same windows)", n / bare_forward(model, paths, settings, device))]
        for workers in (int(v) for v in args.workers.split(",")):
            opts = PredictOptions(sources=[str(tmp / "images")], out=tmp / f"out{workers}", weights=weights,
                                  device=str(device), workers=workers, quiet=True)
            start = time.perf_counter()
            run_predict(opts)
            rows.append((f"vitseg predict, workers={workers} (masks+color+overlay)",
                         n / (time.perf_counter() - start)))
    table = Table(title=f"predict throughput: {n} images {h}x{w}, {weights.name}, {settings.mode} "
                        f"{'native' if settings.resize is None else list(settings.resize.scale)}, "
                        f"{device}", title_justify="left")
    table.add_column("pipeline")
    table.add_column("images/s", justify="right")
    table.add_column("vs forward", justify="right")
    for name, rate in rows:
        table.add_row(name, f"{rate:.2f}", f"{rate / rows[0][1]:.0%}")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"machine: {machine(device)}")


if __name__ == "__main__":
    main()
