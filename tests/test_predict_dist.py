"""Distributed runs as real processes (torchrun, 2 gloo ranks on CPU): predict shares its inputs and gives the
single-process masks; a killed run is finished by one process; a failure on one rank of predict, eval or train ends
the whole job promptly with a non-zero exit and one error line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from vitseg_cli.data.io import read_label, write_image
from vitseg_cli.data.synth import make_synthetic

from test_predict import image, invoke, make_weights, record

HOOKS = Path(__file__).with_name("rank_hooks.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "VITSEG_TRACEBACK"):
    ENV.pop(_var, None)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
N_GOOD = 7


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Seven 64x80 images (some in a subfolder) and one bad file."""
    src = tmp_path_factory.mktemp("src")
    for i in range(N_GOOD):
        write_image(src / ("sub" if i % 3 == 0 else "") / f"img{i}.png", image(64, 80, seed=i))
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    return src


def leftover_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker` (torchrun's workers live in their own sessions)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def run_job(cmd: list, marker: str, timeout: float, env: dict | None = None) -> tuple[subprocess.CompletedProcess,
                                                                                       float]:
    """Run a command to its end; a job still running after `timeout` fails the test, and whatever is left of it
    (found by `marker` in its command line) is killed."""
    cmd = [str(c) for c in cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in leftover_processes(marker):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout}s: {' '.join(cmd)}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.perf_counter() - start


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_torchrun_predict_shares_the_inputs_and_gives_the_single_process_masks(tmp_path, weights, folder):
    one = tmp_path / "one"
    single = invoke(folder, "--weights", weights, "--out", one, "--workers", 0, "--save", "masks,overlay")
    assert single.exit_code == 1, single.output
    two = tmp_path / "two"
    proc, _ = run_job([*TORCHRUN, "-m", "vitseg_cli", "predict", folder, "--weights", weights, "--out", two,
                       "--workers", 0, "--device", "cpu", "--save", "masks,overlay"], str(two), timeout=300)
    assert proc.returncode != 0  # the bad file
    masks = sorted(p.relative_to(one / "masks") for p in (one / "masks").rglob("*.png"))
    assert len(masks) == N_GOOD
    assert sorted(p.relative_to(two / "masks") for p in (two / "masks").rglob("*.png")) == masks
    for rel in masks:
        assert np.array_equal(read_label(one / "masks" / rel), read_label(two / "masks" / rel)), rel
    rec = record(two)
    assert (rec["inputs"], rec["processed"], rec["skipped"]) == (N_GOOD + 1, N_GOOD, 0)
    assert [Path(f["path"]).name for f in rec["failed"]] == ["broken.jpg"]
    assert proc.stderr.count("broken.jpg: not a readable image") == 1
    assert rec["world_size"] == 2 and [r["rank"] for r in rec["ranks"]] == [0, 1]
    assert all(r["processed"] >= 3 for r in rec["ranks"])  # the work was shared
    assert sum(r["processed"] for r in rec["ranks"]) == N_GOOD and sum(r["failed"] for r in rec["ranks"]) == 1
    assert proc.stdout.count("processed 7, skipped 0") == 1  # rank 0 alone reports, for all ranks


def test_a_killed_torchrun_predict_is_finished_by_one_process(tmp_path, weights):
    src = tmp_path / "src"
    n = 16
    for i in range(n):
        write_image(src / f"img{i:02d}.png", image(64, 80, seed=i))
    out = tmp_path / "out"
    cmd = [str(c) for c in [*TORCHRUN, HOOKS, "predict", src, "--weights", weights, "--out", out, "--workers", 0,
                            "--device", "cpu", "--save", "masks,color"]]
    proc = subprocess.Popen(cmd, env={**ENV, "HOOK_DELAY": "0.5"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "masks").is_dir() and len(list((out / "masks").glob("*.png"))) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:  # a hard kill of the whole job, workers included
        for pid in [proc.pid, *leftover_processes(str(out))]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate()
    done_before = len(list((out / "masks").glob("*.png")))
    assert 4 <= done_before < n

    rerun = invoke(src, "--weights", weights, "--out", out, "--workers", 0, "--device", "cpu", "--save",
                   "masks,color")
    assert rerun.exit_code == 0, rerun.output
    rec = record(out)
    assert rec["world_size"] == 1 and rec["processed"] + rec["skipped"] == n
    assert rec["skipped"] >= done_before  # a mask is written last: an image with a mask is whole
    reference = tmp_path / "reference"
    assert invoke(src, "--weights", weights, "--out", reference, "--workers", 0, "--save", "masks").exit_code == 0
    for i in range(n):
        name = f"img{i:02d}.png"
        assert np.array_equal(read_label(out / "masks" / name), read_label(reference / "masks" / name)), name
        assert (out / "color" / name).exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


def _inputs_for(command: str, tmp_path: Path, weights: Path, folder: Path) -> list:
    out = tmp_path / "out"
    if command == "predict":
        return ["predict", folder, "--weights", weights, "--out", out, "--workers", 0, "--device", "cpu"]
    data = make_synthetic(tmp_path / "data", 4, 0, size=(64, 64))
    if command == "eval":
        return ["eval", data, "--format", "folder", "--weights", weights, "--out", out, "--workers", 0, "--device",
                "cpu", "-q"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"preset": "nano", "train": {
        "scale": [64, 64], "crop_size": [64, 64], "warmup_iters": 2, "batch_size": 4, "workers": 2}}))
    return ["train", "--spec", spec, "--data", data, "--out", out, "--iters", 6, "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("command", ["predict", "eval", "train"])
def test_a_failure_on_one_rank_ends_the_whole_job(tmp_path, weights, folder, command):
    args = _inputs_for(command, tmp_path, weights, folder)
    marker = str(tmp_path / "out")
    # rank 1 fails at its second forward: rank 0 is then waiting for it (train: in DDP's gradient all-reduce)
    proc, seconds = run_job([*TORCHRUN, HOOKS, *args], marker, timeout=240,
                            env={"HOOK_FAIL_RANK": "1", "HOOK_FAIL_AFTER": "1"})
    assert proc.returncode != 0
    errors = error_lines(proc.stderr)
    assert errors == ["error: rank 1: RuntimeError: injected failure on rank 1"], proc.stderr[-3000:]
    assert seconds < 180  # before the fix: train waited forever
    time.sleep(1)
    assert leftover_processes(marker) == []


def test_a_failure_in_one_process_training_with_loader_workers_ends_it(tmp_path, weights, folder):
    """The same failure without torchrun: the persistent loader workers (which ignore SIGTERM) must not keep the
    process waiting at exit."""
    args = _inputs_for("train", tmp_path, weights, folder)
    proc, seconds = run_job([sys.executable, HOOKS, *args], str(tmp_path / "out"), timeout=240,
                            env={"HOOK_FAIL_RANK": "0", "HOOK_FAIL_AFTER": "1"})
    assert proc.returncode != 0 and "RuntimeError: injected failure on rank 0" in proc.stderr
    assert seconds < 180
    time.sleep(1)
    assert leftover_processes(str(tmp_path / "out")) == []


def test_one_image_per_rank_is_refused_before_training(tmp_path):
    data = make_synthetic(tmp_path / "data", 2, 0, size=(64, 64))
    out = tmp_path / "run"
    proc, _ = run_job([*TORCHRUN, "-m", "vitseg_cli", "train", "--spec", "nano", "--data", data, "--format",
                       "folder", "--out", out, "--iters", 6, "--batch-size", 2, "--crop-size", 64, "--device", "cpu",
                       "--quiet"], str(out), timeout=240)
    assert proc.returncode != 0
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and "gives each process 1 image per forward pass" in errors[0], proc.stderr[-3000:]
    assert not (out / "last.safetensors").exists()
