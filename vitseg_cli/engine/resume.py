"""What a predict run does with each input, decided from the folder alone, before the model loads.

For each input, the newest manifest line under its output name (`engine/manifest.py`) decides:
- same identity, every asked kind listed and on disk: skipped;
- same identity, the mask there and only colour / overlay / RLE missing: those are added from the saved mask
  (`engine/derive.py`), with no inference;
- same identity, another kind missing (probs, a video's frames): predicted again (the listed files it keeps stay);
- another file under that name from the same root (the input changed): predicted again, its old files removed first;
- another file under that name from another root: the folder holds another source's outputs, and the run is refused
  (one line naming both files) unless `--overwrite` or another `--out`;
- no line (or a failed one): predicted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..data.inputs import InputImage
from ..errors import VitsegError
from .manifest import describe, identity, image_root, read_manifest, same_identity

DERIVABLE = {"color", "overlay", "rle"}  # made from a saved mask (and the input image)


@dataclass
class Plan:
    predict: list[InputImage] = field(default_factory=list)
    derive: list[tuple[InputImage, dict[str, Any]]] = field(default_factory=list)  # (input, its manifest line)
    skipped: int = 0
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> this run's file's identity
    keep: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> earlier outputs its new line lists
    changed: list[InputImage] = field(default_factory=list)  # a different file under a name, same root: redone
    stale: list[Path] = field(default_factory=list)  # the changed inputs' old files
    rle_done: set[str] = field(default_factory=set)  # names the folder's RLE logs already hold


def _wanted(item: InputImage, save: Sequence[str]) -> set[str]:
    return {"video"} if item.is_video else set(save)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def listed_files(out: Path, line: dict[str, Any]) -> dict[str, Path]:
    """Kind -> file (or a video's frame folder) a manifest line lists, only those inside OUT/<kind>/ (a line is
    never trusted to point elsewhere)."""
    found = {}
    outputs = line.get("outputs") if isinstance(line.get("outputs"), dict) else {}
    for kind, rel in outputs.items():
        path = out / str(rel)
        if kind != "rle" and _inside(path, out / kind):
            found[kind] = path
    return found


def _present(out: Path, item: InputImage, line: dict[str, Any], rle_done: Optional[set[str]],
             exists: Optional[Callable[[Path], bool]] = None) -> set[str]:
    exists = exists or Path.exists
    present = {kind for kind, path in listed_files(out, line).items() if exists(path)}
    if "rle" in (line.get("outputs") or {}) and rle_done is not None and item.rel in rle_done:
        present.add("rle")
    return present


def plan_run(out: Path, inputs: Sequence[InputImage], save: Sequence[str], identity_mode: str = "stat",
             overwrite: bool = False, rle_done: Optional[set[str]] = None, option: str = "--out",
             exists: Optional[Callable[[Path], bool]] = None, hashes: Optional[dict[tuple, str]] = None) -> Plan:
    """Each input's fate (see the module's docstring); raises the one-line refusal of another source's outputs.
    `exists`: whether an output file exists (default: on disk; a URL --out also looks among its objects);
    `hashes`: sha256 digests already computed (`manifest.identity`), so that a second plan reads no file again."""
    plan = Plan(rle_done=set(rle_done or ()))
    lines = {} if overwrite else read_manifest(out)
    others = []
    for item in inputs:
        try:
            ident = identity(item, identity_mode, hashes)
        except OSError:
            ident = {}  # unreadable: predicting it reports why
        plan.identities[item.rel] = ident
        line = lines.get(item.rel)
        if line is None or not ident or line.get("status") != "ok":
            plan.predict.append(item)
        elif not same_identity(line.get("identity") or {}, ident):
            if line.get("root") != image_root(item):
                others.append((item, ident, line))
            plan.changed.append(item)
            plan.predict.append(item)
            plan.stale += [p for p in listed_files(out, line).values() if p.exists()]
        else:
            present = _present(out, item, line, rle_done, exists)
            missing = _wanted(item, save) - present
            if not missing:
                plan.skipped += 1
            elif not item.is_video and "masks" in present and missing <= DERIVABLE:
                plan.derive.append((item, line))
            else:
                files = listed_files(out, line)
                plan.keep[item.rel] = {k: str(line["outputs"][k]) for k in present - set(save) if k in files}
                plan.predict.append(item)
    if others:
        raise VitsegError(_other_source(out, others, option))
    return plan


def _other_source(out: Path, others: list, option: str) -> str:
    item, ident, line = others[0]
    more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
    return (f"{option} {out}: holds outputs of another source: {item.rel} was made from "
            f"{Path(str(line.get('root'))) / str((line.get('identity') or {}).get('path'))} "
            f"({describe(line.get('identity') or {})}), not from {item.path} ({describe(ident)}){more}. Use "
            f"--overwrite to replace that run's outputs, or another {option}")


def remove_stale(paths: Sequence[Path]) -> None:
    """Remove the old files of inputs that changed (a video's frame folder too) before they are predicted again."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
