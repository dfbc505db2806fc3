"""Shared test fixtures: the parity vectors made with the official implementation, small threads, and a tiny
folder dataset with a random nano model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

PARITY = Path(__file__).resolve().parent / "data" / "parity"  # reference vectors of the official code (SOURCE.md)

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not (PARITY / "mini_checkpoint.pth").exists():
        pytest.fail(f"parity vectors not found in {PARITY}")
    return PARITY


@pytest.fixture(scope="module")
def one_thread():
    """On a small shared CPU, torch's thread pool spins against other processes: one thread is many times faster.
    Modules that start many short runs use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nano_folder_dataset(root: Path, count: int) -> tuple[Path, Path]:
    """`count` random 40x32 images with 6-class masks in root/ds (folder layout) and a random whole-mode nano model
    in root/nano.safetensors: the smallest inputs a CLI run needs."""
    import numpy as np
    import yaml

    from vitseg_cli.data.io import write_image
    from vitseg_cli.loading import save_model
    from vitseg_cli.model.segmentor import build_model
    from vitseg_cli.spec import load_spec

    rng = np.random.default_rng(0)
    for i in range(count):
        write_image(root / "ds" / "images" / f"{i}.png", rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
        write_image(root / "ds" / "masks" / f"{i}.png", rng.integers(0, 6, (32, 40), dtype=np.uint8))
    (root / "ds" / "classes.yaml").write_text(yaml.safe_dump({"classes": list("abcdef")}))
    ckpt = root / "nano.safetensors"
    save_model(build_model(load_spec("nano").updated(test={"mode": "whole"})), ckpt)
    return root / "ds", ckpt


def nano_train_spec(folder: Path) -> Path:
    """A spec file for the quickest `vitseg train` run of the nano preset on `nano_folder_dataset` images."""
    import yaml

    spec = folder / "s.yaml"
    spec.write_text(yaml.safe_dump({"preset": "nano", "train": {"scale": [64, 64], "crop_size": [32, 32],
                                                                 "batch_size": 2, "workers": 0, "warmup_iters": 1}}))
    return spec
