"""Zip bombs: a release archive (from a mirror) or a local `.zip` whose members would inflate to gigabytes is
refused from its directory, before anything is inflated, and nothing is left in the cache or in $TMPDIR."""

from __future__ import annotations

import io
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vitseg_cli import releases
from vitseg_cli.cli import app

from test_zoo import SOURCE, Server, cache_files, error_lines, make_release

runner = CliRunner()
ZEROS = 30_000_000  # deflates to about 30 KB: a ratio of 1000, as a bomb has


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _declare_size(data: bytes, size: int) -> bytes:
    """The archive with its one member's uncompressed size, in the local header and the directory, set to `size`."""
    data = bytearray(data)
    local = data.index(b"PK\x03\x04")
    data[local + 22:local + 26] = struct.pack("<I", size)
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", size)
    return bytes(data)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    server = Server({})
    monkeypatch.setattr(releases, "RELEASES", [make_release("bomb.zip", "zipped_bomb")])
    monkeypatch.setenv("VITSEG_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VITSEG_ZOO_MIRROR", server.url)
    yield server
    server.stop()


def test_a_release_zip_bomb_is_refused_uninflated_and_not_kept(mirror, tmp_path):
    mirror.files["bomb.zip"] = _zip({"release/mini.pth": bytes(ZEROS)})
    assert len(mirror.files["bomb.zip"]) < ZEROS // 100
    for attempt in (1, 2):  # a retry downloads again (bounded) and refuses again: nothing was kept to re-inflate
        result = runner.invoke(app, ["info", "zipped_bomb"])
        assert result.exit_code != 0
        assert len(error_lines(result)) == 1 and "zip bomb" in error_lines(result)[0], result.output
        assert cache_files(tmp_path / "cache") == []
        assert len(mirror.requests) == attempt


def test_a_release_zip_declaring_more_than_the_release_can_hold_is_refused(mirror, tmp_path):
    # the test release has 1M parameters: 16 MB of weights and moments, plus 64 MiB; this member declares 4 GB
    mirror.files["bomb.zip"] = _declare_size(_zip({"mini.pth": SOURCE.read_bytes()}), 0xFFFF_FFF0)
    result = runner.invoke(app, ["info", "zipped_bomb"])
    assert result.exit_code != 0
    assert "mini.pth would inflate to 4294967280 bytes, more than the 83108864 allowed" in error_lines(result)[0]
    assert cache_files(tmp_path / "cache") == []


def test_info_on_a_local_zip_bomb_unpacks_nothing_into_tmpdir(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zip({"model.pth": bytes(ZEROS)}))
    result = runner.invoke(app, ["info", str(bomb)])
    assert result.exit_code != 0
    assert len(error_lines(result)) == 1 and f"{bomb}: model.pth would inflate" in error_lines(result)[0]
    assert "zip bomb" in error_lines(result)[0]
    assert list(tmp.iterdir()) == []


def test_the_local_cap_is_an_environment_variable(tmp_path, monkeypatch):
    stored = tmp_path / "release.zip"  # stored, not deflated: no ratio to catch, only the size
    stored.write_bytes(_zip({"release/model.pth": SOURCE.read_bytes()}, zipfile.ZIP_STORED))
    assert runner.invoke(app, ["info", str(stored)]).exit_code == 0
    monkeypatch.setenv("VITSEG_ZIP_MAX_BYTES", "1000")
    result = runner.invoke(app, ["info", str(stored)])
    assert result.exit_code != 0
    assert "model.pth would inflate to" in error_lines(result)[0] and "more than the 1000 allowed" in result.output


def test_a_directory_that_understates_a_size_is_cut_there(tmp_path):
    from vitseg_cli.data.safe_zip import extract_member
    from vitseg_cli.errors import VitsegError

    path = tmp_path / "liar.zip"
    path.write_bytes(_declare_size(_zip({"m.pth": bytes(200_000)}), 1000))
    # zipfile itself stops at the declared size and fails the CRC; the count here would stop it otherwise
    with zipfile.ZipFile(path) as archive, pytest.raises((VitsegError, zipfile.BadZipFile)):
        extract_member(archive, archive.getinfo("m.pth"), tmp_path / "m.pth", path)
    assert not (tmp_path / "m.pth").exists()
