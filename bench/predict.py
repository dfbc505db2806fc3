"""Benchmark: images/s of the whole `vitseg predict` pipeline (decode, preprocess, inference, encode, write) against
the bare model forward on the same images, same windows and same batch size, on synthetic images; and, where more
than one GPU exists (or --procs asks), `torchrun --nproc_per_node N vitseg predict` for N = 1, 2, ...

    python bench/predict.py [--images 64] [--size 683x512] [--weights W | --spec tiny] [--device auto]
                            [--batch-size 1] [--half] [--compile] [--workers 0,2] [--procs 1,2] [--scale]
    python bench/predict.py --threads 1,2 [--busy K]    # CPU threads: the default rule against --threads N

With --threads it times instead the default CPU threads (engine/threads.py's rule) against each --threads N, while K
busy processes (default: as many as the CPUs this process may use) compete for the CPUs, as other work would.

Without --weights or --spec it uses the shipped default model (or the `nano` preset with random weights when none is
shipped); `--spec tiny` times the tiny UperNet with random weights. The goal on a GPU: the pipeline at >= 80% of the
forward rate. `--scale` adds, on the same images, tar-shard input against the loose files and `--engine ray` with 2
CPU actors against `torchrun --nproc_per_node 2` on the CPU (`bench/scale_rows.py`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from machine import cpu_name  # bench/, on the path when run as a script
from vitseg_cli import build_model, save_model
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.engine.common import default_weights_path, load_inference_model
from vitseg_cli.engine.device import resolve_device
from vitseg_cli.engine.inference import InferenceSettings, _model_forward, preprocess, slide_windows
from vitseg_cli.engine.predict import PredictOptions, run_predict
from vitseg_cli.engine.threads import allowed_cpus, plan_threads


def machine(device: torch.device) -> str:
    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(device)} (x{torch.cuda.device_count()})" if device.type == "cuda" else ""
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_forward(model, paths, settings: InferenceSettings, device: torch.device) -> float:
    """Seconds for the model alone (the pipeline's own forward: --half / --compile as set) on every window the
    pipeline runs, `batch_size` windows (slide) or same-size images (whole) per call, inputs already on the device."""
    spec = model.spec
    inputs = [torch.from_numpy(preprocess(read_image(p), settings.resize, 1.0, spec.data.mean, spec.data.std))[None]
              .to(device) for p in paths]
    forward = _model_forward(model.to(device).eval(), device, settings.half, settings.compile)
    b = settings.batch_size
    if settings.mode == "whole":  # the synthetic images share one size, so the pipeline batches them too
        calls = [torch.cat(inputs[i:i + b]) for i in range(0, len(inputs), b)]
    else:
        calls = []
        for x in inputs:
            wins = slide_windows(*x.shape[-2:], settings.crop_size, settings.stride)
            for i in range(0, len(wins), b):
                calls.append(torch.cat([x[..., y1:y2, x1:x2] for y1, y2, x1, x2 in wins[i:i + b]]))
    with torch.inference_mode():
        for x in {tuple(c.shape): c for c in calls}.values():  # warm-up (and compile) every shape once
            forward(x)
        _sync(device)
        start = time.perf_counter()
        for x in calls:
            forward(x)
        _sync(device)
    return time.perf_counter() - start


def predict_in_process(images: Path, out: Path, weights: Path, device, workers: int,
                       overrides: dict) -> tuple[float, float]:
    """(images/s over the whole call, images/s of the inference phase from predict.json)."""
    opts = PredictOptions(sources=[str(images)], out=out, weights=weights, device=str(device),
                          workers=workers, quiet=True, overrides=overrides)
    start = time.perf_counter()
    summary = run_predict(opts)
    whole = summary.processed / (time.perf_counter() - start)
    return whole, json.loads((out / "predict.json").read_text())["timings"]["images_per_s"]


def predict_torchrun(procs: int, images: Path, out: Path, weights: Path, device, workers: int,
                     cli_flags: list[str]) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           "-m", "vitseg_cli", "predict", str(images), "--out", str(out), "--weights", str(weights), "--device",
           device.type, "--workers", str(workers), "-q", *cli_flags]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    n = json.loads((out / "predict.json").read_text())["processed"]
    whole = n / (time.perf_counter() - start)
    return whole, json.loads((out / "predict.json").read_text())["timings"]["images_per_s"]


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def _cli_rate(images: Path, out: Path, weights: Path, device, workers: int, flags: list[str],
              env: dict[str, str]) -> tuple[float, float]:
    """(images/s over the whole `vitseg predict` process, images/s of its inference phase), run as a user would."""
    cmd = [sys.executable, "-m", "vitseg_cli", "predict", str(images), "--out", str(out), "--weights", str(weights),
           "--device", device.type, "--workers", str(workers), "--save", "masks", "-q", *flags]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stderr=subprocess.DEVNULL)
    record = json.loads((out / "predict.json").read_text())
    return record["processed"] / (time.perf_counter() - start), record["timings"]["images_per_s"]


def thread_rows(images: Path, out: Path, weights: Path, device, workers: int, flags: list[str],
                counts: list[int], busy: int) -> list[tuple[str, ...]]:
    """`vitseg predict` with the default threads, with each --threads N, and with OpenMP's own wait policy (as
    before vitseg set it), while `busy` spinning processes run."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "VITSEG_THREADS", "OMP_WAIT_POLICY")}
    default = plan_threads(workers=workers, env=base)
    runs = [(f"default threads ({default.threads}, the rule)", [], base)]
    runs += [(f"--threads {n}", ["--threads", str(n)], base) for n in counts]
    # an empty value is no policy to libgomp (it says so on stderr): torch's own spinning, as before
    runs += [(f"default threads ({default.threads}), OpenMP's own wait policy (before)", [],
              {**base, "OMP_WAIT_POLICY": ""})]
    ctx = multiprocessing.get_context("fork")  # the spinners run plain Python: nothing of torch's state is used
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for proc in spinners:
        proc.start()
    rows = []
    try:
        for i, (name, extra, env) in enumerate(runs):
            whole, steady = _cli_rate(images, out / f"threads{i}", weights, device, workers, [*flags, *extra], env)
            rows.append((name, f"{whole:.2f}", f"{steady:.2f}"))
    finally:
        stop.set()
        for proc in spinners:
            proc.join()
    return rows


def print_thread_table(rows, title: str, busy: int, device) -> None:
    table = Table(title=title, title_justify="left")
    for name, justify in (("vitseg predict", "left"), ("images/s (whole process)", "right"),
                          ("images/s (inference phase)", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False, width=120)
    console.print(table)
    console.print(f"{busy} busy processes spinning during every row, besides the machine's other work (load "
                  f"average {os.getloadavg()[0]:.1f}); the rule: {allowed_cpus()} CPUs this process may use (affinity "
                  f"{len(os.sched_getaffinity(0))}, cgroup quota) / local ranks - workers", markup=False)
    console.print(f"machine: {machine(device)}", markup=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", default="683x512", help="WxH of the synthetic images")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--spec", help="a preset or YAML: time a model of it with random weights (e.g. tiny)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts to time")
    ap.add_argument("--scale", action="store_true", help="add the tar-shard, Ray and torchrun CPU rows")
    ap.add_argument("--threads", default=None,
                    help="comma-separated --threads values to time against the default threads, under --busy load")
    ap.add_argument("--busy", type=int, default=None,
                    help="busy processes during the --threads rows (default: the CPUs this process may use)")
    ap.add_argument("--procs", default=None,
                    help="comma-separated torchrun process counts, 0 for none (default: 1,2 where more than one GPU "
                         "exists)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    device = resolve_device(args.device)
    procs = ([int(v) for v in args.procs.split(",") if int(v) > 0] if args.procs else
             [1, 2] if device.type == "cuda" and torch.cuda.device_count() > 1 else [])
    overrides = {"batch_size": args.batch_size, "half": args.half or None, "compile": args.compile or None}
    flags = ["--batch-size", str(args.batch_size), *(["--half"] if args.half else []),
             *(["--compile"] if args.compile else [])]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = default_weights_path()
            if args.spec or not weights.exists():
                torch.manual_seed(0)
                name = args.spec or "nano"
                weights = save_model(build_model(name).eval(), tmp / f"{Path(name).stem}.safetensors")
        model = load_inference_model(weights, None, device, note=None)
        settings = InferenceSettings.from_spec(model.spec, **{k: v for k, v in overrides.items() if v is not None})
        paths = synthetic_images(tmp / "images", args.images, h, w)
        n = len(paths)
        if args.threads:
            busy = allowed_cpus() if args.busy is None else args.busy
            workers = int(args.workers.split(",")[0])
            rows = thread_rows(tmp / "images", tmp, weights, device, workers, flags,
                               [int(v) for v in args.threads.split(",")], busy)
            print_thread_table(rows, f"predict with CPU threads under load: {n} images {h}x{w}, {weights.name}, "
                                     f"{settings.mode}, workers={workers}, {device}", busy, device)
            return
        forward_rate = n / bare_forward(model, paths, settings, device)
        rows = [("model forward only (same windows, same batch)", f"{forward_rate:.2f}", "", "100%")]
        for workers in (int(v) for v in args.workers.split(",")):
            whole, steady = predict_in_process(tmp / "images", tmp / f"out{workers}", weights, device, workers,
                                               overrides)
            rows.append((f"vitseg predict, 1 process, workers={workers}", f"{whole:.2f}", f"{steady:.2f}",
                         f"{steady / forward_rate:.0%}"))
        for k in procs:
            whole, steady = predict_torchrun(k, tmp / "images", tmp / f"run{k}", weights, device,
                                             int(args.workers.split(",")[-1]), flags)
            rows.append((f"torchrun --nproc_per_node {k} vitseg predict", f"{whole:.2f}", f"{steady:.2f}",
                         f"{steady / forward_rate:.0%}"))
        if args.scale:
            from scale_rows import scale_rows  # bench/ is on the path of `python bench/predict.py`

            rows += [(name, whole, steady, f"{float(steady) / forward_rate:.0%}" + (f"; {note}" if note else ""))
                     for name, whole, steady, note in scale_rows(tmp / "images", tmp, weights,
                                                                 int(args.workers.split(",")[-1]), overrides)]
    title = (f"predict throughput: {n} images {h}x{w}, {weights.name}, {settings.mode} "
             f"{'native' if settings.resize is None else list(settings.resize.scale)}, batch {settings.batch_size}"
             f"{', half' if settings.half else ''}{', compiled' if settings.compile else ''}, {device}")
    table = Table(title=title, title_justify="left")
    table.add_column("pipeline")
    table.add_column("images/s (whole call)", justify="right")
    table.add_column("images/s (inference phase)", justify="right")
    table.add_column("vs forward", justify="right")
    for row in rows:
        table.add_row(*row)
    console = Console(highlight=False, width=120)
    console.print(table)
    console.print("whole call: from start to exit, model loading included; inference phase: predict.json's rate "
                  "(decode, infer, encode, write), which is compared with the forward rate", markup=False)
    console.print(f"machine: {machine(device)}", markup=False)


if __name__ == "__main__":
    main()
