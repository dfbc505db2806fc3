"""`vitseg train`: parse options, run the training engine, report. Also works under
`torchrun --nproc_per_node N -m vitseg_cli train ...` (one process per GPU; only rank 0 writes and prints)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..data.formats import FORMATS
from ..torchrun import is_main_process
from .common import DeviceOption, SetOption, ThreadsOption, console, friendly_errors, parse_size, results_console

SPEC_HELP = ("Spec: a YAML file or a preset (nano..large, nano_mask2former, or an official release name: "
             "`vitseg info --presets` lists them); the options below override its train section. Class count, names "
             "and palette come from the dataset unless the spec sets them.")
FROM_SPEC = "[default: the spec's train.{}]"


@friendly_errors
def train(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (new or empty; or an existing run with --resume)."),
    spec: Optional[str] = typer.Option(None, "--spec", "-s", help=SPEC_HELP + " Optional with --resume."),
    set_values: SetOption = None,
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Training dataset folder (optional with --resume)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help=f"Dataset format: {', '.join(FORMATS)} [default: folder]"),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Validation dataset folder (same format)."),
    iters: Optional[int] = typer.Option(None, "--iters", min=1,
                                        help="Optimizer steps in the whole run " + FROM_SPEC.format("iters")),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1,
                                             help="Effective batch of one step (all processes x accumulation) "
                                                  + FROM_SPEC.format("batch_size")),
    crop_size: Optional[str] = typer.Option(None, "--crop-size", metavar="WxH",
                                            help="Training crop: WxH, or N for a square (each side at least 16) "
                                                 + FROM_SPEC.format("crop_size")),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0,
                                       help="Base learning rate (top layers) " + FROM_SPEC.format("lr")),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained",
                                              help="Pretraining file of the backbone's blocks: timm/DeiT/AugReg "
                                                   "ViT (.pth or timm .safetensors) or official BEiT/BEiTv2."),
    init_from: Optional[Path] = typer.Option(None, "--init-from",
                                             help="Start from a vitseg or official checkpoint or a zoo name (any "
                                                  "class count)."),
    backbone_weights: Optional[Path] = typer.Option(None, "--backbone-weights",
                                                    help="With --init-from: the backbone file of a release made of "
                                                         "two files (DINOv3)."),
    unfreeze: bool = typer.Option(False, "--unfreeze",
                                  help="Also train the ViT that DINOv2/DINOv3 adapters keep frozen (freeze_vit), "
                                       "with layer-wise lr decay (same as --set model.backbone.freeze_vit=false)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out where it stopped."),
    device: DeviceOption = "auto",
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="Mixed precision (CUDA only) "
                                                                    + FROM_SPEC.format("amp")),
    accum: Optional[int] = typer.Option(None, "--accum", min=1,
                                        help="Gradient accumulation steps " + FROM_SPEC.format("accum")),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Data loading processes per GPU " + FROM_SPEC.format("workers")),
    threads: ThreadsOption = None,
    eval_every: Optional[int] = typer.Option(None, "--eval-every", min=0, help="Validate every N iterations (0: off) "
                                                                                + FROM_SPEC.format("eval_every")),
    save_every: Optional[int] = typer.Option(None, "--save-every", min=1, help="Save state every N iterations "
                                                                                + FROM_SPEC.format("save_every")),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Random seed " + FROM_SPEC.format("seed")),
    log_every: Optional[int] = typer.Option(None, "--log-every", min=1,
                                            help="Write a log.csv row every N iterations "
                                                 "[default: min(50, max(1, iters / 20))]"),
    logger: Optional[str] = typer.Option(None, "--logger", help="Metric loggers besides log.csv: tb, mlflow, wandb or "
                                         "a plugin, comma-separated; none for none [default: tb when installed]"),
    stop_at: Optional[int] = typer.Option(None, "--stop-at", min=1,
                                          help="Save and stop at this iteration (the schedule still runs to --iters);"
                                               " continue later with --resume."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a segmentor (ViT-Adapter, BEiT-Adapter, DINOv2/DINOv3 adapters; UperNet or Mask2Former head, as the
    spec says) with the official recipe: layer-decay AdamW, warmup + poly, mmseg augmentation."""
    from ..engine.train import TrainOptions, train as run_training

    overrides = [*(set_values or []), *(["model.backbone.freeze_vit=false"] if unfreeze else [])]
    opts = TrainOptions(out=out, spec=spec, spec_overrides=overrides, data=data, fmt=fmt,
                        val_data=val_data, iters=iters, batch_size=batch_size,
                        crop_size=parse_size(crop_size, "--crop-size", minimum=16), lr=lr, amp=amp,
                        accum=accum, workers=workers, eval_every=eval_every, save_every=save_every, seed=seed,
                        pretrained=pretrained, init_from=init_from, resume=resume, device=device,
                        backbone_weights=backbone_weights,
                        log_every=log_every, loggers=logger, stop_at=stop_at, quiet=quiet, threads=threads,
                        command=["vitseg", *sys.argv[1:]])
    result = run_training(opts, say=lambda msg: console.print(msg, soft_wrap=True, markup=False))
    if result.interrupted:
        sys.exit(130)
    if is_main_process():
        best = f", best mIoU {result.best_score:.4f}" if result.best_score is not None else ""
        loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
        results_console.print(f"done: iteration {result.iteration}{loss}{best}; weights in "
                              f"{result.out / 'last.safetensors'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
