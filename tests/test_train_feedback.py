"""What a training run tells its user: warmup clipped to the run, spec.yaml and run.json agreeing, a --resume with
nothing saved yet, a log interval that fits short runs, and RUN/plots (curves, confusion matrix, sample panels);
and validation scoring exactly as `vitseg eval` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import read_image
from vitseg_cli.data.synth import make_synthetic
from vitseg_cli.engine.evaluate import ModelEvalOptions, evaluate_model
from vitseg_cli.engine.train_state import load_state, read_log

from test_train import write_spec

runner = CliRunner()


def vitseg(*args):
    return runner.invoke(app, ["train", "--quiet", "--device", "cpu", "--logger", "none", *map(str, args)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("feedback")
    synth = make_synthetic(root / "data", 4, 0, size=(32, 32))
    spec = write_spec(root / "spec.yaml", scale=[32, 32], crop_size=[32, 32], warmup_iters=50)
    return synth, spec


def test_short_run_warmup_amp_log_interval_and_plots(tmp_path, setup):
    synth, spec = setup
    out = tmp_path / "run"
    res = vitseg("--spec", spec, "--data", synth, "--out", out, "--iters", 4, "--val-data", synth,
                 "--eval-every", 2, "--amp")
    assert res.exit_code == 0, res.output
    # warmup_iters 50 > iters 4: clipped, said once, and the run's spec and schedule say so
    notes = [ln for ln in res.output.splitlines() if ln.startswith("note:") and "warmup" in ln]
    assert len(notes) == 1 and "warmup_iters 50" in notes[0] and "iters 4" in notes[0]
    saved = yaml.safe_load((out / "spec.yaml").read_text())
    assert saved["train"]["warmup_iters"] == 4
    assert load_state(out / "state.pt")["scheduler"]["warmup_iters"] == 4
    # amp: spec.yaml and run.json agree; that it could not be used on CPU is recorded and said
    info = json.loads((out / "run.json").read_text())
    assert info["amp"] == saved["train"]["amp"] is True and info["amp_active"] is False
    assert "CUDA" in res.output
    # no --log-every: a short run logs every iteration (min(50, max(1, iters // 20)))
    assert info["log_every"] == 1
    rows = read_log(out / "log.csv")
    assert [int(r["iter"]) for r in rows] == [1, 2, 3, 4]
    assert all(r["loss"] for r in rows) and [bool(r["mIoU"]) for r in rows] == [False, True, False, True]
    # plots: curves, and at each validation a confusion matrix and sample panels
    plots = out / "plots"
    for name in ("loss.png", "lr.png", "mIoU.png", "confusion_iter2.png", "confusion_iter4.png"):
        image = read_image(plots / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0, name
    for name in ("val_iter2_sample0.png", "val_iter4_sample3.png"):  # small images make small panels
        image = read_image(plots / name)
        assert image.ndim == 3 and image.shape[1] > image.shape[0] and image.std() > 0, name
    assert not (plots / "val_iter4_sample4.png").exists()  # a few panels, not every image
    # validation scores as `vitseg eval` does: the same mIoU for the weights validated at iteration 4
    best_iter = load_state(out / "state.pt")["best_iter"]
    result = evaluate_model(ModelEvalOptions(dataset=synth, weights=out / "best.safetensors", device="cpu",
                                             quiet=True))
    logged = next(r for r in rows if int(r["iter"]) == best_iter)
    assert result.summary["mIoU"] == pytest.approx(float(logged["mIoU"]), rel=1e-5)
    assert result.summary["aAcc"] == pytest.approx(float(logged["aAcc"]), rel=1e-5)


@pytest.mark.parametrize("iters, every", [(40, 2), (400, 20), (5000, 50)])
def test_the_log_interval_scales_with_iters(tmp_path, setup, iters, every):
    synth, spec = setup
    out = tmp_path / "run"
    res = vitseg("--spec", spec, "--data", synth, "--out", out, "--iters", iters, "--stop-at", 1)
    assert res.exit_code == 0, res.output
    assert json.loads((out / "run.json").read_text())["log_every"] == every


def test_resume_before_the_first_save_says_what_is_missing(tmp_path, setup):
    synth, spec = setup
    msg = vitseg("--out", tmp_path / "nowhere", "--resume")
    assert msg.exit_code == 2 and "nothing to resume" in msg.output and "does not exist" in msg.output
    assert "--data is required" not in msg.output
    run = tmp_path / "run"  # a run that failed before its first save left only these
    run.mkdir()
    (run / "spec.yaml").write_text(spec.read_text())
    (run / "run.json").write_text(json.dumps({"data": str(synth)}))
    res = vitseg("--out", run, "--resume")
    assert res.exit_code == 2 and "no state.pt" in res.output and "--data is required" not in res.output
    assert "without --resume" in res.output
