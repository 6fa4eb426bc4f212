"""`rmscore make-tiny-model`: build the offline stand-in model used by tests, demos and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def make_tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the model into.")],
    size: Annotated[str, typer.Option(help="tiny (<1M params, tests) or small (~25M, benchmarks).")] = "tiny",
    seed: Annotated[int, typer.Option(help="Seed for the random weights.")] = 0,
) -> None:
    """Write a tiny LlamaForSequenceClassification with the real model's tokenizer conventions."""
    from rmscore.cli.helptext import check_choice
    from worker.tiny_model import SHAPES, make_tiny_model

    shape = check_choice(size, tuple(SHAPES), "size") or "tiny"
    path = make_tiny_model(out_dir, shape, seed)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("make-tiny-model")(make_tiny_model)
