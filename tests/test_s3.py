"""fsspec URLs as sources and as --out, against a real S3-compatible server (moto's, started here on 127.0.0.1): a
source prefix with one bad object, output to another prefix, the run killed with SIGKILL, then resumed. Every good
object's mask equals the local run's, the bad one is reported, the fingerprint lives in the output prefix, no
partial object is ever listed and no credential is in anything written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from vitseg_cli.cli import app  # noqa: E402
from vitseg_cli.data import storage  # noqa: E402
from vitseg_cli.data.io import encode_image, read_label, write_image  # noqa: E402
from vitseg_cli.data.url_inputs import UrlImage, collect_sources  # noqa: E402

from test_predict import image, make_weights  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
KEY_ID, SECRET = "AKIAVITSEGTESTKEY042", "vitseg-test-secret-Zq9xW"
NAMES = [f"img{i:02d}" for i in range(8)]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server with bucket `src` (images/ holding the images and one bad object) and bucket `out`; the
    same images in a local folder, and the local run's masks."""
    root = tmp_path_factory.mktemp("s3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "VITSEG_HOME": str(root / "home")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fs, _ = storage.url_to_fs("s3://src")
        fs.mkdir("src")
        fs.mkdir("out")
        for i, name in enumerate(NAMES):
            img = image(40 + 4 * (i % 3), 56, seed=i)
            write_image(root / "local" / f"{name}.png", img)
            fs.pipe_file(f"src/images/{name}.png", encode_image("x.png", img))
        fs.pipe_file("src/images/bad.png", b"\x89PNG but not really")
        weights = make_weights(root / "nano.safetensors")
        base = runner.invoke(app, ["predict", str(root / "local"), "--out", str(root / "base"), "--weights",
                                   str(weights), "--save", "masks", "--workers", "0", "--quiet"])
        assert base.exit_code == 0, base.output
        yield root, weights, fs
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        server.stop()


def test_url_sources_prefix_glob_and_list(s3):
    _, _, fs = s3
    fs.pipe_file("src/images/list.txt", b"# two of them\ns3://src/images/img01.png\nimg03.png\n")
    assert [i.rel for i in collect_sources(["s3://src/images"], "o")] == ["bad", *NAMES]
    assert [i.rel for i in collect_sources(["s3://src/images/img0[12].png"], "o")] == ["img01", "img02"]
    listed = collect_sources(["s3://src/images/list.txt"], "o")
    assert [(i.url, i.rel) for i in listed] == [("s3://src/images/img01.png", "img01"),
                                                ("s3://src/images/img03.png", "img03")]
    assert storage.redact("https://user:pw@host/a/b.png") == "https://host/a/b.png"
    for i in range(2):  # --merge-records on a URL: the shard records are fetched, merged, the merge uploaded
        fs.pipe_file(f"out/merge/predict-{i}-of-2.json", json.dumps(
            {"status": "done", "inputs": 3, "processed": 3 - i, "skipped": i, "failed": []}).encode())
    merged = runner.invoke(app, ["predict", "--merge-records", "s3://out/merge"])
    assert merged.exit_code == 0, merged.output
    rec = json.loads(fs.cat_file("out/merge/predict.json"))
    assert (rec["processed"], rec["skipped"], rec["missing_shards"], rec["status"]) == (5, 1, [], "done")
    assert storage.redact("simplecache::s3://k:s@bucket/x") == "simplecache::s3://bucket/x"
    assert UrlImage("https://u:pw@host/a.png", "a").path == "https://host/a.png"  # what the records show


def _masks(fs, kind: str = "masks") -> set[str]:
    fs.invalidate_cache()
    return {p.rsplit("/", 1)[1] for p in fs.find(f"out/run/{kind}")}


def _run_killed(weights: Path, fs) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vitseg_cli", "predict", "s3://src/images", "--out", "s3://out/run", "--weights",
           str(weights), "--save", "masks,color", "--workers", "0", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(_masks(fs)) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    return _masks(fs)


def test_s3_in_and_out_killed_then_resumed(s3):
    root, weights, fs = s3
    before = _run_killed(weights, fs)
    complete = before & _masks(fs, "color")
    assert 2 <= len(before) < len(NAMES) and not fs.exists("out/run/predict.json")
    assert fs.exists("out/run/.vitseg-run.json")  # the fingerprint lives in the output prefix
    for name in before:  # objects are whole: each one listed decodes to the local run's mask
        got = np.asarray(read_label_bytes(fs.cat_file(f"out/run/masks/{name}")))
        assert np.array_equal(got, read_label(root / "base" / "masks" / name))

    result = runner.invoke(app, ["predict", "s3://src/images", "--out", "s3://out/run", "--weights", str(weights),
                                 "--save", "masks,color", "--workers", "0", "--quiet"])
    assert result.exit_code == 1, result.output  # the bad object
    rec = json.loads(fs.cat_file("out/run/predict.json"))
    assert [f["path"] for f in rec["failed"]] == ["s3://src/images/bad.png"]
    done_before = len(complete)  # both of an image's objects were uploaded before the kill
    assert (rec["skipped"], rec["processed"]) == (done_before, len(NAMES) - done_before)
    assert rec["sources"] == ["s3://src/images"] and rec["timings"]["bytes_read"] > 0
    assert rec["timings"]["bytes_written"] > 0 and rec["timings"]["written_bytes_per_s"] > 0
    assert _masks(fs) == {f"{n}.png" for n in NAMES}
    for name in NAMES:
        got = read_label_bytes(fs.cat_file(f"out/run/masks/{name}.png"))
        assert np.array_equal(got, read_label(root / "base" / "masks" / f"{name}.png"))
        assert fs.exists(f"out/run/color/{name}.png")
    fs.invalidate_cache()
    written = [fs.cat_file(p) for p in fs.find("out")]
    written += [p.read_bytes() for p in (root / "home").rglob("*") if p.is_file()]
    assert written and not [w for w in written if KEY_ID.encode() in w or SECRET.encode() in w]
    assert KEY_ID not in result.output and SECRET not in result.output


def read_label_bytes(payload: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)


def test_visualize_reads_images_from_s3(s3):
    root, weights, _ = s3
    out = root / "vis"
    result = runner.invoke(app, ["visualize", "s3://src/images/img0[01].png", "--masks", str(root / "base" / "masks"),
                                 "--weights", str(weights), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "overlay").iterdir()) == ["img00.jpg", "img01.jpg"]


def _upload_folder(fs, folder: Path, prefix: str) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{prefix}/{p.relative_to(folder).as_posix()}", p.read_bytes())


def _no_credentials(fs, prefix: str, output: str) -> None:
    fs.invalidate_cache()
    written = [fs.cat_file(p) for p in fs.find(prefix)]
    assert written and not [w for w in written if KEY_ID.encode() in w or SECRET.encode() in w]
    assert KEY_ID not in output and SECRET not in output


def test_eval_dataset_and_reports_at_urls_match_local(s3, tmp_path, monkeypatch):
    """eval --data s3://... --out s3://...: the dataset prefix is staged, the reports uploaded; the same metrics
    (JSON and CSV) as the local eval of the same folder, the URL named in the report, no temporary folder left."""
    from conftest import nano_folder_dataset

    _, _, fs = s3
    ds, ckpt = nano_folder_dataset(tmp_path, 3)
    _upload_folder(fs, ds, "src/evalds")
    args = ["eval", "--weights", str(ckpt), "--workers", "0", "--quiet"]
    local = runner.invoke(app, [*args, "--data", str(ds), "--out", str(tmp_path / "rep")])
    assert local.exit_code == 0, local.output
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(staging))
    remote = runner.invoke(app, [*args, "--data", "s3://src/evalds", "--out", "s3://out/evalrep"])
    assert remote.exit_code == 0, remote.output
    assert list(staging.iterdir()) == []  # both stand-ins removed
    fs.invalidate_cache()
    for name in ("per_class.csv", "per_image.csv", "confusion.csv", "confusion.png"):
        assert fs.cat_file(f"out/evalrep/{name}") == (tmp_path / "rep" / name).read_bytes(), name
    got, want = json.loads(fs.cat_file("out/evalrep/metrics.json")), json.loads((tmp_path / "rep" / "metrics.json")
                                                                               .read_text())
    assert got.pop("run")["dataset"] == "s3://src/evalds"
    want.pop("run")
    assert got == want and got["num_images"] == 3
    _no_credentials(fs, "out/evalrep", remote.output)

    pairs = ["eval", "--pred", "s3://src/evalds/masks", "--gt", "s3://src/evalds/masks", "--num-classes", "6",
             "--out", "s3://out/pairrep", "--quiet"]  # masks scored against themselves: every score 1
    result = runner.invoke(app, pairs)
    assert result.exit_code == 0, result.output
    doc = json.loads(fs.cat_file("out/pairrep/metrics.json"))
    assert doc["aAcc"] == 1.0 and doc["run"]["pred"] == "s3://src/evalds/masks"


def test_url_out_inside_inputs_and_size_cap_refused(s3, monkeypatch):
    _, weights, fs = s3
    fs.pipe_file("src/capds/images/0.png", b"x" * 64)
    inside = runner.invoke(app, ["eval", "--pred", "s3://src/capds", "--gt", "s3://src/capds", "--num-classes", "2",
                                 "--out", "s3://src/capds/rep", "--quiet"])
    assert inside.exit_code != 0 and "is inside --pred s3://src/capds" in inside.output
    vis = runner.invoke(app, ["visualize", "s3://src/images/img0[01].png", "--pred", "s3://src/capds", "--weights",
                              str(weights), "--out", "s3://src/images/vis", "--quiet"])
    assert vis.exit_code != 0 and "is inside the image source" in vis.output
    monkeypatch.setenv("VITSEG_STAGE_MAX_BYTES", "10")
    capped = runner.invoke(app, ["eval", "--data", "s3://src/capds", "--out", "s3://out/caprep", "--quiet"])
    assert capped.exit_code != 0 and "64 bytes to download is above the 10-byte cap" in capped.output
    fs.invalidate_cache()
    assert not fs.exists("out/caprep")


def test_visualize_to_url_out_matches_local(s3):
    root, weights, fs = s3
    args = ["visualize", "s3://src/images/img0[01].png", "--pred", str(root / "base" / "masks"), "--weights",
            str(weights), "--gallery", "--quiet"]
    local = runner.invoke(app, [*args, "--out", str(root / "vis_local")])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, [*args, "--out", "s3://out/vis"])
    assert remote.exit_code == 0, remote.output
    fs.invalidate_cache()
    files = {p.relative_to(root / "vis_local").as_posix(): p.read_bytes()
             for p in (root / "vis_local").rglob("*") if p.is_file()}
    assert "overlay/img00.jpg" in files and "index.html" in files
    assert {p[len("out/vis/"):]: fs.cat_file(p) for p in fs.find("out/vis")} == files
    _no_credentials(fs, "out/vis", remote.output)
