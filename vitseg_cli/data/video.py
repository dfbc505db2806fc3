"""Video IO through OpenCV: which files are videos, their frames as RGB (every K-th), and an output video written under
a temporary name and renamed into place once whole, so that a video file that exists is a finished one.

Whatever the local OpenCV build decodes is accepted; a file it cannot open, or that gives no frame, raises
`VitsegError` naming it. Output videos are MPEG-4 Part 2 (`mp4v`), which every OpenCV build can write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..errors import VitsegError

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


def read_frames(path: "str | Path", stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8 frame) of every `stride`-th frame, from frame 0; skipped frames are only grabbed
    (not decoded to pixels). The video ends at the first frame that cannot be read."""
    path = Path(path)
    if stride < 1:
        raise VitsegError(f"--vid-stride {stride}: must be at least 1")
    cap = _open(path)
    index, kept = 0, 0
    try:
        while True:
            if index % stride:
                if not cap.grab():
                    break
            else:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                kept += 1
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
    if kept == 0:
        raise VitsegError(f"{path}: no frame could be decoded (corrupt, truncated or unsupported video)")


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
