"""Hostile inputs that must end in one line and leave nothing behind: a symlinked zoo lock, a malformed mirror URL,
test scales and resize targets past the pixel bound, an eval --out inside its inputs, and endless or trickling
mirrors (a local HTTP server on 127.0.0.1 started here)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitseg_cli import releases
from vitseg_cli.cli import app

from conftest import PARITY
from test_zoo import NAME, make_release

runner = CliRunner()


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def info(name: str = NAME):
    return runner.invoke(app, ["info", name])


@pytest.fixture
def zoo_table(tmp_path, monkeypatch):
    monkeypatch.setattr(releases, "RELEASES", [*releases.RELEASES, make_release()])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_symlinked_zoo_lock_never_touches_its_target(zoo_table, tmp_path, monkeypatch):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (zoo_table / NAME).mkdir(parents=True)
    (zoo_table / NAME / ".lock").symlink_to(precious)
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", "http://127.0.0.1:9/m")
    result = info()
    assert result.exit_code != 0
    assert precious.read_text() == "keep me"
    [line] = error_lines(result)
    assert ".lock" in line and "symbolic link" in line
    assert "Traceback" not in result.output


@pytest.mark.parametrize("url", ["ht!tp://x y", "ftp:/", "http://", "http://host:notaport/x", "http://[::1/x"])
def test_a_malformed_mirror_url_is_one_line_naming_the_variable(zoo_table, monkeypatch, url):
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", url)
    result = info()
    assert result.exit_code != 0
    [line] = error_lines(result)
    assert "VITSEG_ZOO_MIRROR" in line
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("scales", ["500", "1,17", "0", "-1", "nan", "inf", ","])
def test_scales_past_the_spec_bound_are_refused_on_the_command_line(tmp_path, command, scales):
    """The same bound as `--set test.scales=[...]` (0 < ratio <= 16), before any model or image is read."""
    image = PARITY / "mini_full_image.png"
    args = [command, str(image), "--out", str(tmp_path / "out"), "--scales", scales]
    if command == "eval":
        args = ["eval", str(tmp_path), "--out", str(tmp_path / "out"), "--scales", scales]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    [line] = error_lines(result)
    assert "--scales" in line
    assert not (tmp_path / "out").exists()


def test_a_test_resize_past_the_pixel_limit_is_refused_before_allocating(monkeypatch):
    """img_scale (65536, 65536) would take a 64x48 image to 65536x49152 (9.6 GB as float32): refused by size alone."""
    import numpy as np

    from vitseg_cli.data.test_transforms import check_resize
    from vitseg_cli.engine.inference import preprocess
    from vitseg_cli.engine.test_procedures import dinov3_view
    from vitseg_cli.errors import VitsegError
    from vitseg_cli.spec import ResizeSpec

    image = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(VitsegError, match="64x48 image to 65536x49152.*pixel limit"):
        preprocess(image, ResizeSpec(scale=(65536, 65536)), 1.0, (0, 0, 0), (1, 1, 1))
    monkeypatch.setenv("VITSEG_MAX_PIXELS", "1000000")  # 1000x1000: a 2048x1536 resize is past it
    with pytest.raises(VitsegError, match="64x48 image to 2048x1536"):
        preprocess(image, ResizeSpec(scale=(2048, 2048)), 1.0, (0, 0, 0), (1, 1, 1))
    with pytest.raises(VitsegError, match="pixel limit"):
        dinov3_view(image, 2048, 1.0, (0, 0, 0), (1, 1, 1))
    with pytest.raises(VitsegError, match="to 1024x1024"):  # the padding counts: 64x48 padded to 1024 a side
        check_resize(48, 64, 48, 64, None, 1024)
    assert preprocess(image, ResizeSpec(scale=(512, 512)), 1.0, (0, 0, 0), (1, 1, 1)).shape == (3, 384, 512)


@pytest.mark.parametrize("where", ["gt", "pred", "gt/sub", "data"])
def test_eval_refuses_an_out_inside_its_inputs(tmp_path, where):
    import numpy as np

    from vitseg_cli.data.io import write_image

    for name in ("pred/a.png", "gt/a.png", "data/images/a.png", "data/masks/a.png"):
        write_image(tmp_path / name, np.zeros((4, 4), np.uint8))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = tmp_path / where
    if where == "data":
        args = ["eval", str(tmp_path / "data"), "--out", str(out)]
    else:
        args = ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--num-classes", "2",
                "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    [line] = error_lines(result)
    assert "--out" in line and "inside" in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_eval_with_an_out_beside_its_inputs_still_runs(tmp_path):
    import numpy as np

    from vitseg_cli.data.io import write_image

    for name in ("pred/a.png", "gt/a.png"):
        write_image(tmp_path / name, np.zeros((4, 4), np.uint8))
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--num-classes", "2", "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "metrics.json").is_file()


class EndlessServer:
    """A hostile mirror: `endless` streams zeros without end (no Content-Length); `trickle` announces 1000 bytes and
    sends one every 0.3 s; `liar` announces 10 GB."""

    def __init__(self, mode: str):
        stop = self.stop_event = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                if mode == "trickle":
                    self.send_header("Content-Length", "1000")
                elif mode == "liar":
                    self.send_header("Content-Length", str(10 << 30))
                self.end_headers()
                try:
                    while not stop.is_set():
                        if mode == "trickle":
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                            time.sleep(0.3)
                        else:
                            self.wfile.write(b"\0" * 65536)
                except OSError:  # the client hung up
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile_mirror(request, zoo_table, monkeypatch):
    server = EndlessServer(request.param)
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    yield server
    server.stop()


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.parametrize("hostile_mirror", ["endless", "liar"], indirect=True)
def test_a_mirror_sending_without_end_is_cut_at_the_cap_and_nothing_is_kept(hostile_mirror, zoo_table, monkeypatch):
    monkeypatch.setenv("VITSEG_ZOO_MAX_BYTES", "1000000")
    result = info()
    assert result.exit_code != 0
    [line] = error_lines(result)
    assert "1000000" in line and "VITSEG_ZOO_MAX_BYTES" in line and "nothing was saved" in line
    assert _cache_files(zoo_table) == []


def test_the_cap_is_the_known_size_times_one_and_a_half(monkeypatch):
    from vitseg_cli import zoo

    monkeypatch.setenv("VITSEG_ZOO_MAX_BYTES", "7")
    release = make_release()
    assert zoo.download_limit(release) == 7
    assert zoo.download_limit(releases.Release(**{**release.__dict__, "size": "2 MB"})) == 3_000_000
    assert zoo.download_limit(releases.Release(**{**release.__dict__, "size": "1.5 GiB"})) == int(1.5 * 1.5 * 2**30)
    monkeypatch.setenv("VITSEG_ZOO_MAX_BYTES", "lots")
    with pytest.raises(Exception, match="VITSEG_ZOO_MAX_BYTES='lots'"):
        zoo.download_limit(release)


@pytest.mark.parametrize("hostile_mirror", ["trickle"], indirect=True)
def test_a_trickling_mirror_meets_the_deadline_and_the_lock_is_released(hostile_mirror, zoo_table, monkeypatch):
    import fcntl

    monkeypatch.setenv("VITSEG_ZOO_TIMEOUT", "1.5")
    start = time.monotonic()
    result = info()
    assert time.monotonic() - start < 15
    assert result.exit_code != 0
    [line] = error_lines(result)
    assert "VITSEG_ZOO_TIMEOUT" in line and "longer than 1.5 s" in line
    with open(zoo_table / NAME / ".lock", "a") as handle:  # another process could take the lock now
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
