"""Video IO through OpenCV: which files are videos, their frames as RGB (every K-th), and an output video written under
a temporary name and renamed into place once whole, so that a video file that exists is a finished one.

Whatever the local OpenCV build decodes is accepted; a file it cannot open, or that gives no frame, raises
`VitsegError` naming it. Frames damaged mid-stream are passed over (up to a bound) and the video is then reported
as partial. Frames obey VITSEG_MAX_PIXELS as images do. Output videos are MPEG-4 Part 2 (`mp4v`), which every
OpenCV build can write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VitsegError
from .io import check_pixels

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
DEFAULT_FPS = 25.0  # when a file does not say its frame rate


def is_video_path(path: "str | Path") -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # as the container says (0 when unknown; may be approximate)
    fps: float
    width: int
    height: int


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VitsegError(f"{path}: file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VitsegError(f"{path}: not a readable video (corrupt, truncated or unsupported format)")
    return cap


def _info(cap: cv2.VideoCapture) -> VideoInfo:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return VideoInfo(frames=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
                     fps=fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))


def video_info(path: "str | Path") -> VideoInfo:
    cap = _open(Path(path))
    try:
        return _info(cap)
    finally:
        cap.release()


# A run of this many unreadable frames in a row is taken as the end of the stream (OpenCV reports the end and a
# damaged frame alike); more than MAX_BAD_FRAMES in all stops reading: the video is damaged beyond use.
END_RUN = 250
MAX_BAD_FRAMES = 1000
# Containers whose index gives the exact frame count (others, e.g. Matroska, estimate it from the duration)
INDEXED_CONTAINERS = {".avi", ".mp4", ".mov", ".m4v"}


@dataclass
class _Damage:
    bad: list[int]  # the frames that could not be decoded, by index
    tail: int = 0  # unreadable frames since the last good one (the end, unless a good one follows)

    def miss(self, index: int) -> bool:
        """Record an unreadable frame; True when reading should stop."""
        self.tail += 1
        self.bad.append(index)
        return self.tail >= END_RUN or len(self.bad) >= MAX_BAD_FRAMES

    def hit(self) -> None:
        self.tail = 0

    def mid_stream(self) -> list[int]:
        """The unreadable frames with a readable one after them: damage, not the end."""
        return self.bad[:len(self.bad) - self.tail]


def _step(cap: cv2.VideoCapture, decode: bool) -> "tuple[bool, np.ndarray | None]":
    if not decode:
        return cap.grab(), None
    ok, frame = cap.read()
    return ok and frame is not None, frame


def read_frames(path: "str | Path", stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) of every `stride`-th frame, from frame 0; skipped frames are only grabbed
    (not decoded to pixels). Undecodable frames are passed over (a bounded number): after the last readable frame,
    a video with some is a `VitsegError` saying which, so the run reports it as partial. Frames past
    VITSEG_MAX_PIXELS are refused before any is decoded."""
    path = Path(path)
    if stride < 1:
        raise VitsegError(f"--vid-stride {stride}: must be at least 1")
    cap = _open(path)
    index, kept, damage = 0, 0, _Damage([])
    try:
        info = _info(cap)
        check_pixels(path, info.width, info.height)
        while True:
            ok, frame = _step(cap, decode=index % stride == 0)
            if not ok:
                if damage.miss(index):
                    break
            else:
                damage.hit()
                if frame is not None:
                    check_pixels(path, frame.shape[1], frame.shape[0])
                    kept += 1
                    yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
    if kept == 0:
        raise VitsegError(f"{path}: no frame could be decoded (corrupt, truncated or unsupported video)")
    found = index + 1 - damage.tail  # the loop stopped on a miss, before counting it
    _report_damage(path, damage, kept, found, info.frames)


def _report_damage(path: Path, damage: _Damage, kept: int, found: int, listed: int) -> None:
    """A `VitsegError` saying how the video is partial: frames undecodable, reading given up, or fewer frames found
    than an indexed container (AVI, MP4, MOV) lists; nothing when it is whole."""
    bad = damage.mid_stream()
    problems = []
    if bad:
        problems.append(f"{len(bad)} undecodable frame(s) (frame {', '.join(map(str, bad[:5]))}"
                        f"{', ...' if len(bad) > 5 else ''}) passed over")
    if len(damage.bad) >= MAX_BAD_FRAMES:
        problems.append(f"reading stopped after {MAX_BAD_FRAMES} undecodable frames")
    elif listed and found < listed and path.suffix.lower() in INDEXED_CONTAINERS:
        problems.append(f"{found} of the {listed} frames its index lists were found")
    if problems:
        raise VitsegError(f"{path}: partial video: {'; '.join(problems)}; {kept} frame(s) predicted, its overlay "
                          "video is not written and a rerun redoes it")


class VideoOutput:
    """An mp4v video at `path`, written to `.<stem>.part<suffix>` beside it (OpenCV picks the container from the
    extension) and renamed into place by `finish`; `abort` removes the partial file."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.part{self.path.suffix}")
        self.size = (width, height)
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, self.size)
        if not self.writer.isOpened():
            self.writer.release()
            self.tmp.unlink(missing_ok=True)
            raise VitsegError(f"{self.path}: cannot write an mp4v video here")

    def write(self, rgb: np.ndarray) -> None:
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise VitsegError(f"{self.path}: a frame of {rgb.shape[1]}x{rgb.shape[0]} in a "
                              f"{self.size[0]}x{self.size[1]} video")
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def finish(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


def is_partial_video(path: Path) -> bool:
    """A temporary file `VideoOutput` leaves when a run is killed."""
    return path.name.startswith(".") and ".part." in path.name and is_video_path(path)
