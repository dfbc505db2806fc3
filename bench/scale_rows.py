"""Rows of `bench/predict.py --scale`: on the same synthetic images, WebDataset tar-shard input against the loose
files, and `--engine ray` with 2 CPU actors against `torchrun --nproc_per_node 2` (both on the CPU)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from vitseg_cli.engine.predict import PredictOptions, run_predict

PER_SHARD = 16


def pack_shards(images: list[Path], folder: Path) -> str:
    """The images as WebDataset shards of PER_SHARD samples; returns their brace pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    count = (len(images) + PER_SHARD - 1) // PER_SHARD
    for s in range(count):
        with tarfile.open(folder / f"data-{s:03d}.tar", "w") as tar:
            for path in images[s * PER_SHARD:(s + 1) * PER_SHARD]:
                payload = path.read_bytes()
                info = tarfile.TarInfo(f"{path.stem}{path.suffix}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return str(folder / f"data-{{000..{count - 1:03d}}}.tar")


def _timed(opts: PredictOptions) -> tuple[float, float, dict]:
    start = time.perf_counter()
    summary = run_predict(opts)
    whole = summary.processed / (time.perf_counter() - start)
    timings = json.loads((Path(opts.out) / "predict.json").read_text())["timings"]
    return whole, timings["images_per_s"], timings


def scale_rows(images: Path, tmp: Path, weights: Path, workers: int, overrides: dict) -> list[tuple[str, ...]]:
    """(pipeline, images/s whole call, images/s inference phase, note) rows."""
    paths = sorted(images.glob("*.jpg"))
    common = dict(weights=weights, device="cpu", workers=workers, quiet=True, overrides=overrides, save=("masks",))
    rows = []
    whole, steady, _ = _timed(PredictOptions(sources=[str(images)], out=tmp / "s_loose", **common))
    rows.append((f"loose files, 1 process, workers={workers}", f"{whole:.2f}", f"{steady:.2f}", ""))
    pattern = pack_shards(paths, tmp / "shards")
    whole, steady, t = _timed(PredictOptions(sources=[pattern], out=tmp / "s_tar", **common))
    rows.append((f"tar shards ({PER_SHARD}/shard), 1 process", f"{whole:.2f}", f"{steady:.2f}",
                 f"read {t['read_bytes_per_s'] / 1e6:.2f} MB/s"))
    whole, steady = _torchrun(images, tmp / "s_torchrun", weights, workers)
    rows.append(("torchrun --nproc_per_node 2, CPU", f"{whole:.2f}", f"{steady:.2f}", ""))
    whole, steady, _ = _timed(PredictOptions(sources=[str(images)], out=tmp / "s_ray", engine="ray",
                                             ray={"concurrency": 2}, **common))
    rows.append(("--engine ray, 2 CPU actors (local cluster)", f"{whole:.2f}", f"{steady:.2f}",
                 "whole call includes starting Ray"))
    return rows


def _torchrun(images: Path, out: Path, weights: Path, workers: int) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "vitseg_cli", "predict", str(images), "--out", str(out), "--weights", str(weights), "--device", "cpu",
           "--workers", str(workers), "--save", "masks", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    record = json.loads((out / "predict.json").read_text())
    return record["processed"] / (time.perf_counter() - start), record["timings"]["images_per_s"]
