"""CPU threads: the CPUs a process may use (affinity and cgroup quota, read from fake files), the rule that divides them
among torchrun's local ranks and loader workers, the precedence of --threads, VITSEG_THREADS and OMP_NUM_THREADS,
the one-time oversubscription warning, and where the rule is applied (the commands and `load_model`)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image
from vitseg_cli.engine import threads as th
from vitseg_cli.errors import VitsegError

EIGHT = set(range(8))


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Each test starts with no warning given yet, and leaves torch's and OpenCV's thread counts as it found them."""
    monkeypatch.setattr(th, "_warned", False)
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


def _cgroup(tmp_path, lines: str, files: dict[str, str]):
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(lines)
    return root, proc


def test_cgroup_v2_quota_caps_the_affinity_rounded_down(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/job/step\n", {"job/step/cpu.max": "250000 100000\n", "cpu.max": "max 100000\n"})
    assert th.allowed_cpus(EIGHT, root, proc) == 2  # 2.5 CPUs of quota -> 2 threads
    assert th.allowed_cpus({0}, root, proc) == 1  # the affinity is smaller
    # a parent's smaller quota bounds its children; under one CPU of quota, still one thread
    root, proc = _cgroup(tmp_path / "b", "0::/job/step\n", {"job/step/cpu.max": "max 100000\n",
                                                             "job/cpu.max": "50000 100000\n"})
    assert th.allowed_cpus(EIGHT, root, proc) == 1


def test_cgroup_v1_cfs_quota_and_no_quota(tmp_path):
    root, proc = _cgroup(tmp_path, "4:memory:/x\n2:cpu,cpuacct:/slurm/job1\n",
                         {"cpu,cpuacct/slurm/job1/cpu.cfs_quota_us": "300000\n",
                          "cpu,cpuacct/slurm/job1/cpu.cfs_period_us": "100000\n",
                          "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert th.allowed_cpus(EIGHT, root, proc) == 3
    root, proc = _cgroup(tmp_path / "none", "0::/\n", {"cpu.max": "max 100000\n"})
    assert th.allowed_cpus(EIGHT, root, proc) == 8
    assert th.allowed_cpus(EIGHT, tmp_path / "missing", tmp_path / "missing_proc") == 8


def test_the_default_divides_the_cpus_among_local_ranks_and_workers():
    assert th.plan_threads(env={}, cpus=8).threads == 8
    assert th.plan_threads(env={}, cpus=8, workers=2).threads == 6  # each loader worker takes a core
    assert th.plan_threads(env={"LOCAL_WORLD_SIZE": "4"}, cpus=8).threads == 2
    assert th.plan_threads(env={"LOCAL_WORLD_SIZE": "4"}, cpus=8, workers=3).threads == 1  # never below 1
    plan = th.plan_threads(env={"LOCAL_WORLD_SIZE": "2"}, cpus=16, workers=2)
    assert (plan.threads, plan.source, plan.ranks, plan.workers) == (6, "default", 2, 2)


def test_precedence_threads_then_vitseg_threads_then_omp_num_threads():
    env = {"VITSEG_THREADS": "3", "OMP_NUM_THREADS": "5"}
    assert (th.plan_threads(2, env=env, cpus=8).threads, th.plan_threads(2, env=env, cpus=8).source) == (2, "--threads")
    assert th.plan_threads(env=env, cpus=8).threads == 3
    assert th.plan_threads(env={"OMP_NUM_THREADS": "5"}, cpus=8).source == "OMP_NUM_THREADS"
    assert th.plan_threads(env={"OMP_NUM_THREADS": "4,2"}, cpus=8).threads == 4  # OpenMP's nested list syntax
    # the 1 torchrun sets for several local ranks is its default, not the user's: the rule applies
    torchrun = {"OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": "2"}
    assert (th.plan_threads(env=torchrun, cpus=8).threads, th.plan_threads(env=torchrun, cpus=8).source) == \
        (4, "default")
    assert th.plan_threads(env={"OMP_NUM_THREADS": "1"}, cpus=8).threads == 1  # one process: the user's choice
    for bad in ("0", "two", "-1"):
        with pytest.raises(VitsegError, match="VITSEG_THREADS"):
            th.plan_threads(env={"VITSEG_THREADS": bad}, cpus=8)
    with pytest.raises(VitsegError, match="--threads 0"):
        th.plan_threads(0, env={}, cpus=8)


def test_apply_sets_torch_and_opencv_and_warns_once_on_oversubscription():
    said = []
    plan = th.apply_threads(plan=th.ThreadPlan(threads=1, source="default", cpus=2, ranks=1, workers=0),
                            warn=said.append)
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and plan.threads == 1
    assert said == []  # fits: no warning
    over = th.ThreadPlan(threads=2, source="OMP_NUM_THREADS", cpus=1, ranks=1, workers=0)
    th.apply_threads(plan=over, warn=said.append)
    assert len(said) == 1 and "2 CPU threads (OMP_NUM_THREADS) exceed the 1 CPUs" in said[0], said
    assert "--threads" in said[0]
    th.apply_threads(plan=over, warn=said.append)
    assert len(said) == 1  # once per process
    assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2


def test_ranks_times_threads_over_the_cpus_is_oversubscription():
    fits = th.ThreadPlan(threads=2, source="--threads", cpus=4, ranks=2, workers=0)
    over = th.ThreadPlan(threads=3, source="--threads", cpus=4, ranks=2, workers=0)
    assert fits.warning() is None
    assert "2 local ranks x 3 CPU threads (--threads) exceed the 4 CPUs" in over.warning()
    assert "--threads (or VITSEG_THREADS) 2 or fewer" in over.warning()
    with pytest.warns(RuntimeWarning, match="exceed the 4 CPUs"):  # the Python API's channel
        th.apply_threads(plan=over)


def test_commands_take_threads_and_warn(tmp_path, monkeypatch):
    runner = CliRunner()
    for command in ("predict", "eval", "train"):
        res = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert "--threads" in res.output, (command, res.output)
    image = tmp_path / "a.png"
    write_image(image, np.full((32, 32, 3), 90, np.uint8))
    monkeypatch.setattr(th, "allowed_cpus", lambda *a, **k: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two local ranks x 1 thread on 1 CPU (WORLD_SIZE stays unset)
    fast = ["--device", "cpu", "--workers", "0", "--save", "masks", "--set", "test.resize=null", "--mode", "whole"]
    res = runner.invoke(app, ["predict", str(image), "--out", str(tmp_path / "out"), "--threads", "1", *fast])
    assert res.exit_code == 0, res.output
    assert "warning: 2 local ranks x 1 CPU threads (--threads) exceed the 1 CPUs" in res.output
    assert torch.get_num_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("VITSEG_THREADS", "2")
    res = runner.invoke(app, ["predict", str(image), "--out", str(tmp_path / "out2"), "--quiet", *fast])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 2  # VITSEG_THREADS, with its warning said once per process already


def test_load_model_applies_the_rule_unless_torch_threads_were_set(monkeypatch):
    from vitseg_cli import load_model

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("VITSEG_THREADS", raising=False)
    monkeypatch.setattr(th, "allowed_cpus", lambda *a, **k: 1)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)  # torch's own default on this pretend machine: 3 threads
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    torch.set_num_threads(3)
    load_model()
    assert torch.get_num_threads() == 1  # the rule: 1 allowed CPU
    torch.set_num_threads(2)  # the user's own choice stays
    load_model()
    assert torch.get_num_threads() == 2
    load_model(threads=1)  # unless asked
    assert torch.get_num_threads() == 1


def test_importing_the_package_makes_openmp_threads_sleep_unless_set():
    import subprocess
    import sys

    code = "import os, vitseg_cli, sys; print(os.environ.get('OMP_WAIT_POLICY')); print('torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["PASSIVE", "False"]  # set before torch is imported (it reads it once)
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "active"}, capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[0] == "active"  # the user's own setting stays
