"""The small helpers every layer shares: an exception's first line, torchrun's environment, the not-a-folder check."""

from __future__ import annotations

import pytest

from vitseg_cli.data.io import refuse_non_folder
from vitseg_cli.errors import VitsegError, first_line
from vitseg_cli.torchrun import is_main_process, local_rank, rank_and_world


def test_first_line_is_safe_on_empty_and_blank_messages():
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(RuntimeError("  \n\n")) == "RuntimeError"
    assert first_line(OSError("\n  disk full \nsecond line")) == "disk full"
    assert first_line(KeyError("x" * 300), limit=10) == "'xxxxxxxxx"


def test_rank_and_world_from_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert rank_and_world() == (0, 1) and local_rank() == 0 and is_main_process()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_and_world() == (3, 8) and local_rank() == 1 and not is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "eight")
    assert rank_and_world() == (3, 1)


def test_refuse_non_folder(tmp_path):
    assert refuse_non_folder(tmp_path / "new") == tmp_path / "new"  # missing is fine: it will be created
    assert refuse_non_folder(tmp_path) == tmp_path
    (tmp_path / "f").write_text("x")
    with pytest.raises(VitsegError, match=r"^--out .*f: exists and is not a folder$"):
        refuse_non_folder(tmp_path / "f", "--out")
    with pytest.raises(VitsegError, match=r"f: exists and is not a folder \(--out needs a run folder\)$"):
        refuse_non_folder(tmp_path / "f", why="--out needs a run folder")
