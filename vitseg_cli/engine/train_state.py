"""The run folder: resumable training state (`state.pt`), RNG capture/restore, `run.json`, `log.csv` and the lock.

`state.pt` is written atomically (temporary file + `os.replace`) and read back with `torch.load(weights_only=True)`:
everything in it is tensors, numbers, strings, lists and dicts. RNG states of python, numpy and torch (CPU and CUDA)
are stored per rank, so a resumed run draws the same numbers it would have drawn.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..data.io import atomic_write_bytes, check_output_dir, refuse_non_folder, remove_stale_parts
from ..errors import VitsegError, first_line

STATE_FORMAT = "vitseg-train-state"
STATE_VERSION = 1
LOCK_NAME = ".vitseg-train.lock"
RESTARTABLE = {"spec.yaml", "run.json", "log.csv", "tb", "plots", LOCK_NAME}
REQUIRED_STATE = ("iteration", "model", "optimizer", "scheduler")
SCHEDULE_KEYS = ("last_iter", "max_iters", "warmup_iters", "warmup_ratio", "power", "min_lr")
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
    """The training state in `path`, with its fields checked: one line naming the file for anything missing or of
    the wrong kind (shapes are checked where the state is loaded into the model and optimizer)."""
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
    check_state_fields(path, state)
    return state


def check_state_fields(path: Path, state: dict[str, Any]) -> None:
    missing = [k for k in REQUIRED_STATE if k not in state]
    if missing:
        raise VitsegError(f"{path}: damaged training state: no {', '.join(missing)}; start a new run folder")
    it = state["iteration"]
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise VitsegError(f"{path}: damaged training state: iteration {it!r} is not a whole number >= 0")
    for key in ("model", "optimizer", "scheduler"):
        if not isinstance(state[key], dict):
            raise VitsegError(f"{path}: damaged training state: {key} is a {type(state[key]).__name__}, not a "
                              "mapping")
    sched = state["scheduler"]
    bad = [k for k in SCHEDULE_KEYS if isinstance(sched.get(k), bool) or not isinstance(sched.get(k), (int, float))]
    if bad:
        raise VitsegError(f"{path}: damaged training state: scheduler.{bad[0]} is missing or not a number")
    if not isinstance(state.get("rng", []), list):
        raise VitsegError(f"{path}: damaged training state: rng is not a list")


# ---------------------------------------------------------------------------------------------------- run folder


def _is_part(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(".part")


def check_run_folder(out: Path, resume: bool, clean: bool = True) -> bool:
    """Whether there is a state to resume from; refuses to train into a used folder without --resume, or into one
    another live trainer holds. The folder is proved writable here; with `clean`, the temporary files of a save a
    kill interrupted are deleted (only once the folder is accepted), so that they do not block a restart. A trainer
    deletes them itself after taking the lock (`clean=False`)."""
    refuse_non_folder(out, why="--out needs a run folder")
    check_output_dir(out)
    RunLock(out).check_free()
    has_state = (out / "state.pt").exists()
    # a run that failed before its first save left only these: it is started again, not refused
    used = out.exists() and any(p.name not in RESTARTABLE and not _is_part(p) for p in out.iterdir())
    if resume:
        if used and not has_state:
            raise VitsegError(f"{out}: nothing to resume (no state.pt in this non-empty folder); give a new --out")
    elif used:
        raise VitsegError(f"{out}: run folder is not empty; continue it with --resume or choose a new --out folder")
    if clean:
        remove_stale_parts(out)
    return has_state and resume


class RunLock:
    """`RUN/.vitseg-train.lock`: which process (pid, host) trains into the folder. Created exclusively, so a second
    trainer is refused; a lock whose process is gone (same host, pid not running) is stale and taken over. A lock
    that is a symlink or unreadable for a minute is treated as stale too; it is never followed."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.held = False
        self.created_folder = False

    def _holder(self) -> Optional[dict[str, Any]]:
        """The live holder's record, or None when there is no lock or a stale one."""
        try:
            if self.path.is_symlink():
                return None
            info = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), str(info["host"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            try:
                young = time.time() - self.path.lstat().st_mtime < 60  # being written just now by its owner
            except OSError:
                return None
            return {"pid": "?", "host": "?"} if young else None
        if host == socket.gethostname() and not _pid_alive(pid):
            return None
        return {"pid": pid, "host": host}

    def check_free(self) -> None:
        holder = self._holder()
        if holder is not None:
            raise VitsegError(f"{self.out}: another vitseg train (pid {holder['pid']} on {holder['host']}) is "
                              f"training into this folder ({self.path}); wait for it to end, or delete the lock if "
                              "that process is gone")

    def acquire(self) -> list[str]:
        """Take the lock (creating the folder if needed); notes to print (a stale lock taken over)."""
        self.check_free()
        notes = []
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink(missing_ok=True)
            notes.append(f"note: {self.path}: a stale lock of a process that is gone was taken over")
        if not self.out.exists():
            self.out.mkdir(parents=True)
            self.created_folder = True
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileExistsError:
            self.check_free()  # another trainer took it between the check and here
            raise VitsegError(f"{self.path}: another vitseg train took this folder just now") from None
        with os.fdopen(fd, "wb") as f:
            f.write(record)
        self.held = True
        return notes

    def release(self, failed: bool = False) -> None:
        """Remove the lock; after a failed start, also the folder if this lock created it and nothing else is
        there."""
        if not self.held:
            return
        self.path.unlink(missing_ok=True)
        self.held = False
        if failed and self.created_folder:
            try:
                self.out.rmdir()
            except OSError:
                pass


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def read_log_for_resume(path: Path, start_iter: int) -> tuple[list[str], list[dict[str, str]]]:
    """The columns of `log.csv` and its rows up to `start_iter`; a damaged file (not UTF-8 CSV, no iter column, a
    row whose iter is not a whole number) is one line naming it."""
    if not path.exists() or start_iter == 0:
        return list(LOG_COLUMNS), []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            names, rows = list(reader.fieldnames or []), list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise VitsegError(f"{path}: damaged log ({first_line(err, 160)}); repair or delete it to resume") from None
    if "iter" not in names:
        raise VitsegError(f"{path}: damaged log (no iter column in its header); repair or delete it to resume")
    for line, row in enumerate(rows, start=2):
        text = row.get("iter") or ""
        if not text.isdigit():
            raise VitsegError(f"{path}: damaged log (line {line}: iter {text[:40]!r} is not a whole number); repair "
                              "or delete it to resume")
    return _merge_columns(list(LOG_COLUMNS), names), [r for r in rows if int(r["iter"]) <= start_iter]


class CsvLog:
    """`log.csv`: one row per logged iteration; on resume, rows past the resumed iteration are dropped. The columns
    are the fixed ones plus whatever loss terms the model reports (the header grows when a new one appears)."""

    def __init__(self, path: Path, columns: list[str], rows: list[dict[str, str]]):
        self.path = path
        self.columns = list(columns)
        self.rows = [{k: v for k, v in r.items() if k is not None} for r in rows]
        self._rewrite()

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="", encoding="utf-8") as f:
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
        with open(self.path, "a", newline="", encoding="utf-8") as f:
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
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
