"""`vitseg train` as real processes: torchrun with 2 gloo ranks on CPU, and Ctrl-C saving a resumable state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_train_mask2former import write_m2f_spec
from vitseg_cli.loading import load_model
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.train_state import load_state, read_log

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(_var, None)


def run_group(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout the whole group (torchrun's workers too) is killed."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    data = make_synthetic(root / "data", 4, 0, size=(64, 64))
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({"preset": "nano", "train": {
        "scale": [64, 64], "crop_size": [64, 64], "warmup_iters": 2, "batch_size": 4, "workers": 0}}))
    return data, spec


@pytest.fixture(scope="module")
def m2f_spec(tmp_path_factory) -> Path:
    """nano_mask2former at 64 px: its loss all-reduces the matched-mask count across ranks inside the forward."""
    return write_m2f_spec(tmp_path_factory.mktemp("m2f") / "spec.yaml", batch_size=4)


@pytest.mark.parametrize("head", ["upernet", "mask2former"])
def test_torchrun_two_gloo_processes(tmp_path, setup, m2f_spec, head):
    data, spec = setup
    if head == "mask2former":
        spec = m2f_spec
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vitseg_cli", "train", "--spec", str(spec), "--data", str(data), "--out", str(out),
           "--iters", "2", "--log-every", "1", "--device", "cpu", "--quiet"]
    proc = run_group(cmd, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["world_size"] == 2 and info["micro_batch"] == 2
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "last.safetensors", "log.csv", "plots", "run.json", "spec.yaml", "state.pt"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["loss.png", "lr.png"]  # rank 0 only, no validation
    assert not (out / ".vitseg-train.lock").exists()
    assert [r["iter"] for r in read_log(out / "log.csv")] == ["1", "2"]
    state = load_state(out / "state.pt")
    assert state["iteration"] == 2 and state["world_size"] == 2 and len(state["rng"]) == 2
    model = load_model(out / "last.safetensors")
    assert model.num_classes == 6 and model.spec.model.decode_head.type == head
    assert proc.stdout.count("done: iteration 2") == 1  # only rank 0 reports


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_state_and_exits_130(tmp_path, setup, signum):
    data, spec = setup
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vitseg_cli", "train", "--spec", str(spec), "--data", str(data), "--out", str(out),
           "--iters", "500", "--log-every", "1", "--save-every", "1000", "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if (out / "log.csv").exists() and len(read_log(out / "log.csv")) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.killpg(proc.pid, signum)  # as Ctrl-C in a terminal or `timeout`: the data workers get it too
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err
    stopped = load_state(out / "state.pt")["iteration"]
    assert stopped >= 2 and int(read_log(out / "log.csv")[-1]["iter"]) == stopped
    resumed = run_group([sys.executable, "-m", "vitseg_cli", "train", "--out", str(out), "--resume",
                         "--stop-at", str(stopped + 1), "--quiet"], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_state(out / "state.pt")["iteration"] == stopped + 1
