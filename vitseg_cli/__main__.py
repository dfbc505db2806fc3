"""Allow `python -m vitseg_cli ...` (and `torchrun -m vitseg_cli ...`)."""

from .cli import app

app()
