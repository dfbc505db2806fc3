"""WebDataset tar shards in (`data-{000..003}.tar`) and out (`--out-format tar`): the same masks as the loose files,
a bad sample reported and skipped, and a run killed with SIGKILL redoing only its unfinished shards."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import encode_image, read_label, write_image
from vitseg_cli.data.tar_shards import expand_braces, split_member

from test_predict import image, make_weights

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SHARDS, PER_SHARD = 4, 2


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Shards data-000..003.tar of two samples each (an image and a json field), the same images as loose files
    under loose/<shard>/, shard 1 also holding a sample whose image is not an image; and the loose files' run."""
    root = tmp_path_factory.mktemp("tars")
    weights = make_weights(root / "nano.safetensors")
    for s in range(SHARDS):
        with tarfile.open(root / f"data-{s:03d}.tar", "w") as tar:
            for i in range(PER_SHARD):
                img = image(36 + 8 * i, 52, seed=10 * s + i)
                write_image(root / "loose" / f"data-{s:03d}" / f"k{i}.png", img)
                _add(tar, f"k{i}.png", encode_image("x.png", img))
                _add(tar, f"k{i}.json", b'{"caption": "x"}')
            if s == 1:
                _add(tar, "broken.jpg", b"not a jpeg at all")
    base = predict(root / "loose", "--out", root / "base", "--weights", weights, "--save", "masks", "--workers", 0,
                   "--quiet")
    assert base.exit_code == 0, base.output
    return root, weights


def base_mask(root: Path, s: int, i: int) -> np.ndarray:
    return read_label(root / "base" / "masks" / f"data-{s:03d}" / f"k{i}.png")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_brace_patterns_and_member_keys():
    assert expand_braces("s3://b/d-{008..011}.tar") == [f"s3://b/d-{n:03d}.tar" for n in range(8, 12)]
    assert expand_braces("{a,b}/x{1..2}.tar") == ["a/x1.tar", "a/x2.tar", "b/x1.tar", "b/x2.tar"]
    assert expand_braces("plain{}.tar") == ["plain{}.tar"]
    # WebDataset's rule: the key is the path up to the base name's first dot
    assert split_member("dir/000017.seg.PNG") == ("dir/000017", "seg.png")
    assert split_member("a.b/c.jpg") == ("a.b/c", "jpg") and split_member("README") is None
    assert split_member("./000017.jpg") == ("000017", "jpg")


def test_tar_in_loose_out_equals_the_loose_files(data):
    root, weights = data
    out = root / "loose_out"
    result = predict(root / "data-{000..003}.tar", "--out", out, "--weights", weights, "--save", "masks",
                     "--workers", 0)
    assert result.exit_code == 1, result.output  # the broken sample
    assert re.search(r"predict \d+/\d+ .* read [\d.]+ k?B/s", result.output), result.output  # the progress line
    rec = json.loads((out / "predict.json").read_text())
    assert rec["processed"] == SHARDS * PER_SHARD
    assert [f["path"] for f in rec["failed"]] == [f"{root / 'data-001.tar'}#broken"]
    for s in range(SHARDS):
        for i in range(PER_SHARD):
            assert np.array_equal(read_label(out / "masks" / f"data-{s:03d}" / f"k{i}.png"), base_mask(root, s, i))
    total = sum((root / f"data-{s:03d}.tar").stat().st_size for s in range(SHARDS))
    assert rec["timings"]["bytes_read"] == total and rec["timings"]["read_bytes_per_s"] > 0


def _run_killed(root: Path, weights: Path, out: Path) -> set[str]:
    """Start a tar-out run in a subprocess and SIGKILL it once its first output shard is in place."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vitseg_cli", "predict", str(root / "data-{000..003}.tar"), "--out", str(out),
           "--out-format", "tar", "--weights", str(weights), "--save", "masks,color", "--workers", "0", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if list((out / "shards").glob("*.tar")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    return {p.name for p in (out / "shards").glob("*.tar")}


def test_tar_out_killed_then_resumed(data):
    root, weights = data
    out = root / "tar_out"
    before = _run_killed(root, weights, out)
    assert 1 <= len(before) < SHARDS and not (out / "predict.json").exists()
    stamps = {name: (out / "shards" / name).stat().st_mtime_ns for name in before}

    result = predict(root / "data-{000..003}.tar", "--out", out, "--out-format", "tar", "--weights", weights,
                     "--save", "masks,color", "--workers", 1, "--quiet")
    assert result.exit_code == (0 if "data-001.tar" in before else 1), result.output  # the broken sample
    rec = json.loads((out / "predict.json").read_text())
    assert rec["skipped"] == len(before) and rec["processed"] == PER_SHARD * (SHARDS - len(before))
    assert {n: (out / "shards" / n).stat().st_mtime_ns for n in before} == stamps  # done shards were not redone
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"data-{s:03d}.tar" for s in range(SHARDS)]
    classes = rec["spec"]["data"]["classes"]
    for s in range(SHARDS):
        files = members(out / "shards" / f"data-{s:03d}.tar")
        assert sorted(files) == sorted(f"k{i}.{f}" for i in range(PER_SHARD) for f in ("mask.png", "color.png",
                                                                                        "json"))
        for i in range(PER_SHARD):
            mask = cv2.imdecode(np.frombuffer(files[f"k{i}.mask.png"], np.uint8), cv2.IMREAD_UNCHANGED)
            expected = base_mask(root, s, i)
            assert np.array_equal(mask, expected)
            info = json.loads(files[f"k{i}.json"])
            ids, counts = np.unique(expected, return_counts=True)
            assert info["key"] == f"k{i}" and (info["height"], info["width"]) == expected.shape
            assert info["classes"] == {classes[c]: int(n) for c, n in zip(ids, counts)}
