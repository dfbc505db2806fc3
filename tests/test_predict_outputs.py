"""Every predict output tied to its input: the manifest, the input identity (another source's outputs refused, a
changed input redone), the default folder's auto-increment, --json, kinds added to a finished run from its masks,
refusals before the model loads, and --overwrite that never removes what vitseg did not write."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from vitseg_cli.data.io import read_image, read_label, write_image
from vitseg_cli.engine import predict as predict_engine
from vitseg_cli.loading import read_spec

from test_predict import image, invoke, make_weights, record

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ["--workers", 0, "--device", "cpu"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return make_weights(tmp_path_factory.mktemp("weights") / "nano.safetensors")


def images(folder: Path, n: int, seed: int = 0, size=(20, 24)) -> Path:
    for i in range(n):
        write_image(folder / f"{i:05d}.png", image(*size, seed=seed + i))
    return folder


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("manifest*.jsonl")) for line in p.read_text().splitlines()]


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return " ".join(output.split())


def no_model(monkeypatch):
    """Loading the model (or reading the spec) fails the test: what runs must not need it."""
    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(predict_engine, "_load_backend", refuse)


def test_the_manifest_has_one_line_per_image_with_identity_outputs_and_scores(tmp_path, weights):
    src = images(tmp_path / "ds" / "images", 3)
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = invoke(src, "--weights", weights, "--out", out, *FAST)
    assert result.exit_code == 1, result.output
    lines = {line["name"]: line for line in manifest(out)}
    assert sorted(lines) == ["00000", "00001", "00002", "broken"]
    assert [p.name for p in out.glob("manifest*.jsonl")] == ["manifest.jsonl"]
    line = lines["00001"]
    stat = os.stat(src / "00001.png")
    assert line["identity"] == {"path": "00001.png", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    assert line["root"] == str(src.resolve()) and line["status"] == "ok" and line["error"] is None
    assert line["outputs"] == {"masks": "masks/00001.png", "color": "color/00001.png",
                               "overlay": "overlay/00001.jpg"}
    labels = read_label(out / "masks" / "00001.png")
    names = read_spec(weights).class_names
    expected = {names[c]: round(float((labels == c).mean()), 6) for c in np.unique(labels)}
    assert line["classes"] == pytest.approx(expected, abs=1e-6)
    assert 1 / 6 <= line["top1_min"] <= line["top1_mean"] <= 1.0
    assert lines["broken"]["status"] == "failed" and "broken.png" in lines["broken"]["error"]
    assert lines["broken"]["outputs"] == {}


def test_top1_probability_matches_the_saved_probabilities(tmp_path, weights):
    src = images(tmp_path / "src", 1)
    out = tmp_path / "out"
    assert invoke(src, "--weights", weights, "--out", out, "--save", "masks,probs", *FAST).exit_code == 0
    probs = np.load(out / "probs" / "00000.npz")["probs"].astype(np.float64)
    (line,) = manifest(out)
    top1 = probs.max(0)[::4]  # every 4th row, from the first
    assert line["top1_mean"] == pytest.approx(top1.mean(), abs=2e-3)  # probs are stored as float16
    assert line["top1_min"] == pytest.approx(top1.min(), abs=2e-3)
    # without probs the one-pass path takes exp(max - logsumexp) of the logits: the same numbers
    plain = tmp_path / "plain"
    assert invoke(src, "--weights", weights, "--out", plain, "--save", "masks", *FAST).exit_code == 0
    (line,) = manifest(plain)
    assert (line["top1_mean"], line["top1_min"]) == pytest.approx((top1.mean(), top1.min()), abs=2e-3)


def test_another_sources_outputs_are_refused_and_a_changed_input_is_redone(tmp_path, weights, monkeypatch):
    ds, other = images(tmp_path / "ds" / "images", 2), images(tmp_path / "other" / "images", 2, seed=10)
    out = tmp_path / "o"
    assert invoke(ds, "--weights", weights, "--out", out, "--save", "masks", *FAST).exit_code == 0
    before = read_label(out / "masks" / "00000.png")
    with monkeypatch.context() as m:
        no_model(m)
        refused = invoke(other, "--weights", weights, "--out", out, "--save", "masks", *FAST)
    assert refused.exit_code == 2
    line = one_line(refused.output)
    assert "another source" in line and str(ds / "00000.png") in line and str(other / "00000.png") in line
    assert "--overwrite" in line
    assert (read_label(out / "masks" / "00000.png") == before).all() and record(out)["sources"] == [str(ds)]

    replaced = invoke(other, "--weights", weights, "--out", out, "--save", "masks", "--overwrite", *FAST)
    assert replaced.exit_code == 0, replaced.output
    single = tmp_path / "single"
    assert invoke(other / "00000.png", "--weights", weights, "--out", single, "--save", "masks",
                  *FAST).exit_code == 0
    assert (read_label(out / "masks" / "00000.png") == read_label(single / "masks" / "00000.png")).all()
    assert {line["root"] for line in manifest(out)} == {str(other.resolve())}  # the old run's lines went with it

    write_image(other / "00001.png", image(20, 24, seed=99))  # the same name, another file, the same root
    os.utime(other / "00001.png", ns=(1, 1))
    rerun = invoke(other, "--weights", weights, "--out", out, "--save", "masks", *FAST)
    assert rerun.exit_code == 0, rerun.output
    assert "changed since their outputs were made" in rerun.output and "00001" in rerun.output
    assert (record(out)["processed"], record(out)["skipped"]) == (1, 1)


def test_the_default_out_increments_instead_of_mixing_two_sources(tmp_path, weights, monkeypatch):
    cam1, cam2 = images(tmp_path / "cam1", 2), images(tmp_path / "cam2", 2, seed=5)
    monkeypatch.chdir(tmp_path)
    assert invoke(cam1, "--weights", weights, "--save", "masks", *FAST).exit_code == 0
    second = invoke(cam2, "--weights", weights, "--save", "masks", *FAST)
    assert second.exit_code == 0, second.output
    assert "writing to vitseg-out2" in second.output
    assert {line["root"] for line in manifest(tmp_path / "vitseg-out")} == {str(cam1.resolve())}
    assert {line["root"] for line in manifest(tmp_path / "vitseg-out2")} == {str(cam2.resolve())}
    again = invoke(cam1, "--weights", weights, "--save", "masks", *FAST)  # resumes its own folder
    assert again.exit_code == 0 and record(tmp_path / "vitseg-out")["skipped"] == 2
    # a given --out is never replaced by another
    refused = invoke(cam2, "--weights", weights, "--save", "masks", "--out", "vitseg-out", *FAST)
    assert refused.exit_code == 2 and not (tmp_path / "vitseg-out3").exists()


def test_json_prints_only_manifest_lines_on_stdout(tmp_path, weights):
    src = images(tmp_path / "src", 3)
    out = tmp_path / "out"
    result = invoke(src, "--weights", weights, "--out", out, "--save", "masks", "--json", *FAST)
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(p["name"] for p in printed) == ["00000", "00001", "00002"]
    assert sorted(printed, key=lambda p: p["name"]) == sorted(manifest(out), key=lambda p: p["name"])
    assert "processed 3" in result.stderr


def test_kinds_are_added_to_a_finished_run_from_its_masks_without_the_model(tmp_path, weights, monkeypatch):
    src = images(tmp_path / "src", 3)
    out = tmp_path / "out"
    assert invoke(src, "--weights", weights, "--out", out, "--save", "masks", *FAST).exit_code == 0
    masks = {p.name: p.read_bytes() for p in (out / "masks").iterdir()}
    with monkeypatch.context() as m:
        no_model(m)
        added = invoke(src, "--weights", weights, "--out", out, "--save", "masks,color,overlay", *FAST)
    assert added.exit_code == 0, added.output
    rec = record(out)
    assert (rec["derived"], rec["processed"], rec["skipped"]) == (3, 0, 0)
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == masks  # not redone
    reference = tmp_path / "reference"
    assert invoke(src, "--weights", weights, "--out", reference, *FAST).exit_code == 0
    for i in range(3):
        name = f"{i:05d}"
        labels = read_label(out / "masks" / f"{name}.png")
        assert (read_image(out / "color" / f"{name}.png") == read_image(reference / "color" / f"{name}.png")).all()
        assert np.abs(read_image(out / "overlay" / f"{name}.jpg").astype(int)
                      - read_image(reference / "overlay" / f"{name}.jpg").astype(int)).max() <= 2
        assert labels.shape == (20, 24)
    newest = {line["name"]: line for line in manifest(out)}
    assert newest["00000"]["outputs"] == {"masks": "masks/00000.png", "color": "color/00000.png",
                                          "overlay": "overlay/00000.jpg"}
    # probabilities cannot come from a mask: only the images missing them are predicted again
    probs = invoke(src, "--weights", weights, "--out", out, "--save", "masks,probs", *FAST)
    assert probs.exit_code == 0 and record(out)["processed"] == 3
    assert set(newest := {line["name"]: line for line in manifest(out)}["00002"]["outputs"]) == \
        {"masks", "probs", "color", "overlay"}
    with monkeypatch.context() as m:
        no_model(m)
        done = invoke(src, "--weights", weights, "--out", out, "--save", "masks,probs,color", *FAST)
    assert done.exit_code == 0 and record(out)["skipped"] == 3


def test_a_refused_rerun_never_loads_the_model(tmp_path, weights, monkeypatch):
    src = images(tmp_path / "src", 1)
    out = tmp_path / "out"
    assert invoke(src, "--weights", weights, "--out", out, "--save", "masks", *FAST).exit_code == 0
    no_model(monkeypatch)
    refused = invoke(src, "--weights", weights, "--out", out, "--save", "masks", "--flip", *FAST)
    assert refused.exit_code == 2 and "settings.flip false -> true" in one_line(refused.output)
    done = invoke(src, "--weights", weights, "--out", out, "--save", "masks", *FAST)  # nothing to do: no model
    assert done.exit_code == 0 and record(out)["skipped"] == 1


def test_overwrite_never_removes_a_datasets_own_masks(tmp_path, weights):
    dataset = tmp_path / "DATASET"
    images(dataset / "images", 2)
    for i in range(2):
        write_image(dataset / "masks" / f"{i:05d}.png", np.full((20, 24), 3, np.uint8))  # ground truth
    other = images(tmp_path / "OTHER" / "images", 2, seed=7)
    for extra in ([], ["--overwrite"]):
        result = invoke(other, "--weights", weights, "--out", dataset, *extra, *FAST)
        assert result.exit_code == 2
        line = one_line(result.output)
        assert "masks/" in line and "no vitseg run wrote" in line and "another --out" in line
        assert all((read_label(dataset / "masks" / f"{i:05d}.png") == 3).all() for i in range(2))
    assert not (dataset / ".vitseg-run.json").exists() and not list(dataset.glob(".vitseg-predict*"))


def test_identity_hash_ignores_a_touch_that_stat_identity_redoes(tmp_path, weights):
    src = images(tmp_path / "src", 2)
    for mode, redone in (("stat", 1), ("hash", 0)):
        out = tmp_path / f"out_{mode}"
        assert invoke(src, "--weights", weights, "--out", out, "--save", "masks", "--identity", mode,
                      *FAST).exit_code == 0
        if mode == "hash":
            digest = hashlib.sha256((src / "00000.png").read_bytes()).hexdigest()
            assert {line["identity"]["sha256"] for line in manifest(out) if line["name"] == "00000"} == {digest}
        stat = os.stat(src / "00000.png")
        os.utime(src / "00000.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same bytes, touched
        rerun = invoke(src, "--weights", weights, "--out", out, "--save", "masks", "--identity", mode, *FAST)
        assert rerun.exit_code == 0, rerun.output
        assert (record(out)["processed"], record(out)["skipped"]) == (redone, 2 - redone)
    bad = invoke(src, "--weights", weights, "--out", tmp_path / "o", "--identity", "md5", *FAST)
    assert bad.exit_code == 2 and "--identity md5: must be one of stat, hash" in bad.output


def test_each_shard_appends_to_its_own_manifest_part(tmp_path, weights):
    src = images(tmp_path / "src", 4)
    out = tmp_path / "out"
    for i in range(2):
        result = invoke(src, "--weights", weights, "--out", out, "--save", "masks", "--shard", f"{i}/2", *FAST)
        assert result.exit_code == 0, result.output
    parts = {p.name: [json.loads(t)["name"] for t in p.read_text().splitlines()] for p in out.glob("manifest*")}
    assert parts == {"manifest-0-of-2.jsonl": ["00000", "00002"], "manifest-1-of-2.jsonl": ["00001", "00003"]}


def test_a_rerun_into_the_default_out_lists_hashes_and_reads_the_rle_logs_once(tmp_path, weights, monkeypatch):
    """The default folder is probed before it is claimed; the claim reuses the probe's listing and hashes (at a
    million inputs, listing and hashing twice doubles the cost of a rerun) and the RLE logs are read once."""
    from vitseg_cli.engine import manifest as manifest_module, predict_folder, rle

    src = images(tmp_path / "src", 3)
    monkeypatch.chdir(tmp_path)
    args = (src, "--weights", weights, "--save", "masks,rle", "--identity", "hash", *FAST)
    assert invoke(*args).exit_code == 0
    (tmp_path / "vitseg-out" / "masks" / "00001.png").unlink()  # one image to redo, so the run does real work
    counts = {"hash": 0, "list": 0, "rle": 0}

    def counting(name, real):
        def call(*a, **k):
            counts[name] += 1
            return real(*a, **k)
        return call

    monkeypatch.setattr(manifest_module, "_sha256", counting("hash", manifest_module._sha256))
    monkeypatch.setattr(predict_folder, "collect_sources", counting("list", predict_folder.collect_sources))
    monkeypatch.setattr(predict_folder, "done_inputs", counting("rle", predict_folder.done_inputs))
    assert not hasattr(predict_engine, "done_inputs")  # predict takes the plan's set instead of reading again
    rerun = invoke(*args)
    assert rerun.exit_code == 0, rerun.output
    assert record(tmp_path / "vitseg-out")["processed"] == 1 and not (tmp_path / "vitseg-out2").exists()
    assert counts["hash"] == 3 and counts["list"] == 1
    assert counts["rle"] <= 2  # the probe, and again under the lock (the folder may change in between)
    assert rle.done_inputs(tmp_path / "vitseg-out") == {"00000", "00001", "00002"}
