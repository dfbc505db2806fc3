"""The `vitseg` command: one Typer app; each subcommand lives in `vitseg_cli/commands/` and calls the engine.

Start-up stays light: nothing here or in the command modules imports torch at module level (the engines are imported
inside the commands), so `--help`, `--version`, `zoo` and `data synth` answer at once. Help text is printed as
written (no rich markup, which would eat `[brackets]`), and every usage error is one line.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

try:  # recent typer vendors click; its usage errors derive from TyperException
    from typer import TyperException as UsageErrorBase
except ImportError:  # older typer on click
    from click import ClickException as UsageErrorBase

from ._version import __version__
from .commands import data as data_cmds
from .commands import eval as eval_cmds
from .commands import export as export_cmds
from .commands import model_cmds
from .commands import predict as predict_cmds
from .commands import train as train_cmds
from .commands import visualize as visualize_cmds
from .commands import zoo as zoo_cmds


class OneLineErrors(TyperGroup):
    """A click usage error (unknown option, bad value, missing argument) becomes `error: ...` on one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
        except UsageErrorBase as err:
            if not standalone_mode:
                raise
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare command group: its help is the answer
                err.show()
                sys.exit(err.exit_code)
            from .commands.common import fail

            where = getattr(getattr(err, "ctx", None), "command_path", "vitseg")
            try:
                fail(f"{err.format_message()} (see: {where} --help)", code=err.exit_code)
            except typer.Exit as done:
                sys.exit(done.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            print("aborted", file=sys.stderr)
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="vitseg",
    cls=OneLineErrors,
    help="Semantic segmentation at dataset scale with ViT-Adapter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


for _module in (model_cmds, data_cmds, eval_cmds, predict_cmds, train_cmds, visualize_cmds, export_cmds, zoo_cmds):
    _module.register(app)


if __name__ == "__main__":
    app()
