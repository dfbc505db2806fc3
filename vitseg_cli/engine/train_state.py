"""The run folder: resumable training state (`state.pt`), RNG capture/restore, `run.json` and `log.csv`.

`state.pt` is written atomically (temporary file + `os.replace`) and read back with `torch.load(weights_only=True)`:
everything in it is tensors, numbers, strings, lists and dicts. RNG states of python, numpy and torch (CPU and CUDA)
are stored per rank, so a resumed run draws the same numbers it would have drawn.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..data.io import atomic_write_bytes, check_output_dir, refuse_non_folder, remove_stale_parts
from ..errors import VitsegError

STATE_FORMAT = "vitseg-train-state"
STATE_VERSION = 1
RESTARTABLE = {"spec.yaml", "run.json", "log.csv", "tb"}
LOG_COLUMNS = ["iter", "lr", "loss", "time", "aAcc", "mIoU", "mAcc"]


# ---------------------------------------------------------------------------------------------------------- RNG


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy and torch RNG states, as weights_only-loadable values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return out


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# -------------------------------------------------------------------------------------------------------- state


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state atomically."""
    buffer = io.BytesIO()
    torch.save({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise VitsegError(f"{path}: not a readable training state ({first[:200]}); start a new run folder") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise VitsegError(f"{path}: not a vitseg training state")
    if state.get("version") != STATE_VERSION:
        raise VitsegError(f"{path}: training state version {state.get('version')} is not supported "
                          f"(this vitseg writes version {STATE_VERSION})")
    return state


# ---------------------------------------------------------------------------------------------------- run folder


def check_run_folder(out: Path, resume: bool) -> bool:
    """Whether there is a state to resume from; refuses to train into a used folder without --resume.
    The folder is proved writable here, and the temporary files of a save a kill interrupted are deleted, so that
    they do not block a restart."""
    refuse_non_folder(out, why="--out needs a run folder")
    check_output_dir(out)
    remove_stale_parts(out)
    has_state = (out / "state.pt").exists()
    # a run that failed before its first save left only these: it is started again, not refused
    used = out.exists() and any(p.name not in RESTARTABLE for p in out.iterdir())
    if resume:
        if used and not has_state:
            raise VitsegError(f"{out}: nothing to resume (no state.pt in this non-empty folder); give a new --out")
        return has_state
    if used:
        raise VitsegError(f"{out}: run folder is not empty; continue it with --resume or choose a new --out folder")
    return False


def read_run_info(out: Path) -> dict[str, Any]:
    """`run.json` of a run folder ({} when there is none); a damaged one is an error naming it."""
    path = out / "run.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise VitsegError(f"{path}: not readable ({type(err).__name__}: {str(err)[:120]}); fix or delete it "
                          "(--data and --format then come from the command line)") from None
    if not isinstance(info, dict):
        raise VitsegError(f"{path}: expected a JSON object")
    return info


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


class CsvLog:
    """`log.csv`: one row per logged iteration; on resume, rows past the resumed iteration are dropped. The columns
    are the fixed ones plus whatever loss terms the model reports (the header grows when a new one appears)."""

    def __init__(self, path: Path, start_iter: int):
        self.path = path
        self.rows: list[dict[str, str]] = []
        self.columns = list(LOG_COLUMNS)
        if path.exists() and start_iter > 0:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = _merge_columns(self.columns, reader.fieldnames or [])
                self.rows = [r for r in reader if r.get("iter", "").isdigit() and int(r["iter"]) <= start_iter]
        self._rewrite()

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(row)
        columns = _merge_columns(self.columns, list(row))
        if columns != self.columns:
            self.columns = columns
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(row)


def _merge_columns(columns: list[str], names: list[str]) -> list[str]:
    """`columns` plus the new names; new loss terms go after "loss", anything else before the metrics."""
    out = list(columns)
    for name in names:
        if name not in out:
            at = out.index("time") if "time" in out else len(out)
            out.insert(at, name)
    return out


def _fmt(value: Optional[Any]) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
