"""The inputs of a run: files, folders (searched recursively), globs and `.txt` lists, each mapped to its output name.

One rule, which depends on the file alone (never on which other files exist): an input's name `<rel>` is its path
relative to its root, without its extension, '/'-separated; its outputs go to `OUT/<kind>/<rel>.*`. The root of a
file found in a folder is that folder, of a glob's match the folder before the first wildcard; a file named directly
(on the command line or as a line of a `.txt` list) is its own root's only file, so its name is its file name
without extension (a list of a folder's files names them as the folder does). Two inputs with the same name (`a.jpg`
beside `a.png`, or the same relative path under two sources) are refused with one line, as are inputs inside the
output folder.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import VitsegError
from .io import is_image_path
from .video import is_video_path


@dataclass(frozen=True)
class InputImage:
    path: Path
    rel: str  # output name relative to OUT/<kind>/, without extension, '/'-separated
    source_rel: str = ""  # the path relative to its root, with extension: part of the input's recorded identity

    @property
    def is_video(self) -> bool:
        return is_video_path(self.path)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_base(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard: match names are relative to it."""
    fixed = []
    for part in pattern.parts:
        if _has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _is_input(path: Path, videos: bool) -> bool:
    return is_image_path(path) or (videos and is_video_path(path))


def _folder_images(folder: Path, out_dir: Path, videos: bool) -> list[Path]:
    found = [p for p in folder.rglob("*") if _is_input(p, videos) and p.is_file() and not _inside(p, out_dir)]
    return sorted(found)


def _list_file(path: Path) -> list[tuple[Path, Path]]:
    base = path.parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise VitsegError(f"{path}: cannot read the list of images ({err})") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else base / p
        out.append((p, p.parent))
    return out


def collect_inputs(sources: Sequence[str], out_dir: Path, videos: bool = False) -> list[InputImage]:
    """The images (and videos, if asked) named by the sources, each with its output name; files under `out_dir` are
    never inputs."""
    found: list[tuple[Path, Path]] = []  # (file, the folder its name is relative to)
    for source in sources:
        path = Path(source).expanduser()
        _refuse_inside_out(source, _glob_base(path) if _has_magic(source) else path, out_dir)
        if path.is_dir():
            found += [(p, path) for p in _folder_images(path, out_dir, videos)]
        elif path.is_file() and path.suffix.lower() == ".txt":
            found += _list_file(path)
        elif path.is_file():
            found.append((path, path.parent))
        elif _has_magic(source):
            base = _glob_base(path)
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            found += [(m, base) for m in matches if m.is_file() and _is_input(m, videos) and not _inside(m, out_dir)]
        else:
            raise VitsegError(f"{source}: no such file or folder")
    unique: dict[Path, tuple[Path, Path]] = {}
    for p, base in found:
        _refuse_inside_out(p, p, out_dir)
        unique.setdefault(p.resolve(), (p, base))
    return _name_outputs(list(unique.values()))


def _refuse_inside_out(source: "str | Path", path: Path, out_dir: Path) -> None:
    """Outputs must never land on inputs: `predict DATASET/images --out DATASET` would overwrite its masks/."""
    if _inside(path, out_dir):
        raise VitsegError(f"{source}: is inside --out {out_dir}, where outputs could overwrite inputs (a dataset's "
                          "masks/, say); choose an --out folder outside the sources")


def _name_outputs(found: list[tuple[Path, Path]]) -> list[InputImage]:
    rel_paths = [p.resolve().relative_to(base.resolve()) if _inside(p, base) else Path(p.name) for p, base in found]
    names = [r.with_suffix("").as_posix() for r in rel_paths]
    seen: dict[str, Path] = {}
    for (p, _), name in zip(found, names):
        if name in seen:
            raise VitsegError(f"{p} and {seen[name]} would both be written as {name} (an output is named by its "
                              "input's path without extension): give them as separate runs with different --out")
        seen[name] = p
    # a video's frames are written as <name>/<frame>.*: no other input may be named inside that folder
    folders = {name.rsplit("/", k)[0]: name for name in names for k in range(1, name.count("/") + 1)}
    for (p, _), name in zip(found, names):
        if is_video_path(p) and name in folders:
            inside = folders[name]
            raise VitsegError(f"{p}: its frames would be written where {seen[inside]} goes ({inside}): give them "
                              "as separate runs with different --out")
    return [InputImage(p, name, r.as_posix()) for (p, _), name, r in zip(found, names, rel_paths)]
