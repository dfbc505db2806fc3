"""`vitseg predict` end to end: official parity, bad files, interrupt + resume, odd inputs, names, output formats."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vitseg_cli import build_model, save_model
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_label, write_image
from vitseg_cli.engine import predict as predict_engine
from vitseg_cli.spec import load_spec

from conftest import PARITY

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def make_weights(path: Path, num_classes: int = 6, boost_class: int | None = None, perturb: bool = True) -> Path:
    torch.manual_seed(0)
    model = build_model(load_spec("nano").updated(model={"num_classes": num_classes}))
    with torch.no_grad():
        for p in model.parameters() if perturb else []:
            p.add_(torch.randn_like(p) * 0.05)
        model.decode_head.conv_seg.weight.mul_(50)
        if boost_class is not None:
            model.decode_head.conv_seg.bias[boost_class] = 1e4
    return save_model(model.eval(), path)


@pytest.fixture(scope="module")
def nano_weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 2)


def record(out: Path) -> dict:
    return json.loads((out / "predict.json").read_text())


def no_temporaries(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]


# -------------------------------------------------------------------------------------------------------- parity


def test_official_checkpoint_matches_the_official_pipeline(tmp_path):
    out = tmp_path / "out"
    result = invoke(PARITY / "mini_full_image.png", "--weights", PARITY / "mini_full_checkpoint.pth", "--out", out,
                    "--workers", 0)
    assert result.exit_code == 0, result.output
    mask = read_label(out / "masks" / "mini_full_image.png")
    expected = read_label(PARITY / "mini_full_expected_mask.png")
    assert mask.shape == expected.shape == (450, 600)
    agreement = (mask == expected).mean()
    assert agreement >= 0.999, agreement
    assert cv2.imread(str(out / "color" / "mini_full_image.png")).shape == (450, 600, 3)
    assert cv2.imread(str(out / "overlay" / "mini_full_image.jpg")).shape == (450, 600, 3)
    rec = record(out)
    assert rec["settings"]["mode"] == "slide" and rec["settings"]["resize"]["scale"] == [2048, 512]
    assert rec["processed"] == 1 and rec["failed"] == []


# ---------------------------------------------------------------------------------------------------- bad files


def test_bad_files_are_reported_and_the_rest_is_done(tmp_path, nano_weights):
    src = tmp_path / "src"
    write_image(src / "good.png", image(24, 32))
    write_image(src / "sub" / "good2.jpg", image(30, 20, seed=1))
    (src / "garbage.jpg").write_bytes(b"this is not a jpeg at all")
    (src / "empty.png").write_bytes(b"")
    full = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(full[: len(full) // 3])
    (src / "notes.txt").write_text("not an image, not an input")
    out = tmp_path / "out"
    result = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 1)
    assert result.exit_code == 1, result.output
    for name in ("garbage.jpg", "empty.png", "truncated.png"):
        assert name in result.output
        assert not list(out.rglob(Path(name).stem + ".*"))
    assert "notes.txt" not in result.output
    rec = record(out)
    assert sorted(Path(f["path"]).name for f in rec["failed"]) == ["empty.png", "garbage.jpg", "truncated.png"]
    assert all(f["path"] in f["error"] for f in rec["failed"])
    assert rec["processed"] == 2
    assert read_label(out / "masks" / "good.png").shape == (24, 32)
    assert read_label(out / "masks" / "sub" / "good2.png").shape == (30, 20)
    assert no_temporaries(out / "masks")


# ---------------------------------------------------------------------------------------------- interrupt + resume


def test_an_interrupted_run_leaves_whole_files_and_a_rerun_finishes(tmp_path, nano_weights, monkeypatch):
    src = tmp_path / "src"
    for i in range(5):
        write_image(src / f"img{i}.png", image(20 + i, 28, seed=i))
    out = tmp_path / "out"
    real = predict_engine.iter_predictions

    def interrupted_after_three(*args, **kwargs):
        for i, pred in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt
            yield pred

    monkeypatch.setattr(predict_engine, "iter_predictions", interrupted_after_three)
    result = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0)
    assert result.exit_code == 130, result.output
    masks = sorted(p.name for p in (out / "masks").glob("*.png"))
    assert masks == ["img0.png", "img1.png", "img2.png"]
    for name in masks:  # every image it finished has all its outputs
        assert (out / "color" / name).exists() and (out / "overlay" / name.replace(".png", ".jpg")).exists()
    assert no_temporaries(out / "masks") and no_temporaries(out / "color") and no_temporaries(out / "overlay")
    assert record(out)["status"] == "interrupted"

    (out / "masks" / ".img3.png.x1y2z3.part").write_bytes(b"half")  # what a hard kill can leave
    monkeypatch.setattr(predict_engine, "iter_predictions", real)
    result = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0)
    assert result.exit_code == 0, result.output
    rec = record(out)
    assert (rec["processed"], rec["skipped"], rec["status"]) == (2, 3, "done")
    assert len(list((out / "masks").glob("*.png"))) == 5
    assert no_temporaries(out / "masks")


# ---------------------------------------------------------------------------------------------------- odd inputs


def test_every_odd_input_kind_gives_a_mask_of_the_image_size(tmp_path, nano_weights):
    src = tmp_path / "src"
    src.mkdir()
    rgb = image(24, 40)
    Image.fromarray(rgb[..., 0]).save(src / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((24, 40), 128, np.uint8)])).save(src / "rgba.png")
    cv2.imwrite(str(src / "deep16.png"), (rgb.astype(np.uint16) * 257))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(src / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display; stored 40 wide x 24 high
    Image.fromarray(rgb).save(src / "rotated.jpg", exif=exif)
    write_image(src / "one_pixel.png", rgb[:1, :1])
    write_image(src / "thin.png", image(8, 900))
    write_image(src / "UPPER.JPG", rgb)
    out = tmp_path / "out"
    result = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0, "--save", "masks,color,overlay,probs")
    assert result.exit_code == 0, result.output
    expected = {"gray": (24, 40), "rgba": (24, 40), "deep16": (24, 40), "palette": (24, 40), "rotated": (40, 24),
                "one_pixel": (1, 1), "thin": (8, 900), "UPPER": (24, 40)}
    for stem, shape in expected.items():
        mask = read_label(out / "masks" / f"{stem}.png")
        assert mask.shape == shape, stem
        assert mask.dtype == np.uint8 and mask.max() < 6
        assert cv2.imread(str(out / "color" / f"{stem}.png")).shape == (*shape, 3)
        assert cv2.imread(str(out / "overlay" / f"{stem}.jpg")).shape == (*shape, 3)
        probs = np.load(out / "probs" / f"{stem}.npz")["probs"]
        assert probs.dtype == np.float16 and probs.shape == (6, *shape)
        np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1.0, atol=5e-3)
        clear = np.sort(probs, axis=0)[-1] - np.sort(probs, axis=0)[-2] > 1e-2
        assert np.array_equal(probs.argmax(0)[clear], mask[clear])


def test_masks_are_uint16_past_255_classes(tmp_path):
    weights = make_weights(tmp_path / "many.safetensors", num_classes=300, boost_class=299)
    write_image(tmp_path / "src" / "a.png", image(16, 20))
    out = tmp_path / "out"
    result = invoke(tmp_path / "src", "--weights", weights, "--out", out, "--workers", 0, "--save", "masks,color")
    assert result.exit_code == 0, result.output
    mask = cv2.imread(str(out / "masks" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16 and mask.shape == (16, 20)
    assert (mask == 299).all()


# --------------------------------------------------------------------------------------------- sources and names


def test_sources_globs_lists_and_output_names(tmp_path, nano_weights):
    src = tmp_path / "src"
    write_image(src / "a.jpg", image(16, 16))
    write_image(src / "sub" / "b.png", image(16, 16, seed=2))
    out = src / "results"  # inside the source folder: its files must never become inputs
    result = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0, "--save", "masks")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == \
        ["a.png", "sub/b.png"]
    again = invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0, "--save", "masks")
    assert again.exit_code == 0 and (record(out)["inputs"], record(out)["skipped"]) == (2, 2)

    glob_out = tmp_path / "glob_out"
    result = invoke(str(src / "**" / "b.png"), "--weights", nano_weights, "--out", glob_out, "--workers", 0,
                    "--save", "masks")
    assert result.exit_code == 0, result.output
    assert (glob_out / "masks" / "sub" / "b.png").exists()

    # a list names a file as the command line does: by its file name (as its own folder would)
    listing = src / "list.txt"
    listing.write_text("# images to do\nsub/b.png\n\nmissing.png\n")
    list_out = tmp_path / "list_out"
    result = invoke(listing, "--weights", nano_weights, "--out", list_out, "--workers", 0, "--save", "masks")
    assert result.exit_code == 1 and "missing.png" in result.output
    assert [p.name for p in (list_out / "masks").rglob("*.png")] == ["b.png"]
    folder_out = tmp_path / "folder_out"
    assert invoke(src / "sub", "--weights", nano_weights, "--out", folder_out, "--workers", 0,
                  "--save", "masks").exit_code == 0
    assert (read_label(folder_out / "masks" / "b.png") == read_label(list_out / "masks" / "b.png")).all()


def test_an_output_name_never_depends_on_the_neighbours(tmp_path, nano_weights):
    """img.png alone is masks/img.png; an img.jpg beside it does not rename it (the pair is refused instead)."""
    src = tmp_path / "src"
    write_image(src / "img.png", image(16, 16))
    out = tmp_path / "out"
    assert invoke(src, "--weights", nano_weights, "--out", out, "--workers", 0, "--save", "masks").exit_code == 0
    assert [p.name for p in (out / "masks").iterdir()] == ["img.png"]
    write_image(src / "img.jpg", image(16, 16, seed=1))
    refused = invoke(src, "--weights", nano_weights, "--out", tmp_path / "out2", "--workers", 0, "--save", "masks")
    assert refused.exit_code == 2
    line = " ".join(refused.output.split())
    assert "img.jpg" in line and "img.png" in line and "would both be written as img" in line
    assert not (tmp_path / "out2" / "masks").exists()


def test_user_errors_are_one_line(tmp_path, nano_weights, monkeypatch):
    result = invoke(tmp_path / "nowhere", "--weights", nano_weights, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "nowhere: no such file or folder" in result.output
    write_image(tmp_path / "x.png", image(8, 8))
    result = invoke(tmp_path / "x.png", "--weights", nano_weights, "--save", "masks,gif", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "gif" in result.output
    monkeypatch.setattr(predict_engine, "default_weights_path", lambda: tmp_path / "none.safetensors")
    from vitseg_cli.engine import common

    monkeypatch.setattr(common, "default_weights_path", lambda: tmp_path / "none.safetensors")
    result = invoke(tmp_path / "x.png", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "no default model is shipped yet: pass --weights" in result.output
    if not torch.cuda.is_available():
        result = invoke(tmp_path / "x.png", "--weights", nano_weights, "--device", "cuda", "--out", tmp_path / "o")
        assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert not (tmp_path / "o" / "masks").exists()


def test_onnx_backend_gives_the_torch_masks(tmp_path):
    pytest.importorskip("onnxruntime")
    from vitseg_cli import load_model
    from vitseg_cli.engine.export import export_onnx

    # unperturbed weights: with every weight perturbed the exported graph itself drifts from torch (export's matter)
    nano_weights = make_weights(tmp_path / "plain.safetensors", perturb=False)
    onnx_path = tmp_path / "nano.onnx"
    export_onnx(load_model(nano_weights), onnx_path, height=32, width=32)
    write_image(tmp_path / "src" / "a.png", image(40, 56))
    common = ["--workers", 0, "--save", "masks", "--mode", "slide", "--crop-size", 32, "--stride", 24]
    torch_run = invoke(tmp_path / "src", "--weights", nano_weights, "--out", tmp_path / "t", *common,
                       "--save", "masks,probs")
    onnx_run = invoke(tmp_path / "src", "--weights", onnx_path, "--backend", "onnx", "--out", tmp_path / "o", *common)
    assert torch_run.exit_code == 0 and onnx_run.exit_code == 0, onnx_run.output
    a, b = read_label(tmp_path / "t" / "masks" / "a.png"), read_label(tmp_path / "o" / "masks" / "a.png")
    probs = np.sort(np.load(tmp_path / "t" / "probs" / "a.npz")["probs"].astype(np.float32), axis=0)
    clear = probs[-1] - probs[-2] > 0.1  # the exported graph differs from torch by ~0.1 in logits: skip near-ties
    assert a.shape == b.shape == (40, 56) and clear.mean() > 0.1
    assert (a == b)[clear].mean() > 0.99
    half = invoke(tmp_path / "src", "--weights", onnx_path, "--backend", "onnx", "--half", "--out", tmp_path / "h")
    assert half.exit_code == 2 and "--half is for --backend torch" in half.output
    comp = invoke(tmp_path / "src", "--weights", onnx_path, "--backend", "onnx", "--compile", "--out", tmp_path / "h")
    assert comp.exit_code == 2 and "--compile is for --backend torch" in comp.output
    assert not (tmp_path / "h").exists()


def test_compile_wraps_the_model_once_and_keeps_the_masks(tmp_path, nano_weights, monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):  # a real compile takes minutes on this CPU; the wiring is what is tested
        compiled.append((type(model).__name__, kwargs))
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    for i in range(2):
        write_image(tmp_path / "src" / f"{i}.png", image(40, 56, seed=i))
    common = ["--weights", nano_weights, "--workers", 0, "--save", "masks", "--device", "cpu"]
    assert invoke(tmp_path / "src", "--out", tmp_path / "plain", *common).exit_code == 0
    assert compiled == []
    res = invoke(tmp_path / "src", "--out", tmp_path / "comp", "--compile", *common)
    assert res.exit_code == 0, res.output
    assert compiled == [("Segmentor", {"dynamic": False})]
    assert record(tmp_path / "comp")["settings"]["compile"] is True
    for i in range(2):
        assert np.array_equal(read_label(tmp_path / "plain" / "masks" / f"{i}.png"),
                              read_label(tmp_path / "comp" / "masks" / f"{i}.png"))


def test_half_on_a_device_without_half_precision_fails_before_writing(tmp_path, nano_weights, monkeypatch):
    from vitseg_cli.engine import inference
    from vitseg_cli.errors import VitsegError

    def no_half(device):
        raise VitsegError(f"--half: no native half precision on {device.type} here")

    monkeypatch.setattr(inference, "half_dtype", no_half)
    write_image(tmp_path / "src" / "a.png", image(40, 56))
    res = invoke(tmp_path / "src", "--weights", nano_weights, "--half", "--device", "cpu", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--half: no native half precision on cpu" in res.output
    assert not (tmp_path / "o").exists()
