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
