"""The output-folder fingerprint (OUT/.vitseg-run.json): a rerun made differently is refused with one line saying
what differs, --overwrite replaces the old outputs, the same settings resume; the same for eval --save-predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vitseg_cli.data.io import read_label, write_image
from vitseg_cli.data.synth import make_synthetic

from test_predict import image, invoke, make_weights, record, runner
from vitseg_cli.cli import app


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("weights")
    # class 1 everywhere vs class 4 everywhere: masks that tell the two models apart
    return (make_weights(folder / "a.safetensors", boost_class=1),
            make_weights(folder / "b.safetensors", boost_class=4))


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return " ".join(output.split())


def test_rerun_with_other_weights_is_refused_and_overwrite_replaces(tmp_path, two_models):
    a, b = two_models
    for i in range(3):
        write_image(tmp_path / "src" / f"{i}.png", image(20, 24, seed=i))
    out = tmp_path / "out"
    common = ["--out", out, "--workers", 0, "--save", "masks"]
    assert invoke(tmp_path / "src", "--weights", a, *common).exit_code == 0
    assert (read_label(out / "masks" / "0.png") == 1).all()
    fingerprint = json.loads((out / ".vitseg-run.json").read_text())
    assert fingerprint["weights"] == "a.safetensors" and "save" not in fingerprint  # kinds may be added later

    refused = invoke(tmp_path / "src", "--weights", b, *common)
    assert refused.exit_code == 2
    line = one_line(refused.output)
    assert "weights a.safetensors" in line and "-> b.safetensors" in line and "--overwrite" in line
    assert (read_label(out / "masks" / "0.png") == 1).all()  # nothing touched

    (out / "masks" / "2.png").unlink()  # an unfinished run of the first model: the same settings resume it
    resumed = invoke(tmp_path / "src", "--weights", a, *common)
    assert resumed.exit_code == 0, resumed.output
    assert (record(out)["processed"], record(out)["skipped"]) == (1, 2)

    replaced = invoke(tmp_path / "src", "--weights", b, *common, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert all((read_label(out / "masks" / f"{i}.png") == 4).all() for i in range(3))
    assert json.loads((out / ".vitseg-run.json").read_text())["weights"] == "b.safetensors"


def test_other_settings_or_kinds_are_named(tmp_path, two_models):
    a, _ = two_models
    write_image(tmp_path / "src" / "x.png", image(20, 24))
    out = tmp_path / "out"
    assert invoke(tmp_path / "src", "--weights", a, "--out", out, "--workers", 0, "--save", "masks").exit_code == 0
    flipped = invoke(tmp_path / "src", "--weights", a, "--out", out, "--workers", 0, "--save", "masks", "--flip")
    assert flipped.exit_code == 2 and "settings.flip false -> true" in one_line(flipped.output)
    # a batch size does not change the outputs: not part of the fingerprint
    batch = invoke(tmp_path / "src", "--weights", a, "--out", out, "--workers", 0, "--save", "masks",
                   "--batch-size", 2)
    assert batch.exit_code == 0 and record(out)["skipped"] == 1


def test_outputs_without_a_fingerprint_are_refused(tmp_path, two_models):
    a, _ = two_models
    write_image(tmp_path / "src" / "x.png", image(20, 24))
    out = tmp_path / "out"
    write_image(out / "masks" / "x.png", np.zeros((20, 24), np.uint8))  # made by something else
    refused = invoke(tmp_path / "src", "--weights", a, "--out", out, "--workers", 0, "--save", "masks")
    assert refused.exit_code == 2 and "no fingerprint" in one_line(refused.output)
    assert (read_label(out / "masks" / "x.png") == 0).all()


def test_eval_save_predictions_has_the_same_rule(tmp_path, two_models):
    a, b = two_models
    data = make_synthetic(tmp_path / "data", 2, seed=0, size=(32, 32))
    report = tmp_path / "report"
    common = [str(data), "--format", "folder", "--out", str(report), "--workers", "0", "--device", "cpu",
              "--save-predictions", "-q"]
    first = runner.invoke(app, ["eval", *common, "--weights", str(a)])
    assert first.exit_code == 0, first.output
    assert (read_label(report / "predictions" / "masks" / "00000.png") == 1).all()
    refused = runner.invoke(app, ["eval", *common, "--weights", str(b)])
    assert refused.exit_code == 2
    line = one_line(refused.output)
    assert "--save-predictions" in line and "b.safetensors" in line and "--overwrite" in line
    again = runner.invoke(app, ["eval", *common, "--weights", str(b), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (read_label(report / "predictions" / "masks" / "00000.png") == 4).all()
