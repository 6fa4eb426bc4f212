"""The `rmscore` command. Each module here adds the commands of one area; heavy imports (torch,
transformers, celery) happen inside the commands so `rmscore --help` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rmscore",
    help="Score conversations with a reward model, from one file to a GPU fleet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register()


def main() -> None:
    app()
