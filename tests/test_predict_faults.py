"""predict under faults, as real processes: a second predict into a running one's --out (with or without
--overwrite) is one error naming the holder, a stale lock is taken over, SIGTERM stops a run cleanly. Afterwards
every file on disk matches predict.json, .vitseg-run.json and the manifest."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitseg_cli.data.io import write_image

from test_predict import image, invoke, make_weights, record

HOOKS = Path(__file__).with_name("rank_hooks.py")  # HOOK_DELAY: every forward sleeps, a run a test can catch
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
for _var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "VITSEG_TRACEBACK"):
    ENV.pop(_var, None)
N = 8
KINDS = {"masks": ".png", "color": ".png"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


@pytest.fixture
def src(tmp_path) -> Path:
    for i in range(N):
        write_image(tmp_path / "src" / f"{i:02d}.png", image(20, 24, seed=i))
    return tmp_path / "src"


def slow_run(src: Path, out: Path, weights: Path, delay: float = 0.3) -> subprocess.Popen:
    cmd = [sys.executable, str(HOOKS), "predict", str(src), "--weights", str(weights), "--out", str(out),
           "--workers", "0", "--device", "cpu", "--save", "masks,color"]
    return subprocess.Popen(cmd, env={**ENV, "HOOK_DELAY": str(delay)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_masks(proc: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "masks").is_dir() and len(list((out / "masks").glob("*.png"))) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} masks: {proc.communicate()[1][-2000:]}")


def assert_consistent(out: Path) -> dict:
    """Every output file has the newest manifest line of its name, listing it; every listed file exists;
    predict.json and .vitseg-run.json describe the same run; predict.json counts what the manifest says."""
    fingerprint = json.loads((out / ".vitseg-run.json").read_text())
    rec = record(out)
    assert Path(rec["weights"]).name == fingerprint["weights"] and rec["spec"] == fingerprint["spec"]
    assert all(rec["settings"][k] == v for k, v in fingerprint["settings"].items())
    lines = [json.loads(t) for p in out.glob("manifest*.jsonl") for t in p.read_text().splitlines()]
    newest = {line["name"]: line for line in sorted(lines, key=lambda line: line["time"])}
    on_disk = {p.relative_to(out).as_posix() for kind in KINDS for p in (out / kind).rglob("*") if p.is_file()}
    assert not [p for p in on_disk if p.rsplit("/", 1)[-1].startswith(".")], on_disk  # no temporaries
    listed = {path for line in newest.values() if line["status"] == "ok" for path in line["outputs"].values()}
    assert on_disk == listed
    ok = [line for line in lines if line["status"] == "ok"]
    assert rec["processed"] == len(ok) and rec["processed"] + len(rec["failed"]) + rec["skipped"] <= rec["inputs"]
    assert not list(out.glob(".vitseg-predict*.lock"))  # released
    return rec


def test_a_second_predict_into_a_running_out_is_refused_naming_the_holder(tmp_path, src, weights):
    out = tmp_path / "out"
    first = slow_run(src, out, weights, delay=1.5)  # still running while the second one starts, twice
    try:
        wait_for_masks(first, out, 2)
        for extra in ([], ["--overwrite"]):  # a concurrent --overwrite must not remove the running run's files
            before = sorted(p.name for p in (out / "masks").iterdir())
            second = invoke(src, "--weights", weights, "--out", out, "--workers", 0, "--save", "masks", *extra)
            assert second.exit_code == 2
            line = " ".join(second.output.split())
            assert f"another vitseg predict (pid {first.pid} on {socket.gethostname()})" in line
            assert set(before) <= {p.name for p in (out / "masks").iterdir()}
            assert first.poll() is None  # the refusals came while it ran
        _, err = first.communicate(timeout=180)
        assert first.returncode == 0, err[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    rec = assert_consistent(out)
    assert (rec["status"], rec["processed"]) == ("done", N)


def test_sigterm_stops_cleanly_and_the_records_match_the_files(tmp_path, src, weights):
    out = tmp_path / "out"
    proc = slow_run(src, out, weights)
    try:
        wait_for_masks(proc, out, 3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    rec = assert_consistent(out)
    assert rec["status"] == "interrupted" and 3 <= rec["processed"] < N
    resumed = invoke(src, "--weights", weights, "--out", out, "--workers", 0, "--save", "masks,color")
    assert resumed.exit_code == 0, resumed.output
    rec = assert_consistent_resumed(out, rec["processed"])
    assert rec["status"] == "done"


def assert_consistent_resumed(out: Path, done_before: int) -> dict:
    rec = record(out)
    assert (rec["processed"], rec["skipped"]) == (N - done_before, done_before)
    lines = [json.loads(t) for p in out.glob("manifest*.jsonl") for t in p.read_text().splitlines()]
    assert len([line for line in lines if line["status"] == "ok"]) == N
    assert len(list((out / "masks").glob("*.png"))) == N and not list(out.glob(".vitseg-predict*.lock"))
    return rec


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, src, weights):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / ".vitseg-predict.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    result = invoke(src, "--weights", weights, "--out", out, "--workers", 0, "--save", "masks,color")
    assert result.exit_code == 0, result.output
    assert "stale lock" in result.output
    assert_consistent(out)
