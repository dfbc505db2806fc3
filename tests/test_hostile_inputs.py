"""Hostile input files: an image header before its content, a video damaged mid-stream, an image whose overlay no
format can hold, PIL images of 16 bits or floats, file names that are not UTF-8."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vitseg_cli.data import io
from vitseg_cli.data.io import read_image, write_image
from vitseg_cli.data.video import read_frames
from vitseg_cli.errors import VitsegError

from test_predict import image, invoke, make_weights

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


def record(out: Path) -> dict:
    return json.loads((out / "predict.json").read_text())


# ----------------------------------------------------------------------------------- the header before the content


def test_a_small_header_before_a_huge_file_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "tiny.png"
    write_image(path, image(32, 32))
    assert read_image(path).shape == (32, 32, 3)
    with open(path, "ab") as f:  # 40 MB of junk after the PNG's end: decoders stop at IEND, the bytes stay
        f.truncate(path.stat().st_size + 40_000_000)

    def no_read(*args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(np, "fromfile", no_read)
    with pytest.raises(VitsegError, match=r"tiny.png: 40\d+ bytes behind a 32x32 image header"):
        read_image(path)
    with pytest.raises(VitsegError, match="behind a 32x32 image header"):
        io.read_label(path)


def test_an_image_with_ordinary_metadata_is_still_read(tmp_path):
    path = tmp_path / "exif.jpg"
    write_image(path, image(16, 16))
    data = path.read_bytes()
    app1 = b"\xff\xe1" + (65533).to_bytes(2, "big") + b"Exif\0\0" + bytes(65527)  # one full APP1 segment
    path.write_bytes(data[:2] + app1 + data[2:])  # 64 KB of metadata on 256 pixels: far below the allowance
    assert read_image(path).shape == (16, 16, 3)


# --------------------------------------------------------------------------------------------- a damaged video

H, W, FRAMES = 48, 64, 30


def make_video(path: Path, fourcc: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
    assert writer.isOpened()
    base = image(H, 2 * W)
    for i in range(FRAMES):
        writer.write(np.ascontiguousarray(base[:, 2 * i:2 * i + W]))
    writer.release()
    return path


def damage(path: Path, where: float = 0.4) -> None:
    """Overwrite 1/25 of the file with noise, 40% in: inside the frames, before the index an MP4 keeps at its end."""
    data = bytearray(path.read_bytes())
    start, n = int(len(data) * where), len(data) // 25
    data[start:start + n] = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, fourcc", [("clip.avi", "MJPG"), ("clip.mp4", "mp4v")])  # OpenCV: AVI drops the
# damaged frames from its index (fewer frames found), MP4 keeps them and fails to decode them
def test_a_video_damaged_mid_stream_is_read_past_and_reported_partial(tmp_path, weights, name, fourcc):
    video = make_video(tmp_path / "src" / name, fourcc)
    assert len(list(read_frames(video))) == FRAMES
    damage(video)
    got = []
    with pytest.raises(VitsegError, match="partial video: .*(undecodable frame|of the 30 frames its index lists)"):
        for index, frame in read_frames(video):
            got.append(index)
    assert got and max(got) > got[0] + len(got) // 2  # frames after the damage were read too

    out = tmp_path / "out"
    for _ in range(2):  # not skipped on the rerun as if complete
        res = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--device", "cpu")
        assert res.exit_code == 1, res.output
        rec = record(out)
        assert rec["processed"] == 0 and rec["skipped"] == 0
        assert [f["path"] for f in rec["failed"]] == [str(video)] and "partial video" in rec["failed"][0]["error"]
        assert not (out / "video" / (Path(name).stem + ".mp4")).exists()
        masks = sorted(p.stem for p in (out / "masks" / Path(name).stem).glob("*.png"))
        assert masks == [f"{i:06d}" for i in got]  # the frames that decoded keep their masks


def test_video_frames_obey_the_pixel_limit(tmp_path, monkeypatch):
    video = make_video(tmp_path / "clip.mp4", "mp4v")
    monkeypatch.setenv("VITSEG_MAX_PIXELS", str(H * W - 1))
    with pytest.raises(VitsegError, match=f"clip.mp4: {W}x{H} image is larger than the {H * W - 1} pixel limit"):
        next(read_frames(video))


# ------------------------------------------------------------------------------------- an overlay no format holds


def test_jpeg_side_limit_is_opencvs():
    paths = [Path("o/x.jpg")]
    assert io.encoding_problem(paths, 1, 65500) is None and cv2.imencode(".jpg", np.zeros((1, 65500), np.uint8))[0]
    assert "cannot be encoded as .jpg" in io.encoding_problem(paths, 1, 65501)
    assert not cv2.imencode(".jpg", np.zeros((1, 65501), np.uint8))[0]
    assert io.encoding_problem([Path("o/x.png")], 1, 100000) is None


def test_an_image_whose_overlay_cannot_be_encoded_is_reported_and_skipped(tmp_path, weights, monkeypatch):
    # a 1x100000 image takes half a minute to segment: the same case at a lowered JPEG limit (checked just above)
    monkeypatch.setitem(io.MAX_ENCODED_SIDE, ".jpg", 300)
    src = tmp_path / "src"
    write_image(src / "a_long.png", image(1, 400)[:1])
    write_image(src / "b_ok.png", image(32, 48))
    out = tmp_path / "out"
    for _ in range(2):  # the rerun does not stop the same way either
        res = invoke(src, "--weights", weights, "--out", out, "--workers", 0, "--device", "cpu",
                     "--save", "masks,overlay")
        assert res.exit_code == 1, res.output
        rec = record(out)
        assert [f["path"] for f in rec["failed"]] == [str(src / "a_long.png")]
        assert "400x1 image cannot be encoded as .jpg" in rec["failed"][0]["error"] and rec["status"] == "done"
        assert (out / "overlay" / "b_ok.jpg").is_file() and not (out / "masks" / "a_long.png").exists()
    assert rec["skipped"] == 1


# ------------------------------------------------------------------------------------- PIL 16-bit and float images


@pytest.fixture(scope="module")
def model(weights):
    from vitseg_cli import load_model

    return load_model(weights)


def test_a_16_bit_pil_image_is_read_as_its_file(tmp_path, model):
    from vitseg_cli import predict

    grey = (np.arange(40 * 56).reshape(40, 56) * 29 % 65536).astype(np.uint16)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), grey)
    expected = np.repeat(np.floor(grey / 257.0 + 0.5).astype(np.uint8)[..., None], 3, axis=2)  # by hand
    assert np.array_equal(read_image(path), expected)
    by_path = predict(model, path)
    for pil in (Image.open(path), Image.open(path).convert("I")):
        assert pil.mode in ("I;16", "I")
        result = predict(model, pil)
        assert np.array_equal(result.image, expected), pil.mode
        assert np.array_equal(result.labels, by_path.labels), pil.mode


def test_a_float_pil_image_is_scaled_from_0_1_or_refused(model):
    from vitseg_cli import predict

    values = np.linspace(0.0, 1.0, 32 * 40, dtype=np.float32).reshape(32, 40)
    result = predict(model, Image.fromarray(values))
    assert np.array_equal(result.image[..., 1], np.floor(values * 255.0 + 0.5).astype(np.uint8))
    with pytest.raises(VitsegError, match=r"mode 'F' image must hold values in 0..1.*found 0..300"):
        predict(model, Image.fromarray(values * 300))
    with pytest.raises(VitsegError, match=r"mode 'I' image must hold 16-bit values.*found -5"):
        predict(model, Image.fromarray((values * 10 - 5).astype(np.int32)))


# ------------------------------------------------------------------------------------------ non-UTF-8 file names

RAW_NAME = b"caf\xe9"  # Latin-1, not UTF-8: Python holds it as 'caf\udce9'


@pytest.fixture
def latin1_files(tmp_path) -> Path:
    import os

    name = os.fsdecode(RAW_NAME)
    labels = (np.arange(32 * 48).reshape(32, 48) % 3).astype(np.uint8)
    try:
        for folder in ("pred", "gt"):
            write_image(tmp_path / folder / f"{name}.png", labels)
        write_image(tmp_path / "img" / f"{name}.png", image(32, 48))
    except (VitsegError, OSError):
        pytest.skip("this file system refuses non-UTF-8 names")
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c]\n")
    return tmp_path


def test_eval_writes_its_reports_for_a_non_utf8_file_name(latin1_files):
    from typer.testing import CliRunner

    from vitseg_cli.cli import app

    root = latin1_files
    res = CliRunner().invoke(app, ["eval", "--pred", str(root / "pred"), "--gt", str(root / "gt"), "--out",
                                   str(root / "rep"), "--num-classes", "3"])
    assert res.exit_code == 0, res.output
    assert RAW_NAME + b",1.000000" in (root / "rep" / "per_image.csv").read_bytes()  # the file's own bytes
    assert "| caf\\xe9 | 100.00 | 100.00 |" in (root / "rep" / "report.md").read_text(encoding="utf-8")


def test_visualize_gallery_draws_a_non_utf8_file_name(latin1_files):
    import os
    import subprocess
    import sys

    root = latin1_files
    # a child process: OpenCV crashed (SIGSEGV) drawing such a name, which would take pytest down with it
    res = subprocess.run([sys.executable, "-m", "vitseg_cli", "visualize", str(root / "img"), "--masks",
                          str(root / "pred"), "--gt", str(root / "gt"), "--out", str(root / "vis"), "--gallery",
                          "--classes", str(root / "classes.yaml"), "--quiet"], capture_output=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert (root / "vis" / "panels" / os.fsdecode(RAW_NAME + b".jpg")).is_file()
    page = (root / "vis" / "index.html").read_text(encoding="utf-8")
    assert 'href="panels/caf%E9.jpg"' in page and "<figcaption>caf\\xe9<br>" in page
