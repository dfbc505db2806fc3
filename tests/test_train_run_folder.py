"""The run folder under faults: one trainer at a time (a lock, a stale one taken over), a folder that is not a run
left untouched, and a damaged state.pt or log.csv refused with one line before run.json changes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.train_state import LOCK_NAME, load_state, read_log, save_state

from test_train import write_spec

runner = CliRunner()


def vitseg(*args):
    return runner.invoke(app, ["train", "--quiet", "--device", "cpu", "--logger", "none", *map(str, args)])


def one_line_error(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    synth = make_synthetic(root / "data", 4, 0, size=(32, 32))
    spec = write_spec(root / "spec.yaml", scale=[32, 32], crop_size=[32, 32], warmup_iters=1)
    return synth, spec


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory) -> Path:
    """A run stopped at iteration 2 of 3, to resume."""
    synth, spec = setup
    out = tmp_path_factory.mktemp("done") / "run"
    res = vitseg("--spec", spec, "--data", synth, "--out", out, "--iters", 3, "--stop-at", 2, "--log-every", 1)
    assert res.exit_code == 0, res.output
    return out


def _lock(out: Path, pid: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "now"}))


def test_a_second_trainer_is_refused_and_a_stale_lock_taken_over(tmp_path, setup):
    synth, spec = setup
    out = tmp_path / "run"
    _lock(out, os.getpid())  # a live trainer holds the folder (this very process stands in for it)
    msg = one_line_error(vitseg("--spec", spec, "--data", synth, "--out", out, "--iters", 1))
    assert "another vitseg train" in msg and f"pid {os.getpid()}" in msg
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    msg = one_line_error(vitseg("--out", out, "--resume"))
    assert "another vitseg train" in msg

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is no longer running: the lock it "left" is stale
    _lock(out, gone.pid)
    res = vitseg("--spec", spec, "--data", synth, "--out", out, "--iters", 1)
    assert res.exit_code == 0, res.output
    assert "stale lock" in res.output
    assert (out / "state.pt").is_file() and not (out / LOCK_NAME).exists()  # released at the end


def test_the_lock_is_held_while_training_and_released_after_a_failed_start(tmp_path, setup):
    synth, spec = setup
    from vitseg_cli.engine.hooks import HookBase
    from vitseg_cli.engine.train import TrainOptions, train

    seen = []

    class Look(HookBase):
        def after_step(self):
            seen.append(json.loads((self.trainer.out / LOCK_NAME).read_text())["pid"])

    out = tmp_path / "run"
    train(TrainOptions(out=out, spec=str(spec), data=synth, iters=1, device="cpu", quiet=True, loggers="none",
                       hooks=[Look()]), say=lambda m: None)
    assert seen == [os.getpid()] and not (out / LOCK_NAME).exists()
    # a start that fails after the lock was taken (both weights options) leaves no lock and no folder behind
    res = vitseg("--spec", spec, "--data", synth, "--out", tmp_path / "new", "--iters", 1,
                 "--pretrained", tmp_path / "x.pth", "--init-from", tmp_path / "y.safetensors")
    assert "not both" in one_line_error(res)
    assert not (tmp_path / "new").exists()


def test_a_folder_that_is_not_a_run_keeps_its_part_files(tmp_path, setup):
    synth, spec = setup
    other = tmp_path / "NOT_A_RUN"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    parts = [other / ".draft.txt.abc.part", other / ".state.pt.x1.part"]
    for p in parts:
        p.write_bytes(b"someone's half-written file")
    msg = one_line_error(vitseg("--spec", spec, "--data", synth, "--out", other, "--iters", 1))
    assert "not empty" in msg
    assert all(p.read_bytes() == b"someone's half-written file" for p in parts)
    assert sorted(p.name for p in other.iterdir()) == sorted([".draft.txt.abc.part", ".state.pt.x1.part",
                                                              "notes.txt"])


def _damage_state(run: Path, change) -> None:
    state = load_state(run / "state.pt")
    change(state)
    save_state(run / "state.pt", {k: v for k, v in state.items() if k not in ("format", "version")})


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("optimizer"), "no optimizer"),
    (lambda s: s.pop("iteration"), "no iteration"),
    (lambda s: s.update(iteration=1.5), "iteration 1.5 is not a whole number"),
    (lambda s: s.update(iteration="2"), "iteration '2' is not a whole number"),
    (lambda s: s["model"].update({"decode_head.conv_seg.weight": torch.zeros(2, 3, 1, 1)}),
     "its model does not fit"),
    (lambda s: s["scheduler"].pop("max_iters"), "scheduler.max_iters"),
    (lambda s: next(iter(s["optimizer"]["state"].values())).update(exp_avg=torch.zeros(7)),
     "optimizer state does not fit"),
])
def test_a_damaged_state_is_one_line_and_run_json_is_unchanged(tmp_path, finished, change, message):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _damage_state(run, change)
    before = {name: (run / name).read_bytes() for name in ("run.json", "log.csv", "spec.yaml")}
    msg = one_line_error(vitseg("--out", run, "--resume"))
    assert "state.pt" in msg and message in msg
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not (run / LOCK_NAME).exists()


@pytest.mark.parametrize("text", [b"iter,lr,loss\n1,0.1,2.0\n\xff\xfe broken\n", b"iter,lr\n1,0.1\nx\x00y,2\n",
                                  b"lr,loss\n0.1,2.0\n", b"iter,lr,loss\n1,0.1,2.0\n,0.2,1.0\n"])
def test_a_damaged_log_is_one_line_and_run_json_is_unchanged(tmp_path, finished, text):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "log.csv").write_bytes(text)
    before = (run / "run.json").read_bytes()
    msg = one_line_error(vitseg("--out", run, "--resume"))
    assert "log.csv: damaged log" in msg
    assert (run / "run.json").read_bytes() == before and (run / "log.csv").read_bytes() == text


def test_an_intact_run_still_resumes(tmp_path, finished):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    res = vitseg("--out", run, "--resume")
    assert res.exit_code == 0, res.output
    assert [int(r["iter"]) for r in read_log(run / "log.csv")] == [1, 2, 3]
