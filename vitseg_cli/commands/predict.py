"""`vitseg predict`: segment images, folders, globs or lists of images into an output folder (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..torchrun import is_main_process
from .common import (BackboneWeightsOption, BatchOption, CompileOption, CropOption, DeviceOption, FlipOption,
                     HalfOption, ModeOption, ScalesOption, SetOption, SpecOption,
                     TtaOption,
                     StrideOption, ThreadsOption, WeightsOption, WorkersOption,
                     console, default_workers, fail, friendly_errors, inference_overrides, results_console,
                     set_threads,
                     tta_overrides)


@friendly_errors
def predict(
    sources: list[str] = typer.Argument(None, metavar="SOURCE...",
                                        help="Image files, folders (searched recursively), globs or .txt lists."),
    weights: WeightsOption = None,
    backbone_weights: BackboneWeightsOption = None,
    spec: SpecOption = None,
    set_values: SetOption = None,
    out: Optional[str] = typer.Option(None, "--out", "-o",
                                      help="Output folder, or an fsspec URL such as s3://bucket/run [default: "
                                           "vitseg-out, or vitseg-out2, ... when that holds another run]"),
    mode: ModeOption = None,
    crop_size: CropOption = None,
    stride: StrideOption = None,
    flip: FlipOption = None,
    scales: ScalesOption = None,
    tta: TtaOption = False,
    batch_size: BatchOption = None,
    device: DeviceOption = "auto",
    half: HalfOption = False,
    compile_model: CompileOption = False,
    save: str = typer.Option("masks,color,overlay", "--save", help="Outputs: masks, color, overlay, probs, rle."),
    alpha: float = typer.Option(0.5, "--alpha", min=0.0, max=1.0, help="Overlay opacity of the colours."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start OUT afresh: remove what an earlier vitseg run "
                                                                 "wrote there (never other files) and redo every input."),
    identity: str = typer.Option("stat", "--identity", help="How an input is told from another file under its "
                                                            "output name: stat (path, size, mtime) or hash (sha256)."),
    json_lines: bool = typer.Option(False, "--json", help="Print each image's manifest line on stdout (progress "
                                                          "and summary stay on stderr)."),
    workers: WorkersOption = default_workers(),
    threads: ThreadsOption = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, notes or summary; errors only."),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch or onnx [default: onnx for a .onnx "
                                                                  "--weights file, else torch]"),
    vid_stride: int = typer.Option(1, "--vid-stride", min=1, help="Videos: keep every K-th frame."),
    shard: str = typer.Option(None, "--shard", metavar="I/N",
                              help="Only shard I of N of the sorted inputs (every N-th from the I-th); writes "
                                   "OUT/predict-I-of-N.json [default: in a Slurm array the task's own share, else "
                                   "all]"),
    out_format: str = typer.Option("files", "--out-format",
                                   help="files (OUT/<kind>/...) or tar (OUT/shards/<shard>.tar per input tar shard)."),
    engine: str = typer.Option("torch", "--engine", help="torch (this process, or torchrun) or ray (Ray Data)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="--engine ray: the cluster [default: a local one]"),
    num_gpus_per_worker: float = typer.Option(0.0, "--num-gpus-per-worker", min=0.0,
                                              help="--engine ray: GPUs per predictor actor (0: CPU actors)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="--engine ray: predictor actors."),
    merge_records: str = typer.Option(None, "--merge-records", metavar="OUT",
                                       help="Merge OUT's shard records into OUT/predict.json (no SOURCE); exit 1 "
                                            "when shards are missing."),
) -> None:
    """Segment every image and video: OUT/masks (class indices), OUT/color, OUT/overlay, OUT/probs, OUT/rle (COCO
    RLE lines), OUT/video (overlay videos; their frames' masks in OUT/masks/<video>/), OUT/manifest.jsonl (a line
    per image: input identity, outputs, classes, scores), OUT/predict.json.

    Existing outputs are skipped (rerun to resume) when OUT was made with the same weights and settings from the same
    input files; kinds added to --save are made from the saved masks. Unreadable files are reported and the exit
    code is 1. Also runs under torchrun (the inputs are shared across ranks)."""
    if merge_records is not None:
        _merge(merge_records, sources)
        return
    if not sources:
        fail("give at least one SOURCE (or --merge-records OUT)")
    from ..data.shards import resolve_shard
    from ..engine.outputs import parse_save
    from ..engine.predict import PredictOptions, run_predict

    if out_format not in ("files", "tar"):
        fail(f"--out-format {out_format}: must be files or tar")
    if engine not in ("torch", "ray"):
        fail(f"--engine {engine}: must be torch or ray")
    from ..data.storage import is_url

    overrides = inference_overrides(mode, crop_size, stride, flip, scales, batch_size, half, compile_model)
    opts = PredictOptions(sources=list(sources), out=out if out is None or is_url(out) else Path(out),
                          weights=weights, spec=spec,
                          overrides=overrides,
                          spec_overrides=tta_overrides(tta, weights, spec, set_values), device=device,
                          save=parse_save(save), alpha=alpha,
                          overwrite=overwrite, workers=workers, quiet=quiet, backend=backend,
                          vid_stride=vid_stride, backbone_weights=backbone_weights, shard=resolve_shard(shard),
                          identity=identity, json=json_lines, out_format=out_format, engine=engine,
                          ray={"address": ray_address, "num_gpus_per_worker": num_gpus_per_worker,
                               "concurrency": concurrency})
    set_threads(threads, workers)
    summary = run_predict(opts, console=console)
    # under torchrun rank 0 holds every rank's counts; another rank exiting non-zero first would make torchrun stop
    # rank 0 before it has written predict.json
    if summary.exit_code and is_main_process():
        raise typer.Exit(summary.exit_code)


def _merge(out: str, sources: list[str]) -> None:
    from ..data.storage import redact
    from ..engine.records import merge_records
    from ..engine.remote_out import open_remote

    if sources:
        fail("--merge-records OUT takes no SOURCE")
    remote = open_remote(out, "merge-records")  # a URL: its records are fetched, merged, the merge uploaded
    record, missing = merge_records(remote.staging if remote is not None else Path(out))
    if remote is not None:
        remote.publish_records()
    where = redact(out).rstrip("/") + "/predict.json" if remote is not None else Path(out) / "predict.json"
    results_console.print(f"merged {len(record['shards'])} of {record['shard_count']} shards: processed "
                          f"{record['processed']}, skipped {record['skipped']}, failed {len(record['failed'])} -> "
                          f"{where}")
    if missing:
        fail(f"missing shards of {redact(out)}: {', '.join(missing)}", code=1)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
