"""The `vitseg` command: one Typer app; each subcommand lives in `vitseg_cli/commands/` and calls the engine."""

from __future__ import annotations

import typer

from . import __version__
from .commands import data as data_cmds
from .commands import eval as eval_cmds
from .commands import export as export_cmds
from .commands import model_cmds
from .commands import predict as predict_cmds
from .commands import train as train_cmds
from .commands import visualize as visualize_cmds

app = typer.Typer(
    name="vitseg",
    help="Semantic segmentation at dataset scale with ViT-Adapter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"vitseg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Semantic segmentation at dataset scale with ViT-Adapter."""


for _module in (model_cmds, data_cmds, eval_cmds, predict_cmds, train_cmds, visualize_cmds, export_cmds,):
    _module.register(app)


if __name__ == "__main__":
    app()
