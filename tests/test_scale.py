"""`vitseg predict` at dataset scale: `--shard I/N` (or a Slurm array's task) and `--merge-records`, `--save rle`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from vitseg_cli.cli import app
from vitseg_cli.data.io import read_label, write_image
from vitseg_cli.data.shards import Shard, parse_shard, shard_from_env
from vitseg_cli.errors import VitsegError

from test_predict import image, make_weights

runner = CliRunner()
NAMES = [f"a{i}" for i in range(7)]
# shard I of 3 takes every 3rd of the sorted names from the I-th
SHARES = {0: {"a0", "a3", "a6"}, 1: {"a1", "a4"}, 2: {"a2", "a5"}}


def predict(*args, env=None):
    return runner.invoke(app, ["predict", *map(str, args)], env=env)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    weights = make_weights(root / "nano.safetensors")
    files = []
    for i, name in enumerate(NAMES):
        files.append(root / "src" / f"{name}.png")
        write_image(files[-1], image(40 + 4 * i, 56, seed=i))
    return root, weights, files[::-1][3:] + files[::-1][:3]  # listed out of order: the shards sort by name


def rle_lines(out: Path) -> dict[str, dict]:
    return {line["input"]: line for p in sorted((out / "rle").glob("*.jsonl"))
            for line in map(json.loads, p.read_text().splitlines())}


def test_three_shards_and_a_merge_equal_one_run(setup):
    root, weights, files = setup
    common = ["--weights", weights, "--workers", 0, "--save", "masks,rle", "--quiet"]
    whole = predict(*files, "--out", root / "whole", *common)
    assert whole.exit_code == 0, whole.output
    out = root / "sharded"
    for i in (0, 2):
        result = predict(*files, "--out", out, "--shard", f"{i}/3", *common)
        assert result.exit_code == 0, result.output
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "6"}
    result = predict(*files, "--out", out, *common, env=slurm)  # task 5 of 4..6: shard 1 of 3
    assert result.exit_code == 0, result.output
    assert not (out / "predict.json").exists()
    for i, share in SHARES.items():
        rec = json.loads((out / f"predict-{i}-of-3.json").read_text())
        assert rec["processed"] == len(share) and rec["shard"] == {"index": i, "count": 3}
        assert set(rle_lines(out)) >= share and {p.stem for p in (out / "masks").iterdir()} >= share

    merged = runner.invoke(app, ["predict", "--merge-records", str(out)])
    assert merged.exit_code == 0, merged.output
    rec = json.loads((out / "predict.json").read_text())
    assert (rec["processed"], rec["skipped"], rec["failed"], rec["missing_shards"]) == (7, 0, [], [])
    assert [(s["shard"], s["processed"]) for s in rec["shards"]] == [(0, 3), (1, 2), (2, 2)]
    assert rec["status"] == "done"
    for name in NAMES:
        assert np.array_equal(read_label(out / "masks" / f"{name}.png"),
                              read_label(root / "whole" / "masks" / f"{name}.png"))
    assert rle_lines(out) == rle_lines(root / "whole")

    # another N redoes nothing already written
    for i in range(2):
        again = predict(*files, "--out", out, "--shard", f"{i}/2", *common)
        assert again.exit_code == 0, again.output
        rec = json.loads((out / f"predict-{i}-of-2.json").read_text())
        assert (rec["processed"], rec["skipped"]) == (0, 4 - i)


def test_rle_decodes_to_the_masks(setup):
    root, weights, files = setup
    out = root / "rle"
    result = predict(*files, "--out", out, "--weights", weights, "--workers", 0, "--save", "masks,rle", "--quiet")
    assert result.exit_code == 0, result.output
    lines = rle_lines(out)
    assert sorted(lines) == NAMES and [p.name for p in (out / "rle").iterdir()] == ["0-of-1.jsonl"]
    seen_classes = set()
    for name, line in lines.items():
        mask = read_label(out / "masks" / f"{name}.png")
        assert (line["height"], line["width"]) == mask.shape
        decoded = np.full(mask.shape, 255, np.uint8)
        for cls, rle in line["classes"].items():  # the README's one-liner, class by class
            decoded[mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}) == 1] = int(cls)
        assert np.array_equal(decoded, mask)
        assert set(line["classes"]) == {str(c) for c in np.unique(mask)}
        seen_classes |= set(line["classes"])
    assert len(seen_classes) > 1  # the test sees more than one class


def test_missing_shards_are_named_and_exit_1(tmp_path):
    for i in (0, 3):
        (tmp_path / f"predict-{i}-of-4.json").write_text(json.dumps(
            {"status": "done", "inputs": 2, "processed": 1, "skipped": 1, "frames": 0,
             "failed": [{"path": f"x{i}.png", "error": "bad"}]}))
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / ".x0.png.k1.part").write_bytes(b"torn")  # a killed task's temporary
    result = runner.invoke(app, ["predict", "--merge-records", str(tmp_path)])
    assert not (tmp_path / "masks" / ".x0.png.k1.part").exists()
    assert result.exit_code == 1
    assert "missing shards" in result.output and "predict-1-of-4.json, predict-2-of-4.json" in result.output
    rec = json.loads((tmp_path / "predict.json").read_text())
    assert (rec["processed"], rec["skipped"], len(rec["failed"]), rec["status"]) == (2, 2, 2, "incomplete")
    empty = runner.invoke(app, ["predict", "--merge-records", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "no shard records" in empty.output


def test_slurm_environment_and_shard_text():
    assert shard_from_env({}) is None
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "5"}) == Shard(2, 5)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5",
                           "SLURM_ARRAY_TASK_MAX": "8"}) == Shard(2, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10",
                           "SLURM_ARRAY_TASK_COUNT": "3"}) == Shard(1, 3)
    assert parse_shard("0/1") == Shard(0, 1)
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(VitsegError):
            parse_shard(bad)
    with pytest.raises(VitsegError):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})
