"""Training metrics for TensorBoard, MLflow, W&B or a registered logger (`--logger`), and `--pretrained` from a timm
`.safetensors` file."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from vitseg_cli.loading import load_pretrained
from vitseg_cli.cli import app
from vitseg_cli.data.io import write_image
from vitseg_cli.engine.loggers import _REGISTERED, register_logger
from vitseg_cli.model.segmentor import build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("log")
    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(root / "ds" / "images" / f"{i}.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        write_image(root / "ds" / "masks" / f"{i}.png", rng.integers(0, 3, (32, 32), dtype=np.uint8))
    (root / "ds" / "classes.yaml").write_text(yaml.safe_dump({"classes": ["a", "b", "c"]}))
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({"preset": "nano", "train": {"scale": [32, 32], "crop_size": [32, 32],
                                                                 "batch_size": 2, "workers": 0, "warmup_iters": 1}}))
    return root / "ds", spec


def _train(dataset, out: Path, *extra):
    ds, spec = dataset
    return runner.invoke(app, ["train", "--quiet", "--spec", str(spec), "--data", str(ds), "--out", str(out),
                               "--iters", "2", "--log-every", "1", "--device", "cpu", *extra])


class Recorder:
    instances: list["Recorder"] = []

    def __init__(self, run_dir: Path, config: dict):
        self.run_dir, self.config, self.rows, self.closed = run_dir, config, [], False
        Recorder.instances.append(self)

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))

    def close(self):
        self.closed = True


def test_registered_logger_gets_every_logged_row(tmp_path, dataset):
    register_logger("rec", Recorder)
    try:
        res = _train(dataset, tmp_path / "run", "--logger", "rec")
    finally:
        _REGISTERED.pop("rec")
    assert res.exit_code == 0, res.output
    rec = Recorder.instances[-1]
    assert rec.run_dir == tmp_path / "run" and rec.closed
    assert [step for step, _ in rec.rows] == [1, 2]
    assert {"train/loss", "train/lr", "train/loss_aux", "train/time"} <= set(rec.rows[0][1])
    assert rec.config["num_classes"] == 3 and rec.config["batch_size"] == 2


def test_mlflow_adapter_speaks_the_mlflow_api(tmp_path, dataset, monkeypatch):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.__spec__ = types.SimpleNamespace(name="mlflow")  # what find_spec looks at for a module in sys.modules
    fake.active_run = lambda: None
    fake.start_run = lambda run_name=None: calls.append(("start_run", run_name))
    fake.log_params = lambda params: calls.append(("log_params", dict(params)))
    fake.log_metrics = lambda metrics, step=None: calls.append(("log_metrics", step, dict(metrics)))
    fake.end_run = lambda: calls.append(("end_run",))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    res = _train(dataset, tmp_path / "run", "--logger", "mlflow")
    assert res.exit_code == 0, res.output
    assert calls[0] == ("start_run", "run") and calls[1][0] == "log_params" and calls[-1] == ("end_run",)
    assert [c[1] for c in calls if c[0] == "log_metrics"] == [1, 2]
    assert calls[1][1]["lr"] > 0 and calls[1][1]["crop_size"] == [32, 32]


def test_tensorboard_logger_writes_scalars_under_the_run(tmp_path, dataset, monkeypatch):
    scalars, dirs = [], []

    class SummaryWriter:
        def __init__(self, log_dir):
            dirs.append(log_dir)

        def add_scalar(self, tag, value, step):
            scalars.append((tag, step))

        def close(self):
            dirs.append("closed")

    for name in ("tensorboard", "torch.utils.tensorboard"):
        fake = types.ModuleType(name)
        fake.__spec__ = types.SimpleNamespace(name=name)
        fake.SummaryWriter = SummaryWriter
        monkeypatch.setitem(sys.modules, name, fake)
    res = _train(dataset, tmp_path / "run")  # no --logger: TensorBoard, since it is installed
    assert res.exit_code == 0, res.output
    assert dirs == [str(tmp_path / "run" / "tb"), "closed"]
    assert ("train/loss", 1) in scalars and ("train/lr", 2) in scalars


def test_loggers_asked_for_but_missing_or_unknown(tmp_path, dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed, whatever this machine has
    res = _train(dataset, tmp_path / "a", "--logger", "wandb")
    assert res.exit_code == 2 and "--logger wandb" in res.output and "pip install wandb" in res.output
    res = _train(dataset, tmp_path / "b", "--logger", "nosuch")
    assert res.exit_code == 2 and "nosuch" in res.output and "available" in res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert _train(dataset, tmp_path / "c", "--logger", "none").exit_code == 0


def test_pretrained_from_a_timm_safetensors_file(tmp_path):
    vit = timm.models.vision_transformer.VisionTransformer(img_size=224, patch_size=16, embed_dim=96, depth=4,
                                                          num_heads=3, init_values=0.5, num_classes=5)
    state = {k: v.contiguous() for k, v in vit.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    model = build_model("nano")
    notes = load_pretrained(model, tmp_path / "model.safetensors")
    assert "model.safetensors" in notes[0]
    own = model.backbone.state_dict()
    for key in ("patch_embed.proj.weight", "pos_embed", "blocks.3.attn.qkv.weight", "blocks.1.mlp.fc2.bias"):
        torch.testing.assert_close(own[key], state[key], rtol=0, atol=0)
    torch.testing.assert_close(own["blocks.2.gamma1"], state["blocks.2.ls1.gamma"], rtol=0, atol=0)
