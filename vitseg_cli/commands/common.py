"""What every subcommand shares: turning `VitsegError` into one line and an exit code, and the consoles.

`console` (stderr) takes progress, notes and errors; `results_console` (stdout) the results and summaries. Both
print text literally (no rich markup: paths, class names and messages may hold brackets) and do not wrap when piped."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import click
import typer
from rich.text import Text

from ..engine.progress import StreamConsole
from ..errors import VitsegError, first_line, not_one_of
from ..torchrun import rank_and_world

console = StreamConsole(stderr=True)
results_console = StreamConsole()
F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> None:
    console.print(Text("error: ", style="bold red") + Text(" ".join(str(message).splitlines())), soft_wrap=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    console.print(Text("note: ", style="yellow") + Text(message), soft_wrap=True)


def _lost_peer(err: BaseException) -> bool:
    """A collective failed because another rank died (its own error line says why)."""
    return type(err).__name__ in ("DistBackendError", "DistNetworkError") or any(
        text in str(err) for text in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def end_rank(err: BaseException, code: int) -> None:
    """Under torchrun: say what went wrong in one line (once per job where every rank has the same error) and end
    this process now. No clean-up that could wait on another rank (process group, loader workers) runs; torchrun
    then stops the other ranks, whose collectives with this one fail at once."""
    from ..engine.distributed import SharedFailure  # only reached under torchrun, where torch is loaded anyway

    rank, _ = rank_and_world()
    if isinstance(err, VitsegError):
        line = str(err) if isinstance(err, SharedFailure) else f"rank {rank}: {err}"
        quiet = isinstance(err, SharedFailure) and rank != 0
    else:
        text = first_line(err, limit=10_000)
        line = f"rank {rank}: {type(err).__name__}" + (f": {text}" if text != type(err).__name__ else "")
        quiet = _lost_peer(err)
        if os.environ.get("VITSEG_TRACEBACK"):
            import traceback

            traceback.print_exception(err)
    if not quiet:
        console.print(Text("error: ", style="bold red") + Text(line), soft_wrap=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def friendly_errors(fn: F) -> F:
    """Run a command; a `VitsegError` becomes `error: <message>` on stderr and exit code 2, Ctrl-C exit 130. Under
    torchrun any exception ends this rank at once with one line (`end_rank`), so no rank is left hanging."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VitsegError as err:
            if rank_and_world()[1] > 1:
                end_rank(err, 2)
            fail(str(err))
        except KeyboardInterrupt:
            console.print("interrupted", style="yellow")
            sys.exit(130)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as err:
            if rank_and_world()[1] > 1:
                end_rank(err, 1)
            raise

    return wrapper  # type: ignore[return-value]


# Options predict and eval share: declared once, so both commands spell and explain them alike.
WeightsOption = Annotated[Optional[Path], typer.Option(
    "--weights", "-w", help="vitseg .safetensors, official .pth, .onnx, or a zoo name (vitseg zoo) "
                            "[default: the shipped model, a synthetic-shapes demo]")]
BackboneWeightsOption = Annotated[Optional[Path], typer.Option(
    "--backbone-weights", help="The backbone file of a release made of two files (DINOv3: --weights HEAD "
                               "--backbone-weights VIT.pth).")]
SpecOption = Annotated[Optional[str], typer.Option(
    "--spec", "-s", help="Spec YAML or preset: the spec of an official .pth; on a vitseg file, merged onto the spec "
                         "it holds (a YAML may name only the fields it changes).")]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY.PATH=VALUE", help="Override one spec field (value read as YAML), e.g. --set test.mode=whole;"
                                            " repeatable; applied after --spec.")]
ModeOption = Annotated[Optional[str], typer.Option("--mode", help="whole or slide [default: the spec's test.mode]")]
CropOption = Annotated[Optional[str], typer.Option(
    "--crop-size", metavar="WxH", help="Slide window size: WxH, or N for a square [default: the spec's "
                                       "test.crop_size]")]
StrideOption = Annotated[Optional[str], typer.Option(
    "--stride", metavar="WxH", help="Slide window stride: WxH, or N for both [default: the spec's test.stride]")]
FlipOption = Annotated[Optional[bool], typer.Option("--flip/--no-flip",
                                                    help="Left-right flip test-time augmentation.")]
ScalesOption = Annotated[Optional[str], typer.Option("--scales", help="Multi-scale TTA ratios, e.g. 0.75,1,1.25.")]
TtaOption = Annotated[bool, typer.Option(
    "--tta", help="The release's official multi-scale + flip test (its <name>_ms preset), for a zoo name (--weights) "
                  "or an official preset (--spec).")]
BatchOption = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Windows per forward pass.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, or N (= cuda:N).")]
HalfOption = Annotated[bool, typer.Option(
    "--half", help="Half-precision autocast: float16 on CUDA, bfloat16 on CPUs with AVX512-BF16/AMX (deformable "
                   "attention stays float32); faster, labels may differ at a few boundary pixels.")]
CompileOption = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the model: each new input size first compiles (a minute or more), then runs "
                      "faster (H200, tiny, bf16: 2.4x). For many images of one size.")]


def renamed(new: Any, old: Any, name: str, old_name: str) -> Any:
    """The value of an option given by its name or by the hidden old spelling kept for old scripts (not both)."""
    if new is not None and old is not None:
        raise VitsegError(f"{old_name} is the old spelling of {name}: give only {name}")
    return new if new is not None else old

ThreadsOption = Annotated[Optional[int], typer.Option(
    "--threads", min=1,
    help="CPU threads of torch and OpenCV (also VITSEG_THREADS) [default: OMP_NUM_THREADS when set, else the CPUs "
         "this process may use (affinity, cgroup quota) / torchrun's local ranks - --workers, at least 1]")]


def set_threads(threads: Optional[int], workers: int) -> None:
    """Apply --threads (or the rule's default) before any computing; an oversubscription warning once, on rank 0."""
    from ..engine.threads import apply_threads

    def warn(message: str) -> None:
        if rank_and_world()[0] == 0:
            console.print(Text("warning: ", style="yellow") + Text(message), soft_wrap=True)

    apply_threads(threads, workers=workers, warn=warn)


def default_workers() -> int:
    """Loader processes for predict/eval: on 2 cores, workers only compete with torch's threads (bench/predict.py:
    64% of the bare forward rate with 2 workers, 90% with none)."""
    return min(4, max(0, (os.cpu_count() or 1) - 2))


WorkersOption = Annotated[int, typer.Option(
    "--workers", min=0, show_default=False,
    help="Image decoding processes (0: in the main process), so that on a small CPU decoding does not take cores "
         f"from the model [default: all cores but two, at most 4; here {default_workers()}]")]


def parse_size(text: Optional[str], option: str, minimum: int = 1) -> Optional[tuple[int, int]]:
    """A size option: 'WxH' (width first, as every size in vitseg) or 'N' for a square -> (height, width), the
    spec's order; None stays None."""
    if text is None:
        return None
    try:
        dims = [int(part) for part in text.lower().strip().split("x")]
    except ValueError:
        dims = []
    dims = dims * 2 if len(dims) == 1 else dims
    if len(dims) != 2 or min(dims) < minimum:
        raise VitsegError(f"{option} {text!r}: expected WxH (width x height) or one number for a square, e.g. "
                          f"640x480 or 512; each side at least {minimum}")
    return dims[1], dims[0]


def inference_overrides(mode: Optional[str], crop_size: Optional[str], stride: Optional[str],
                        flip: Optional[bool], scales: Optional[str], batch_size: Optional[int],
                        half: bool = False, compile_model: bool = False) -> dict[str, Any]:
    """The inference options shared by predict and eval, checked, as `InferenceSettings` overrides (None = spec)."""
    if mode is not None and mode not in ("whole", "slide"):
        raise not_one_of("--mode", mode, ("whole", "slide"))
    ratios = None
    if scales is not None:
        try:
            ratios = [float(s) for s in scales.split(",") if s.strip()]
        except ValueError:
            raise VitsegError(f"--scales {scales!r}: expected numbers separated by commas, e.g. 0.75,1,1.25") from None
        from ..spec import MAX_TEST_SCALE  # the bound `--set test.scales=[...]` gets from the spec

        if not ratios or not all(0 < r <= MAX_TEST_SCALE for r in ratios):  # NaN fails both comparisons
            raise VitsegError(f"--scales {scales!r}: each ratio must be greater than 0 and at most "
                              f"{MAX_TEST_SCALE:g}, e.g. 0.75,1,1.25")
    return {
        "mode": mode,
        "crop_size": parse_size(crop_size, "--crop-size"),
        "stride": parse_size(stride, "--stride"),
        "flip": flip,
        "scales": ratios,
        "batch_size": batch_size,
        "half": True if half else None,
        "compile": True if compile_model else None,
    }


def tta_overrides(tta: bool, weights: Optional[Path], spec: Optional[str], pairs: Optional[list[str]]) -> list[str]:
    """The `--set` pairs: with --tta first the whole official multi-scale `test` section, then the user's own."""
    pairs = list(pairs or [])
    if not tta:
        return pairs
    import json

    from ..releases.ms_presets import tta_test

    test = tta_test(str(weights) if weights is not None else None, spec)
    return [f"test={json.dumps(test)}"] + pairs
