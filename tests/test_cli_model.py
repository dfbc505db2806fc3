"""`vitseg convert` and `vitseg info` from the command line: outputs, one-line errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

import torch
from typer.testing import CliRunner

from vitseg_cli import load_model
from vitseg_cli.cli import app

runner = CliRunner()


def test_convert_then_load_gives_the_official_logits(parity_dir, tmp_path):
    out = tmp_path / "mini.safetensors"
    result = runner.invoke(app, ["convert", str(parity_dir / "mini_full_checkpoint.pth"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    case = torch.load(parity_dir / "mini_full_case.pt", weights_only=True)
    with torch.no_grad():
        logits = load_model(out)(case["input"])
    assert (logits - case["logits"]).abs().max().item() <= 1e-3
    again = runner.invoke(app, ["convert", str(parity_dir / "mini_full_checkpoint.pth"), "--out", str(out)])
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_info_reports_architecture_classes_and_counts(parity_dir):
    result = runner.invoke(app, ["info", str(parity_dir / "mini_full_checkpoint.pth")])
    assert result.exit_code == 0, result.output
    for fragment in ("D96", "depth 4", "UperNet 32", "7: class_0", "total 1.38M", "assumed num_heads=3"):
        assert fragment in result.output


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitseg_cli", *args], capture_output=True, text=True, timeout=120)


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 100)
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("model: {backbone: {depthh: 3}}\n")
    cases = [
        (["info", str(tmp_path / "missing.pth")], "missing.pth: file not found"),
        (["info", str(garbage)], "garbage.pth: not a readable checkpoint"),
        (["info", str(garbage), "--spec", str(bad_spec)], "model.backbone.depthh: unknown key"),
    ]
    for args, fragment in cases:
        proc = _run(*args)
        assert proc.returncode != 0
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and fragment in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_info_names_each_family_and_what_it_assumed(parity_dir):
    cases = {
        "mini_beit_checkpoint.pth": ("beit_adapter: BEiT-Adapter D64", "heads 4", "assumed", "n_points=4"),
        "mini_uniperceiver_checkpoint.pth": ("uniperceiver_adapter: Uni-Perceiver-Adapter D64", "assumed"),
        "mini_m2f_checkpoint.pth": ("beit_adapter: BEiT-Adapter D64", "mask2former: Mask2Former 10 queries",
                                    "spec read from the config inside the checkpoint"),
        "mini_full_checkpoint.pth": ("vit_adapter: ViT-Adapter D96", "upernet: UperNet 32 ch", "assumed"),
    }
    for name, fragments in cases.items():
        result = runner.invoke(app, ["info", str(parity_dir / name)])
        assert result.exit_code == 0, (name, result.output)
        for fragment in fragments:
            assert fragment in result.output, (name, fragment, result.output)


def test_a_zip_release_is_read_directly(parity_dir, tmp_path):
    import zipfile

    release = tmp_path / "mask2former_release.zip"
    with zipfile.ZipFile(release, "w") as z:
        z.write(parity_dir / "mini_m2f_checkpoint.pth", "release/mini_m2f_checkpoint.pth")
    direct = load_model(parity_dir / "mini_m2f_checkpoint.pth")
    zipped = load_model(release)
    for (k, a), b in zip(direct.state_dict().items(), zipped.state_dict().values()):
        assert torch.equal(a, b), k
    assert zipped.spec == direct.spec
    result = runner.invoke(app, ["info", str(release)])
    assert result.exit_code == 0 and "mask2former" in result.output

    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.write(parity_dir / "mini_m2f_checkpoint.pth", "a.pth")
        z.write(parity_dir / "mini_beit_checkpoint.pth", "b.pth")
    empty = tmp_path / "none.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("README.txt", "no weights here")
    for bad, words in ((two, "2 checkpoints (a.pth, b.pth)"), (empty, "no checkpoint")):
        run = _run("info", str(bad))
        assert run.returncode != 0
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0] and words in lines[0], run.stderr


def test_specs_the_official_code_accepts_are_accepted():
    from vitseg_cli import build_model

    # three interactions are fine when the ViT features are not added (the official forward unpacks four only then)
    model = build_model({"model": {"backbone": {"preset": "nano", "depth": 3, "add_vit_feature": False,
                                                "interaction_indexes": [[0, 0], [1, 1], [2, 2]]}}})
    with torch.no_grad():
        feats = model.eval()(torch.zeros(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (2, 3)]
