"""The model zoo: a release name given as --weights is downloaded from a mirror (a local HTTP server on 127.0.0.1
started here), checked, converted once and cached; failures leave one line and nothing half-written behind."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitseg_cli import load_model, releases
from vitseg_cli.cli import app
from vitseg_cli.data.io import read_label

from conftest import PARITY

runner = CliRunner()
SOURCE = PARITY / "mini_full_checkpoint.pth"  # an official UperNet ViT-Adapter file (mmcv layout)
# The official basename of a real release; the test release's name is not a preset, so its spec is inferred.
BASENAME = "upernet_deit_adapter_tiny_512_160_ade20k.pth.tar"
NAME = "upernet_mini_adapter_test"


def make_release(basename: str = BASENAME, name: str = NAME) -> releases.Release:
    return releases.Release(name=name, method="UperNet", backbone="ViT-Adapter-mini", pretrain="none",
                            dataset="synthetic", crop_size=512, miou_ss=None, miou_ms=None, params="1M", size=None,
                            url=f"https://github.com/czczup/ViT-Adapter/releases/download/v0.0/{basename}",
                            lr_schedule="160k")


class Server:
    """Serves `files` by basename; logs each request's Range header; can cut the next body short, ignore Range
    requests, or answer every request with an error status."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: list[str | None] = []  # the Range header of each request (None: a whole-file request)
        self.sums_requests = 0
        self.cut_next: int | None = None
        self.ranges = True
        self.status: int | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                if name != "SHA256SUMS":  # the zoo asks for it beside each download; logged apart
                    server.requests.append(self.headers.get("Range"))
                else:
                    server.sums_requests += 1
                data = server.files.get(name)
                if server.status or data is None:
                    self.send_error(server.status or 404)
                    return
                start = 0
                if server.ranges and (wanted := self.headers.get("Range")):
                    start = int(wanted.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_next is not None:
                    body, server.cut_next = body[:server.cut_next], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server({BASENAME: SOURCE.read_bytes()})
    yield s
    s.stop()


@pytest.fixture
def zoo_env(tmp_path, monkeypatch, server):
    """A test release in the table, the cache in a temporary folder and the mirror on the local server."""
    monkeypatch.setattr(releases, "RELEASES", [*releases.RELEASES, make_release()])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    return tmp_path / "cache"


def predict(out: Path, weights: str = NAME):
    return runner.invoke(app, ["predict", str(PARITY / "mini_full_image.png"), "--weights", weights, "--out",
                               str(out), "--workers", "0", "--save", "masks"])


def info(weights: str = NAME):
    """`vitseg info NAME`: loads the model like predict does, without the inference time."""
    return runner.invoke(app, ["info", weights])


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name != ".lock")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def agreement(out: Path) -> float:
    mask = read_label(out / "masks" / "mini_full_image.png")
    return float((mask == read_label(PARITY / "mini_full_expected_mask.png")).mean())


def test_zoo_name_downloads_converts_caches_and_works_offline(zoo_env, server, tmp_path):
    result = predict(tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert server.requests == [None]
    assert agreement(tmp_path / "a") >= 0.999  # the official pipeline's mask for this image and checkpoint
    folder = zoo_env / NAME
    assert cache_files(zoo_env) == sorted([BASENAME, BASENAME + ".sha256", f"{NAME}.safetensors",
                                           f"{NAME}.safetensors.sha256"])
    assert (folder / f"{BASENAME}.sha256").read_text().split()[0] == sha256(SOURCE.read_bytes())

    assert info().exit_code == 0
    assert server.requests == [None]  # the second run made no request
    server.stop()
    result = predict(tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert agreement(tmp_path / "c") >= 0.999
    record = json.loads((tmp_path / "c" / "predict.json").read_text())
    assert record["weights"] == NAME


def test_parallel_first_uses_share_one_download(zoo_env, server, tmp_path):
    from vitseg_cli import zoo
    from vitseg_cli.loading import fetch_release

    release = zoo.find_release(NAME)
    with ThreadPoolExecutor(2) as pool:  # like two torchrun ranks starting at once
        paths = list(pool.map(lambda _: fetch_release(release), range(2)))
    assert paths[0] == paths[1] == zoo_env / NAME / f"{NAME}.safetensors"
    assert server.requests == [None]
    out = tmp_path / "copy.safetensors"
    result = runner.invoke(app, ["convert", NAME, "--out", str(out)])  # a zoo name works as convert's input too
    assert result.exit_code == 0, result.output
    assert load_model(out).num_classes == 7


def test_no_cache_and_no_server_is_one_line_naming_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "RELEASES", [*releases.RELEASES, make_release()])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", f"http://127.0.0.1:{port}/m")
    result = predict(tmp_path / "out")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"http://127.0.0.1:{port}/m/{BASENAME}" in lines[0]
    assert str(tmp_path / "cache" / NAME / BASENAME) in lines[0]
    assert cache_files(tmp_path / "cache") == []


def test_cut_download_resumes_with_range(zoo_env, server, tmp_path):
    size = len(SOURCE.read_bytes())
    server.cut_next = size // 2
    first = predict(tmp_path / "a")
    assert first.exit_code != 0
    assert len(error_lines(first)) == 1 and "run again to resume" in error_lines(first)[0]
    assert cache_files(zoo_env) == [BASENAME + ".part"]  # only the partial file, under its .part name
    second = info()
    assert second.exit_code == 0, second.output
    assert server.requests == [None, f"bytes={size // 2}-"]
    assert (zoo_env / NAME / BASENAME).read_bytes() == SOURCE.read_bytes()


def test_cut_download_restarts_when_the_server_ignores_range(zoo_env, server, tmp_path):
    server.ranges = False
    server.cut_next = 1000
    assert info().exit_code != 0
    second = info()
    assert second.exit_code == 0, second.output
    assert server.requests == [None, "bytes=1000-"]  # answered with the whole file (200)
    assert (zoo_env / NAME / BASENAME).read_bytes() == SOURCE.read_bytes()


def test_server_error_leaves_nothing(zoo_env, server, tmp_path):
    server.status = 503
    result = predict(tmp_path / "a")
    assert result.exit_code != 0
    assert len(error_lines(result)) == 1 and "503" in error_lines(result)[0]
    assert cache_files(zoo_env) == []


def test_a_file_that_is_not_a_checkpoint_is_removed(zoo_env, server, tmp_path):
    server.files[BASENAME] = b"<html>rate limited</html>" * 100
    result = predict(tmp_path / "a")
    assert result.exit_code != 0
    assert len(error_lines(result)) == 1 and "not a torch checkpoint" in error_lines(result)[0]
    assert cache_files(zoo_env) == []


def test_damaged_download_is_removed_and_never_loads(zoo_env, server, tmp_path):
    data = bytearray(SOURCE.read_bytes())
    data[len(data) // 2] ^= 0xFF  # right length, one flipped byte inside a tensor
    server.files[BASENAME] = bytes(data)
    result = predict(tmp_path / "a")
    assert result.exit_code != 0
    assert "CRC" in error_lines(result)[0]
    assert cache_files(zoo_env) == []


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_zip_release_python_api_and_init_from(tmp_path, monkeypatch, server):
    from vitseg_cli import build_model
    from vitseg_cli.engine.train import init_from_checkpoint

    monkeypatch.setattr(releases, "RELEASES", [make_release("mini_release.zip", "zipped_mini")])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url + "/")
    server.files["mini_release.zip"] = _zip({"release/mini.pth": SOURCE.read_bytes(), "release/README": b"x"})
    model = load_model("zipped_mini")
    assert model.num_classes == 7
    assert cache_files(tmp_path / "cache") == sorted(["mini_release.pth", "mini_release.pth.sha256",
                                                      "zipped_mini.safetensors", "zipped_mini.safetensors.sha256"])
    notes = init_from_checkpoint(build_model(model.spec), "zipped_mini")
    assert notes == ["initialised from zipped_mini.safetensors"]
    assert len(server.requests) == 1


def test_zip_with_two_checkpoints_is_one_line(tmp_path, monkeypatch, server):
    monkeypatch.setattr(releases, "RELEASES", [make_release("two.zip", "two_ckpts")])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    server.files["two.zip"] = _zip({"a.pth": SOURCE.read_bytes(), "b.pth": SOURCE.read_bytes()})
    result = predict(tmp_path / "a", "two_ckpts")
    assert result.exit_code != 0
    assert "expected exactly one checkpoint inside, found 2 (a.pth, b.pth)" in error_lines(result)[0]
    assert not (tmp_path / "cache" / "two_ckpts" / "two.pth").exists()


def test_changed_cache_file_fails_its_digest(zoo_env, tmp_path):
    assert info().exit_code == 0
    converted = zoo_env / NAME / f"{NAME}.safetensors"
    data = bytearray(converted.read_bytes())
    data[-10] ^= 0x01
    converted.write_bytes(bytes(data))
    result = info()
    assert result.exit_code != 0
    assert len(error_lines(result)) == 1 and "SHA-256 differs" in error_lines(result)[0]


def test_unknown_zoo_name_suggests_close_names(zoo_env, tmp_path):
    result = predict(tmp_path / "a", "upernet_mini_adaptor_test")
    assert result.exit_code != 0
    assert f"(did you mean {NAME}?)" in error_lines(result)[0]


def test_zoo_json_lists_the_releases(zoo_env):
    result = runner.invoke(app, ["zoo", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    names = [r["name"] for r in rows]
    assert NAME in names and "upernet_deit_adapter_tiny_512_160k_ade20k" in names
    for row in rows:
        assert {"name", "url", "dataset", "method", "backbone", "crop_size", "miou_ss", "miou_ms", "params"} <= set(row)
    tiny = rows[names.index("upernet_deit_adapter_tiny_512_160k_ade20k")]
    assert tiny["url"].endswith("/v0.3.1/upernet_deit_adapter_tiny_512_160_ade20k.pth.tar")  # official README
    assert (tiny["miou_ss"], tiny["miou_ms"], tiny["crop_size"]) == (42.6, 43.6, 512)
