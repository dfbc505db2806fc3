"""`vitseg export`: write a model as ONNX (spec embedded), for onnxruntime and `vitseg predict --backend onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import VitsegError, not_one_of
from .common import friendly_errors, note, parse_size, results_console


@friendly_errors
def export(
    weights: Path = typer.Argument(..., help="A vitseg .safetensors, an official .pth checkpoint, or a zoo name."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (only onnx)."),  # no -f: the dataset format
    out: Path = typer.Option(..., "--out", "-o", help="Output .onnx file."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help="Spec (YAML or preset); inferred if omitted."),
    size: Optional[str] = typer.Option(None, "--size", metavar="WxH",
                                       help="Input size the graph is built for (fixed; with --dynamic only the "
                                            "example it is traced with): WxH, or N for a square [default: 512x512]"),
    height: Optional[int] = typer.Option(None, "--height", min=1, hidden=True),  # old spelling of --size
    width: Optional[int] = typer.Option(None, "--width", min=1, hidden=True),  # old spelling of --size
    dynamic: bool = typer.Option(False, "--dynamic", help="Any input height and width in one graph."),
    opset: Optional[int] = typer.Option(None, "--opset", min=16, help="ONNX opset [default: 17]."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare onnxruntime with PyTorch afterwards."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Export a segmentor to ONNX (dynamic batch, fixed or --dynamic HxW, normalized float32 NCHW in, logits at 1/4
    out; deformable attention as gather-based sampling, no GridSample)."""
    height, width = _input_size(size, height, width)
    if fmt.lower() != "onnx":
        raise not_one_of("--format", fmt, ("onnx",))
    if out.exists() and not overwrite:
        raise VitsegError(f"--out {out}: exists (use --overwrite)")
    from ..loading import load_model
    from ..engine.export import DEFAULT_OPSET, check_export, export_onnx

    opset = opset or DEFAULT_OPSET
    model = load_model(weights, spec, device="cpu")
    export_onnx(model, out, height, width, opset, dynamic=dynamic)
    most = model.backbone.fixed_input_size
    size = (("any input size" + (f" up to {most[1]}x{most[0]} (WxH)" if most else "")) if dynamic
            else f"input {width}x{height} (WxH)")
    results_console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {size}, dynamic batch, opset {opset})")
    if verify:
        try:
            err = check_export(model, out)
        except VitsegError as error:
            if "needs onnxruntime" not in str(error):
                raise
            note("onnxruntime not installed: not verified")
        else:
            results_console.print(f"onnxruntime vs PyTorch: max abs logit difference {err:.2e}"
                                  + (" (at a size the graph was not traced with)" if dynamic else ""))
            if err > 1e-2:
                note("the exported graph's logits differ from PyTorch's by more than 1e-2: check it before use")


def _input_size(size: Optional[str], height: Optional[int], width: Optional[int]) -> tuple[int, int]:
    """(height, width) from --size, or from the old --height/--width (512 where not given)."""
    if size is not None:
        if height is not None or width is not None:
            raise VitsegError("--height/--width are the old spelling of --size: give only --size WxH")
        return parse_size(size, "--size")
    return height or 512, width or 512


def register(app: typer.Typer) -> None:
    app.command("export")(export)
