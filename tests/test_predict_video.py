"""`vitseg predict` on video files: the overlay video, per-frame masks equal to predicting the frames as images,
--vid-stride, a corrupt video, and an interrupted video redone on the rerun."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vitseg_cli.data.io import read_label, write_image
from vitseg_cli.engine import predict as predict_engine

from test_predict import image, invoke, make_weights, record

H, W, FPS, FRAMES = 64, 80, 10.0, 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


def make_video(path: Path) -> Path:
    """12 frames of moving blobs, written by OpenCV (mp4v)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    base = image(H, 2 * W)
    for i in range(FRAMES):
        writer.write(np.ascontiguousarray(base[:, 4 * i:4 * i + W]))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    """The frames as OpenCV decodes them (BGR): what predict sees, losslessly kept for the comparison."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_video_gives_an_overlay_video_and_the_masks_of_its_frames(tmp_path, weights):
    video = make_video(tmp_path / "src" / "clip.mp4")
    write_image(tmp_path / "src" / "still.png", image(H, W, seed=3))
    frames = decoded_frames(video)
    assert len(frames) == FRAMES
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(frames):  # PNG is lossless: the same pixels predict gets from the video
        assert cv2.imwrite(str(tmp_path / "frames" / f"{i:06d}.png"), frame)

    out = tmp_path / "out"
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 1, "--save", "masks,overlay")
    assert result.exit_code == 0, result.output
    as_images = tmp_path / "as_images"
    result = invoke(tmp_path / "frames", "--weights", weights, "--out", as_images, "--workers", 0, "--save", "masks")
    assert result.exit_code == 0, result.output

    cap = cv2.VideoCapture(str(out / "video" / "clip.mp4"))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (W, H)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    cap.release()
    assert len(decoded_frames(out / "video" / "clip.mp4")) == FRAMES
    masks = sorted((out / "masks" / "clip").glob("*.png"))
    assert [p.name for p in masks] == [f"{i:06d}.png" for i in range(FRAMES)]
    classes = set()
    for p in masks:
        mask = read_label(p)
        assert mask.shape == (H, W)
        assert np.array_equal(mask, read_label(as_images / "masks" / p.name)), p.name
        classes |= set(np.unique(mask).tolist())
    assert len(classes) > 1  # a constant mask would make the comparison weak
    assert read_label(out / "masks" / "still.png").shape == (H, W)
    rec = record(out)
    assert (rec["processed"], rec["frames"], rec["failed"]) == (2, FRAMES, [])
    assert not [p for p in (out / "video").rglob("*") if ".part" in p.name]

    again = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks,overlay")
    assert again.exit_code == 0 and (record(out)["skipped"], record(out)["processed"]) == (2, 0)


def test_vid_stride_keeps_every_kth_frame(tmp_path, weights):
    make_video(tmp_path / "src" / "clip.mp4")
    out = tmp_path / "out"
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks",
                    "--vid-stride", 5)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "masks" / "clip").glob("*.png")) == ["000000.png", "000005.png",
                                                                          "000010.png"]
    assert len(decoded_frames(out / "video" / "clip.mp4")) == 3
    cap = cv2.VideoCapture(str(out / "video" / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 5, rel=0.01)  # the same duration
    cap.release()
    assert record(out)["frames"] == 3 and record(out)["vid_stride"] == 5


def test_a_corrupt_video_is_reported_and_skipped(tmp_path, weights):
    make_video(tmp_path / "src" / "good.mp4")
    (tmp_path / "src" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (tmp_path / "src" / "empty.avi").write_bytes(b"")
    out = tmp_path / "out"
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks")
    assert result.exit_code == 1, result.output
    assert "broken.mp4" in result.output and "empty.avi" in result.output
    rec = record(out)
    assert sorted(Path(f["path"]).name for f in rec["failed"]) == ["broken.mp4", "empty.avi"]
    assert rec["processed"] == 1 and rec["frames"] == FRAMES
    assert (out / "video" / "good.mp4").exists() and not (out / "video" / "broken.mp4").exists()


def test_an_interrupted_video_is_redone_from_its_start(tmp_path, weights, monkeypatch):
    make_video(tmp_path / "src" / "clip.mp4")
    out = tmp_path / "out"
    real = predict_engine.iter_video_predictions

    def interrupted_after_five(*args, **kwargs):
        for i, pred in enumerate(real(*args, **kwargs)):
            if i == 5:
                raise KeyboardInterrupt
            yield pred

    monkeypatch.setattr(predict_engine, "iter_video_predictions", interrupted_after_five)
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks")
    assert result.exit_code == 130, result.output
    assert not (out / "video" / "clip.mp4").exists()
    assert not [p for p in (out / "video").rglob("*") if ".part" in p.name]
    assert len(list((out / "masks" / "clip").glob("*.png"))) == 5
    (out / "video" / ".clip.part.mp4").write_bytes(b"what a hard kill leaves")

    monkeypatch.setattr(predict_engine, "iter_video_predictions", real)
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks")
    assert result.exit_code == 0, result.output
    rec = record(out)
    assert (rec["processed"], rec["skipped"], rec["frames"]) == (1, 0, FRAMES)
    assert len(decoded_frames(out / "video" / "clip.mp4")) == FRAMES
    assert len(list((out / "masks" / "clip").glob("*.png"))) == FRAMES
    assert not (out / "video" / ".clip.part.mp4").exists()


def test_a_video_and_an_image_in_its_frame_folder_are_refused(tmp_path, weights):
    make_video(tmp_path / "src" / "clip.mp4")
    write_image(tmp_path / "src" / "clip" / "000000.png", image(H, W))
    result = invoke(tmp_path / "src", "--weights", weights, "--out", tmp_path / "out", "--workers", 0)
    assert result.exit_code == 2
    assert "clip.mp4: its frames would be written where" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
