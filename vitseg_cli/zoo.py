"""Named official checkpoints (the model zoo): resolve a release name to a converted vitseg file in a local cache.

`release_for(text)` names the release a `--weights` value means (None for an existing path); `fetch(release, convert)`
downloads it once, checks it, has it converted once by `convert` (the loading module's, which knows models: this
module does not) and returns the converted `.safetensors`.

Cache (`$VITSEG_HOME`, default `~/.cache/vitseg`), one folder per release:
    <name>/<official basename>            the downloaded checkpoint (a `.zip` release: the one checkpoint inside it)
    <name>/<name>.safetensors             the vitseg conversion, what later runs load
    <file>.sha256                         beside each, written when the file was made and checked when it is used
Downloads go to `<file>.part` and are renamed when complete; an interrupted one resumes with an HTTP Range request
when the server allows it. `VITSEG_ZOO_MIRROR=URL` fetches `URL/<official basename>` instead of the official URL.
Each download is bounded in bytes (VITSEG_ZOO_MAX_BYTES, or 1.5x the known size) and time (VITSEG_ZOO_TIMEOUT);
what a zip inflates to is bounded by the release's size or parameter count before anything is inflated. A fresh
download is checked against a SHA256SUMS file when there is one: VITSEG_ZOO_SHA256SUMS (a path or URL), else the
mirror's own `URL/SHA256SUMS` when it serves one.
This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from . import releases
from .data.safe_zip import check_members, extract_member
from .errors import VitsegError, did_you_mean

CHUNK = 1 << 20
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt", ".ckpt", ".bin")


# ----------------------------------------------------------------------------------------------------- the table


def all_releases() -> list[releases.Release]:
    return [*releases.RELEASES, *releases.OTHER_RELEASES]


def find_release(name: str) -> Optional[releases.Release]:
    return next((r for r in all_releases() if r.name == name), None)


def names() -> list[str]:
    return [r.name for r in all_releases()]


def cache_dir() -> Path:
    return Path(os.environ.get("VITSEG_HOME") or "~/.cache/vitseg").expanduser()


def release_dir(release: releases.Release) -> Path:
    return cache_dir() / release.name


def official_basename(release: releases.Release, url: Optional[str] = None) -> str:
    return (url or release.url).rstrip("/").rsplit("/", 1)[-1]


def mirror() -> str:
    """VITSEG_ZOO_MIRROR, checked: an http(s) URL with a host, or '' when unset."""
    value = os.environ.get("VITSEG_ZOO_MIRROR", "").strip()
    if not value:
        return ""
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)
    except ValueError:  # a bad port or a malformed IPv6 host
        ok = False
    if not ok:
        raise VitsegError(f"VITSEG_ZOO_MIRROR={value!r}: not an http:// or https:// URL with a host "
                          "(e.g. http://host:8000/releases)")
    return value


def download_url(release: releases.Release, url: Optional[str] = None) -> str:
    mirror_url = mirror()
    base = official_basename(release, url)
    return f"{mirror_url.rstrip('/')}/{base}" if mirror_url else (url or release.url)


def config_path(release: releases.Release) -> Optional[Path]:
    """Where the config served beside the checkpoint lives in the cache (None: the release has none)."""
    if not release.config_url:
        return None
    return release_dir(release) / release.config_url.rstrip("/").rsplit("/", 1)[-1]


def config_download_url(release: releases.Release) -> str:
    mirror_url = mirror()
    name = release.config_url.rstrip("/").rsplit("/", 1)[-1]
    return f"{mirror_url.rstrip('/')}/{name}" if mirror_url else release.config_url


def converted_path(release: releases.Release) -> Path:
    return release_dir(release) / f"{release.name}.safetensors"


def _is_zip_release(release: releases.Release) -> bool:
    return official_basename(release).lower().endswith(".zip")


def checkpoint_path(release: releases.Release, url: Optional[str] = None) -> Path:
    """Where the official checkpoint lives in the cache (for a `.zip` release: its content, under the zip's stem)."""
    base = official_basename(release, url)
    return release_dir(release) / (base[:-4] + ".pth" if _is_zip_release(release) else base)


def as_records() -> list[dict]:
    """The table as plain dicts (`vitseg zoo --json`), with whether each converted model is in the cache."""
    return [{**dataclasses.asdict(r), "format": releases.dataset_format(r), "eval_ss": releases.eval_commands(r)[0],
             "eval_ms": releases.eval_commands(r)[1], "cached": converted_path(r).is_file()} for r in all_releases()]


# ------------------------------------------------------------------------------------------------------ the hook


def looks_like_zoo_name(text: str) -> bool:
    return "/" not in text and os.sep not in text and not text.lower().endswith((".safetensors", ".onnx",
                                                                                  *CHECKPOINT_SUFFIXES))


def release_for(path: "str | Path") -> Optional[releases.Release]:
    """The release a `--weights` value names: None when it is an existing path or no release name (it is then read as
    a path); a near miss of a release name is an error with 'did you mean' suggestions."""
    text = str(path)
    if Path(text).exists():
        return None
    release = find_release(text)
    if release is None and looks_like_zoo_name(text) and (hint := did_you_mean(text, names())):
        raise VitsegError(f"{text}: no such file or zoo name{hint} (vitseg zoo lists the names)")
    return release


Convert = Callable[[releases.Release, Path, Path], None]  # (release, official checkpoint, converted file to write)


class RefusedFile(VitsegError):
    """Raised by `convert` when the official file's content is not what the release is (its config describes
    another model): `fetch` removes the file from the cache, so nothing refused is kept or used later."""


def fetch(release: releases.Release, convert: Convert) -> Path:
    """The converted vitseg file of `release`, downloading it and having `convert` write the converted file first if
    the cache lacks it."""
    folder = release_dir(release)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VitsegError(f"{folder}: cannot create the model cache ({err.strerror or err}); set VITSEG_HOME to a "
                          "writable folder") from None
    with _locked(folder):  # torchrun ranks and parallel jobs share one download
        converted = converted_path(release)
        try:
            if converted.is_file() and Path(f"{converted}.sha256").is_file():
                check_digest(converted)
                return converted
            checkpoint = _official_checkpoint(release)
            _official_config(release)  # a config served beside the checkpoint: `convert` reads it from the cache
            try:
                if release.backbone_url:  # a release made of two files: the backbone's own file too
                    convert(release, checkpoint, converted, _official_checkpoint(release, release.backbone_url))
                else:
                    convert(release, checkpoint, converted)
            except RefusedFile:
                checkpoint.unlink(missing_ok=True)
                Path(f"{checkpoint}.sha256").unlink(missing_ok=True)
                raise
            record_digest(converted)
        except OSError as err:  # the cache itself: full disk, permissions
            raise VitsegError(f"{folder}: cannot use the model cache ({err.strerror or err}); free some space or set "
                              "VITSEG_HOME to another folder") from None
        return converted


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    lock = folder / ".lock"
    try:  # never follow a link: opening one for writing would create or change its target
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        if lock.is_symlink():
            raise VitsegError(f"{lock}: a symbolic link where the cache lock belongs; remove it and run again") from None
        raise VitsegError(f"{lock}: cannot open the cache lock ({err.strerror or err})") from None
    with os.fdopen(fd, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------- digests


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def record_digest(path: Path) -> str:
    """Write `<path>.sha256` (sha256sum format), whole or not at all."""
    value = sha256_of(path)
    part = Path(f"{path}.sha256.part")
    part.write_text(f"{value}  {path.name}\n")
    os.replace(part, f"{path}.sha256")
    return value


def check_digest(path: Path) -> None:
    """The file still has the SHA-256 recorded when it was made (a file without a record gets one now)."""
    record = Path(f"{path}.sha256")
    if not record.is_file():
        record_digest(path)
        return
    expected = (record.read_text().split() or [""])[0]
    if sha256_of(path) != expected:
        raise VitsegError(f"{path}: SHA-256 differs from the one recorded in {record.name} (the cached file changed "
                          f"or is damaged); delete {path.parent} and run again to fetch it anew")


# ------------------------------------------------------------------------------------------------ SHA256SUMS


SUMS_ENV, SUMS_NAME = "VITSEG_ZOO_SHA256SUMS", "SHA256SUMS"
SUMS_MAX_BYTES = 1 << 20


def listed_digests() -> Optional[tuple[str, dict[str, str]]]:
    """(where, {file name: SHA-256}) from VITSEG_ZOO_SHA256SUMS (a file or an http(s) URL; it must be readable) or
    else the mirror's own `SHA256SUMS` when it serves one; None when there is none (the upstream releases publish
    no hashes)."""
    where = os.environ.get(SUMS_ENV, "").strip()
    if where and not where.startswith(("http://", "https://")):
        try:
            with open(Path(where).expanduser(), "rb") as f:
                text = f.read(SUMS_MAX_BYTES + 1)
        except OSError as err:
            raise VitsegError(f"{SUMS_ENV}={where}: cannot read ({err.strerror or err})") from None
    else:
        url = where or (f"{mirror().rstrip('/')}/{SUMS_NAME}" if mirror() else "")
        if not url:
            return None
        text = _small_download(url, required=bool(where))
        if text is None:
            return None
        where = url
    if len(text) > SUMS_MAX_BYTES:
        raise VitsegError(f"{where}: more than {SUMS_MAX_BYTES} bytes; not a SHA256SUMS file")
    return where, _parse_sums(text.decode("utf-8", "replace"), where)


def _small_download(url: str, required: bool) -> Optional[bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vitseg"}),
                                    timeout=60) as response:
            return response.read(SUMS_MAX_BYTES + 1)
    except urllib.error.HTTPError as err:
        if not required and err.code in (403, 404, 410):
            return None  # the mirror serves none: nothing to check against
        raise VitsegError(f"{url}: the server answered {err.code} {err.reason} for the SHA256SUMS file") from None
    except (urllib.error.URLError, OSError) as err:
        raise VitsegError(f"cannot download {url} ({getattr(err, 'reason', err)})") from None


def _parse_sums(text: str, where: str) -> dict[str, str]:
    """`sha256sum` output: '<64 hex>  <name>' (or ' *<name>'), keyed by the name's last part."""
    sums = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        value, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(value) != 64 or any(c not in "0123456789abcdefABCDEF" for c in value) or not name:
            raise VitsegError(f"{where}: line {number} is not '<sha256>  <file name>'")
        sums[name.rsplit("/", 1)[-1]] = value.lower()
    return sums


def verify_listed_digest(path: Path) -> None:
    """Check a fresh download against the SHA256SUMS in use, if any; a file it does not list, or whose digest
    differs, is removed and refused."""
    try:
        listed = listed_digests()
    except VitsegError:  # sums that cannot be read: the download stays unverified, so it is not kept
        path.unlink(missing_ok=True)
        raise
    if listed is None:
        return
    where, sums = listed
    expected = sums.get(path.name)
    problem = (f"{where} lists no {path.name}" if expected is None else
               None if sha256_of(path) == expected else f"its SHA-256 differs from the one {where} lists")
    if problem:
        path.unlink(missing_ok=True)
        raise VitsegError(f"{path}: {problem}; the download was not kept")


# -------------------------------------------------------------------------------------------- the official file


def _official_checkpoint(release: releases.Release, url: Optional[str] = None) -> Path:
    """The official checkpoint (`url`: another file of the release) in the cache: already there (checked), placed
    there by hand, or downloaded now."""
    target = checkpoint_path(release, url)
    if target.is_file():
        if Path(f"{target}.sha256").is_file():
            check_digest(target)
        else:  # placed by hand: check it is whole before recording it
            _check_torch_file(target, remove=False)
            record_digest(target)
        return target
    download = release_dir(release) / official_basename(release, url)
    if not download.is_file():
        _download(download_url(release, url), download, download_limit(release))
        verify_listed_digest(download)
    if _is_zip_release(release):
        _extract_checkpoint(download, target, inflate_limit(release))
        download.unlink()
    else:
        _check_torch_file(target, remove=True, limit=inflate_limit(release))
    record_digest(target)
    return target


def _official_config(release: releases.Release) -> Optional[Path]:
    """The config file served beside the checkpoint, in the cache (downloaded now if missing); None if none."""
    target = config_path(release)
    if target is None:
        return None
    if target.is_file():
        check_digest(target)  # a file placed by hand gets its record now
        return target
    _download(config_download_url(release), target, CONFIG_MAX_BYTES)
    verify_listed_digest(target)
    record_digest(target)
    return target


def _check_torch_file(path: Path, remove: bool, limit: Optional[int] = None) -> None:
    """A torch checkpoint is a zip archive holding a `data.pkl`; its CRCs catch a damaged or truncated file. Its
    declared sizes are bounded (`limit`) before the CRC check inflates anything."""
    problem = None
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                check_members(path, archive.infolist(), limit)
            except VitsegError:
                if remove:
                    path.unlink(missing_ok=True)
                raise
            if not any(n.endswith("data.pkl") for n in archive.namelist()):
                problem = "a zip archive but not a torch checkpoint"
            elif (bad := archive.testzip()) is not None:
                problem = f"damaged ({bad} fails its CRC check)"
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        problem = f"not a torch checkpoint ({err})"
    if problem:
        if remove:
            path.unlink(missing_ok=True)
        raise VitsegError(f"{path}: {problem}{'; removed from the cache' if remove else ''}")


def _extract_checkpoint(archive_path: Path, target: Path, limit: int) -> None:
    """The one checkpoint inside a `.zip` release, written to `target` (whole or not at all). The members' declared
    sizes are checked against `limit` before anything is inflated (a zip bomb); a refused or unreadable archive is
    removed from the cache, so a retry downloads it again rather than inflating it again."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            check_members(archive_path, members, limit)
            members = [m for m in members if not m.filename.startswith("__MACOSX")
                       and m.filename.lower().endswith(CHECKPOINT_SUFFIXES)]
            if len(members) != 1:
                found = ", ".join(m.filename for m in members) or "none"
                raise VitsegError(f"{archive_path}: expected exactly one checkpoint inside, found {len(members)} "
                                  f"({found}); removed from the cache")
            part = Path(f"{target}.part")
            try:
                extract_member(archive, members[0], part, archive_path, limit)
                _check_torch_file(part, remove=True, limit=limit)
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as err:
        archive_path.unlink(missing_ok=True)
        raise VitsegError(f"{archive_path}: not a readable zip archive ({err}); removed from the cache") from None
    except VitsegError:
        archive_path.unlink(missing_ok=True)
        raise


_PARAM_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9}
BYTES_PER_PARAM = 16  # float32 weights and AdamW's two moments (12 bytes), with room for buffers
CHECKPOINT_EXTRA = 64 << 20  # metadata, a config, the pickle itself


def inflate_limit(release: releases.Release) -> int:
    """The most bytes a release's archive may inflate to: its known download size (times 1.5), else what its
    parameter count can fill (BYTES_PER_PARAM each), never past VITSEG_ZOO_MAX_BYTES."""
    cap = int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
    if release.size:
        return min(cap, download_limit(release))
    text = (release.params or "").strip().upper()
    try:
        params = float(text[:-1]) * _PARAM_UNITS[text[-1:]]
    except (ValueError, KeyError):
        return cap
    return min(cap, int(params * BYTES_PER_PARAM) + CHECKPOINT_EXTRA)


# ---------------------------------------------------------------------------------------------------- download


MAX_BYTES_ENV, TIMEOUT_ENV = "VITSEG_ZOO_MAX_BYTES", "VITSEG_ZOO_TIMEOUT"
DEFAULT_MAX_BYTES = 64 << 30  # past the largest release (ViT-7B in float32 is about 30 GB)
DEFAULT_TIMEOUT = 12 * 3600.0  # seconds for one file, however slowly the mirror sends it
CONFIG_MAX_BYTES = 16 << 20  # a config served beside a checkpoint is a few KB of text
_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 1 << 10, "MIB": 1 << 20,
          "GIB": 1 << 30, "TIB": 1 << 40}


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise VitsegError(f"{name}={text!r}: expected a positive number")
    return value


def download_limit(release: releases.Release) -> int:
    """The most bytes a download of `release` may take: 1.5 x the table's size where it knows one, else
    VITSEG_ZOO_MAX_BYTES (default 64 GiB)."""
    if release.size:
        number, _, unit = release.size.strip().upper().partition(" ")
        try:
            return int(float(number) * _UNITS[unit.strip()] * 1.5)
        except (ValueError, KeyError):
            pass  # a size the table writes some other way: the general cap
    return int(_env_number(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))


def download_timeout() -> float:
    """Seconds one file's download may take in all (VITSEG_ZOO_TIMEOUT, default 12 hours)."""
    return _env_number(TIMEOUT_ENV, DEFAULT_TIMEOUT)


@dataclasses.dataclass(frozen=True)
class _Bounds:
    limit: int  # bytes
    deadline: float  # time.monotonic() value

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _download(url: str, dest: Path, limit: int) -> None:
    """`url` to `dest` through `dest.part` (resumed with a Range request when one is there), renamed when whole; at
    most `limit` bytes and VITSEG_ZOO_TIMEOUT seconds."""
    part = Path(f"{dest}.part")
    bounds = _Bounds(limit, time.monotonic() + download_timeout())
    for attempt in range(2):  # a second, fresh request when the server refuses the range
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "vitseg"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                              timeout=max(0.1, min(60.0, bounds.left())))
        except urllib.error.HTTPError as err:
            if err.code == 416 and have and attempt == 0:  # the partial file is no prefix the server knows
                part.unlink()
                continue
            raise VitsegError(f"{url}: the server answered {err.code} {err.reason}; nothing was saved") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise VitsegError(f"cannot download {url} ({reason}); with no network, download it by hand and place it "
                              f"at {dest}") from None
        with response:
            resumed = have and response.status == 206 and _range_start(response) == have
            if have and not resumed and attempt == 0 and response.status == 206:
                part.unlink()  # a range other than the one asked for: start again from zero
                continue
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                part.unlink(missing_ok=True)
                raise VitsegError(f"{url}: the server announces {total} bytes, more than the {limit} this download "
                                  f"may take ({MAX_BYTES_ENV}); nothing was saved")
            _stream(response, part, have, total, url, bounds)
        size = part.stat().st_size
        if total is not None and size != total:
            raise VitsegError(f"{url}: download cut off after {size} of {total} bytes; the partial file {part} is "
                              "kept: run again to resume")
        os.replace(part, dest)
        return


def _range_start(response: http.client.HTTPResponse) -> Optional[int]:
    value = response.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _stream(response, part: Path, have: int, total: Optional[int], url: str, bounds: _Bounds) -> None:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    console = _stderr()
    name = url.rsplit("/", 1)[-1]
    if not console.is_terminal:  # logs get two plain lines instead of a live bar
        console.print(f"downloading {url}" + (f" (resuming at {have} bytes)" if have else ""), soft_wrap=True)
    start, received = time.perf_counter(), 0
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar, \
                open(part, "ab" if have else "wb") as out:
            task = bar.add_task(name, total=total, completed=have)
            while True:
                block = _read_block(response, part, have + received, url, bounds)
                if not block:
                    break
                if have + received + len(block) > bounds.limit:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise VitsegError(f"{url}: the server sent more than the {bounds.limit} bytes this download may "
                                      f"take ({MAX_BYTES_ENV}); nothing was saved")
                out.write(block)
                received += len(block)
                bar.update(task, advance=len(block))
    except OSError as err:  # writing the partial file (disk full, permissions), the flush at close included
        raise VitsegError(f"{part}: cannot write the download ({err.strerror or err}); free some space or set "
                          "VITSEG_HOME to another folder, then run again to resume") from None
    seconds = time.perf_counter() - start
    console.print(f"downloaded {name}: {(have + received) / 1e6:.1f} MB "
                  f"({received / 1e6 / max(seconds, 1e-9):.1f} MB/s)", soft_wrap=True)


def _read_block(response, part: Path, done: int, url: str, bounds: _Bounds) -> bytes:
    """The next bytes the server has sent (read1: a trickle returns what came, so the deadline is checked)."""
    late = VitsegError(f"{url}: the download took longer than {download_timeout():g} s ({TIMEOUT_ENV}) after "
                       f"{done} bytes; the partial file {part} is kept: run again to resume")
    if bounds.left() <= 0:
        raise late
    try:
        return response.read1(CHUNK)
    except (http.client.IncompleteRead, OSError) as err:
        if bounds.left() <= 0:  # the socket timed out at the deadline
            raise late from None
        raise VitsegError(f"{url}: download interrupted after {done} bytes ({type(err).__name__}); the partial file "
                          f"{part} is kept: run again to resume") from None


def _stderr():
    from rich.console import Console

    return Console(stderr=True, markup=False, highlight=False)
