"""The Python API for volume: `load_model()` (the shipped model, device 'auto'), calling the model on an image,
`model.predict` over lists, generators and folders (lazily with stream=True), and the result's formats (to_json,
areas, to_rle, polygons, a short repr), checked against hand-made label maps."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import vitseg_cli
from vitseg_cli import load_model, predict
from vitseg_cli.data.io import write_image
from vitseg_cli.engine.outputs import Prediction
from vitseg_cli.errors import VitsegError
from vitseg_cli.loading import save_model
from vitseg_cli.model.segmentor import build_model
from vitseg_cli.spec import load_spec

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = Path(vitseg_cli.__file__).resolve().parent / "weights" / "default.safetensors"


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    """A nano model whose test runs whole at the image's own size (fast), and three 48x64 images on disk."""
    root = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    spec = load_spec("nano").updated(test={"mode": "whole", "resize": None}, data={"classes": list("abcdef")})
    path = root / "nano.safetensors"
    save_model(build_model(spec), path)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    folder = root / "images"
    for i, image in enumerate(images):
        write_image(folder / f"{i}.png", image)
    return load_model(path, device="cpu"), images, folder


# ------------------------------------------------------------------------------------------------ load_model


def test_load_model_with_no_name_or_default_is_the_shipped_model_on_auto():
    for model in (load_model(), load_model("default")):
        assert isinstance(model, torch.nn.Module) and isinstance(model, vitseg_cli.SegmentationModel)
        assert model.num_classes == 6 and "synthetic shapes" in model.load_notes[0]
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert next(model.parameters()).device.type == expected
    reference = vitseg_cli.loading.load_model(SHIPPED, device="cpu")
    for (key, a), b in zip(reference.state_dict().items(), load_model("default", device="cpu").state_dict().values()):
        assert torch.equal(a, b), key
    for fn in (vitseg_cli.load_model, vitseg_cli.loading.load_model):
        assert inspect.signature(fn).parameters["device"].default == "auto"


# ------------------------------------------------------------------------------------------- calling the model


def test_calling_the_model_on_an_image_or_a_tensor(nano):
    model, images, folder = nano
    by_path = model(folder / "0.png")
    assert isinstance(by_path, Prediction) and by_path.path == folder / "0.png"
    np.testing.assert_array_equal(by_path.labels, predict(model, images[0]).labels)
    np.testing.assert_array_equal(model(str(folder / "0.png")).labels, model(images[0]).labels)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 6, 8, 8) and torch.equal(out, model.forward(x))  # the plain forward
    with pytest.raises(TypeError, match="takes a normalized .* tensor .* or one image"):
        model(3.0)
    plain = build_model(model.spec)
    with pytest.raises(TypeError, match="vitseg_cli.predict"):  # a bare Segmentor: a clear error, not AttributeError
        plain(str(folder / "0.png"))


# ------------------------------------------------------------------------------------------------- predict


def test_predict_takes_lists_generators_folders_and_batches(nano):
    model, images, folder = nano
    one_by_one = [predict(model, image).labels for image in images]
    as_list = model.predict(images)
    assert isinstance(as_list, list) and len(as_list) == 3
    from_folder = model.predict(folder, batch_size=3)
    assert [r.path.name for r in from_folder] == ["0.png", "1.png", "2.png"]
    from_generator = list(model.predict((image for image in images), batch_size=2, stream=True))
    stacked = model.predict(np.stack(images))  # (N, H, W, 3): N images
    for results in (as_list, from_folder, from_generator, stacked):
        for expected, result in zip(one_by_one, results):
            assert (result.labels == expected).mean() > 0.999  # batched passes may differ in the last bits
            assert result.class_names == list("abcdef")
    assert model.predict([str(folder / "1.png")])[0].path == folder / "1.png"


def test_stream_takes_images_only_as_results_are_taken(nano):
    model, images, _ = nano
    taken = []

    def source():
        for i in range(100):
            taken.append(i)
            yield images[i % 3]

    results = model.predict(source(), stream=True)
    assert taken == []  # nothing read before the first result is asked for
    first = next(results)
    assert first.labels.shape == (48, 64) and len(taken) <= 2
    next(results)
    assert len(taken) <= 3
    results.close()


def test_unreadable_files_raise_naming_them_or_are_kept(nano, tmp_path):
    model, images, folder = nano
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(VitsegError, match="broken.png"):
        model.predict([images[0], broken])
    kept = model.predict([images[0], broken, images[1]], keep_errors=True)
    assert [r.ok for r in kept] == [True, False, True] and "broken.png" in kept[1].error
    assert kept[1].path == broken
    for bad in (torch.zeros(3, 8, 8), 42, [42]):
        with pytest.raises(VitsegError, match="predict"):
            model.predict(bad)
    with pytest.raises(VitsegError, match="got int"):  # a stream refuses a wrong source at once, not when read
        model.predict(42, stream=True)
    with pytest.raises(TypeError, match="unknown inference options: colour"):
        model.predict(images, stream=True, colour=True)


# ---------------------------------------------------------------------------------------------- the result


def _result() -> Prediction:
    labels = np.zeros((10, 12), np.uint8)
    labels[2:6, 3:6] = 2  # a 4x3 block of class 2: 12 pixels
    labels[8:, :] = 5  # two rows of class 5: 24 pixels
    return Prediction(labels=labels, path=Path("street.png"), class_names=["road", "car", "tree", "sky", "x", "y"])


def test_areas_by_hand():
    result = _result()
    assert result.areas() == {"road": 120 - 12 - 24, "tree": 12, "y": 24}
    assert result.areas(fraction=True) == {"road": 84 / 120, "tree": 12 / 120, "y": 24 / 120}


def test_rle_decodes_to_each_class_mask():
    result = _result()
    rles = result.to_rle()
    assert list(rles) == ["road", "tree", "y"]
    for name, index in (("road", 0), ("tree", 2), ("y", 5)):
        rle = rles[name]
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded, (result.labels == index).astype(np.uint8))


def test_polygons_are_the_outlines_in_xy():
    polygons = _result().polygons()
    assert len(polygons["tree"]) == 1 and set(polygons["tree"][0]) == {(3, 2), (5, 2), (5, 5), (3, 5)}
    assert set(polygons["y"][0]) == {(0, 8), (11, 8), (11, 9), (0, 9)}
    assert all(isinstance(x, int) and isinstance(y, int) for x, y in polygons["tree"][0])


def test_to_json_and_a_short_repr():
    result = _result()
    data = json.loads(result.to_json())
    assert data["path"] == "street.png" and data["size"] == [10, 12]
    assert data["classes"] == [{"id": 0, "name": "road", "pixels": 84, "fraction": 0.7},
                               {"id": 2, "name": "tree", "pixels": 12, "fraction": 0.1},
                               {"id": 5, "name": "y", "pixels": 24, "fraction": 0.2}]
    with_rle = json.loads(result.to_json(rle=True))
    assert with_rle["classes"][1]["rle"] == result.to_rle()["tree"]
    failed = Prediction(labels=None, path=Path("bad.png"), error="bad.png: not a readable image")
    assert json.loads(failed.to_json()) == {"path": "bad.png", "error": "bad.png: not a readable image"}
    text = repr(result)
    assert text == "Prediction(path='street.png', 12x10, 3 classes: road 70%, y 20%, tree 10%)"
    assert "\n" not in repr(Prediction(labels=np.zeros((500, 500), np.uint8), probs=np.zeros((2, 500, 500)),
                                       class_names=["a", "b"]))
