"""Ray Data: `vitseg predict --engine ray` on a local cluster started here (2 CPUs, CPU actors) gives the masks of a
single-process run, reports a bad image and skips it, and resumes; `VitsegPredictor` takes decoded images or bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from vitseg_cli.cli import app  # noqa: E402
from vitseg_cli.data.io import encode_image, read_label, write_image  # noqa: E402
from vitseg_cli.ray import VitsegPredictor  # noqa: E402

from test_predict import image, make_weights  # noqa: E402

runner = CliRunner()
NAMES = [f"r{i}" for i in range(6)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    weights = make_weights(root / "nano.safetensors")
    for i, name in enumerate(NAMES):
        write_image(root / "src" / f"{name}.png", image(40 + 4 * (i % 2), 48, seed=i))
    (root / "src" / "zz_bad.png").write_bytes(b"\x89PNG broken")
    base = runner.invoke(app, ["predict", str(root / "src"), "--out", str(root / "base"), "--weights", str(weights),
                               "--save", "masks", "--workers", "0", "--quiet"])
    assert base.exit_code == 1, base.output  # the bad file, in the single-process run too
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield root, weights
    finally:
        ray.shutdown()


def test_engine_ray_equals_one_process(cluster):
    root, weights = cluster
    out = root / "ray_out"
    args = ["predict", str(root / "src"), "--out", str(out), "--weights", str(weights), "--save", "masks,rle",
            "--engine", "ray", "--concurrency", "2", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    rec = json.loads((out / "predict.json").read_text())
    assert rec["processed"] == len(NAMES) and [Path(f["path"]).name for f in rec["failed"]] == ["zz_bad.png"]
    for name in NAMES:
        assert np.array_equal(read_label(out / "masks" / f"{name}.png"),
                              read_label(root / "base" / "masks" / f"{name}.png"))
    again = runner.invoke(app, args)  # resumable: only the bad file is tried again
    rec = json.loads((out / "predict.json").read_text())
    assert again.exit_code == 1 and (rec["processed"], rec["skipped"]) == (0, len(NAMES))


def test_predictor_takes_images_and_bytes(cluster):
    root, weights = cluster
    predictor = VitsegPredictor(str(weights), device="cpu", output="labels")
    img = image(44, 48, seed=1)
    decoded = predictor({"image": np.array([img]), "path": np.array(["r1.png"])})
    encoded = predictor({"bytes": np.array([encode_image("x.png", img), b"junk"], dtype=object),
                         "path": np.array(["r1.png", "junk.png"])})
    expected = read_label(root / "base" / "masks" / "r1.png")
    assert np.array_equal(decoded["labels"][0], expected) and np.array_equal(encoded["labels"][0], expected)
    assert list(encoded["status"]) == ["ok", "error"] and "junk.png" in encoded["error"][1]
    assert encoded["labels"][1].shape == (0, 0)
