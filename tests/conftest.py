"""Shared test fixtures: the parity vectors made with the official implementation, and small threads."""

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
