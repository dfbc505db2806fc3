"""What the zoo verifies about a downloaded release: a SHA256SUMS file when there is one (the mirror's own, or one the
user names with VITSEG_ZOO_SHA256SUMS), and the config a release's checkpoint carries, which must describe that
release's preset. Mirrors are local HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch
from typer.testing import CliRunner

from vitseg_cli import releases
from vitseg_cli.cli import app
from vitseg_cli.model.official_config import spec_from_config_text
from vitseg_cli.spec import SPEC_PRESETS

from conftest import PARITY
from test_zoo import BASENAME, NAME, SOURCE, Server, cache_files, error_lines, make_release

runner = CliRunner()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    server = Server({BASENAME: SOURCE.read_bytes()})
    monkeypatch.setattr(releases, "RELEASES", [*releases.RELEASES, make_release()])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    yield server
    server.stop()


def sums(digest: str, name: str = BASENAME) -> bytes:
    return f"{digest}  {name}\n".encode()


RIGHT = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
WRONG = hashlib.sha256(b"another file").hexdigest()


def test_the_mirrors_sha256sums_is_checked(mirror, tmp_path):
    mirror.files["SHA256SUMS"] = sums(WRONG)
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code != 0
    assert len(error_lines(result)) == 1 and "SHA-256 differs from the one" in error_lines(result)[0]
    assert f"{mirror.url}/SHA256SUMS" in error_lines(result)[0]
    assert cache_files(tmp_path / "cache") == []  # the download was not kept

    mirror.files["SHA256SUMS"] = b"# other files\n" + sums(WRONG, "other.pth") + sums(RIGHT, f"sub/{BASENAME}")
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code == 0, result.output
    assert mirror.sums_requests == 2


def test_a_file_the_sums_do_not_list_is_refused(mirror, tmp_path):
    mirror.files["SHA256SUMS"] = sums(RIGHT, "other.pth")
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code != 0 and f"SHA256SUMS lists no {BASENAME}" in error_lines(result)[0]
    assert cache_files(tmp_path / "cache") == []


def test_a_mirror_without_sums_is_used_unverified(mirror):
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code == 0, result.output
    assert mirror.sums_requests == 1


def test_sums_named_by_the_user_are_required_and_checked(mirror, tmp_path, monkeypatch):
    mirror.files["SHA256SUMS"] = sums(RIGHT)  # the user's file wins over the mirror's
    path = tmp_path / "mine.sha256"
    path.write_bytes(sums(WRONG))
    monkeypatch.setenv("VITSEG_ZOO_SHA256SUMS", str(path))
    result = runner.invoke(app, ["info", NAME])
    assert result.exit_code != 0 and f"SHA-256 differs from the one {path} lists" in error_lines(result)[0]
    assert mirror.sums_requests == 0 and cache_files(tmp_path / "cache") == []
    path.write_bytes(b"not a digest  x\n")
    result = runner.invoke(app, ["info", NAME])
    assert f"{path}: line 1 is not '<sha256>  <file name>'" in error_lines(result)[0]
    monkeypatch.setenv("VITSEG_ZOO_SHA256SUMS", str(tmp_path / "missing"))
    assert "cannot read" in error_lines(runner.invoke(app, ["info", NAME]))[0]
    path.write_bytes(sums(RIGHT))
    monkeypatch.setenv("VITSEG_ZOO_SHA256SUMS", str(path))
    assert runner.invoke(app, ["info", NAME]).exit_code == 0


# --------------------------------------------------------------------------------- the config the release carries

DINO = PARITY / "mini_dinov2_m2f_checkpoint.pth"  # an official-layout file whose meta holds its config text
RELEASE = "mini_verified_release"


@pytest.fixture
def release_mirror(tmp_path, monkeypatch):
    """A release of the mini DINOv2 checkpoint whose (not reconstructed) preset is what its config describes."""
    config = torch.load(DINO, weights_only=True)["meta"]["config"]
    monkeypatch.setitem(SPEC_PRESETS, RELEASE, spec_from_config_text(config)[0])
    monkeypatch.setattr(releases, "RELEASES", [*releases.RELEASES, make_release("mini_dino.pth", RELEASE)])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    server = Server({"mini_dino.pth": DINO.read_bytes()})
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    yield server, config
    server.stop()


def _with_config(text: str) -> bytes:
    obj = torch.load(DINO, weights_only=True)
    obj["meta"]["config"] = text
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_carried_config_that_is_the_preset_converts(release_mirror):
    result = runner.invoke(app, ["info", RELEASE])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("old, new, difference", [
    ("stride=(128, 128)", "stride=(96, 96)", "test.stride: [96, 96], the preset [128, 128]"),
    ("cffn_ratio=0.25", "cffn_ratio=0.5", "model.backbone.cffn_ratio: 0.5, the preset 0.25"),
])
def test_a_carried_config_of_another_model_is_refused_and_not_kept(release_mirror, tmp_path, old, new, difference):
    server, config = release_mirror
    assert old in config
    server.files["mini_dino.pth"] = _with_config(config.replace(old, new))
    result = runner.invoke(app, ["info", RELEASE])
    assert result.exit_code != 0
    line = error_lines(result)[0]
    assert len(error_lines(result)) == 1 and f"the config it carries is not the release {RELEASE}" in line
    assert difference in line and f"--spec {RELEASE}" in line
    assert cache_files(tmp_path / "cache") == []


def test_a_carried_config_that_cannot_be_read_is_refused(release_mirror, tmp_path):
    server, _ = release_mirror
    server.files["mini_dino.pth"] = _with_config("import os\n")
    result = runner.invoke(app, ["info", RELEASE])
    assert result.exit_code != 0 and "the config it carries cannot be read" in error_lines(result)[0]
    assert cache_files(tmp_path / "cache") == []
