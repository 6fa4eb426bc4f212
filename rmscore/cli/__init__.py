"""The `rmscore` command. Each module here adds the commands of one area; heavy imports (torch,
transformers, celery) happen inside the commands so `rmscore --help` stays fast.

`main` runs the app under one failure handler (`rmscore.cli.diagnose`): an expected failure prints
its cause and fix in one or two lines, never a traceback, unless `--debug` asks for one."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# Plain help, not rich markup: markup swallowed "[default: …]" in help texts and labelled flags <bool>.
app = typer.Typer(
    name="rmscore",
    help="Score conversations with a reward model, from one file to a GPU fleet.\n\n"
    "Start with `rmscore demo` (the whole stack on a tiny test model), `rmscore score FILE` (no services), "
    "or `rmscore up` and then `rmscore submit FILE --wait`, `rmscore jobs`, `rmscore report JOB`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"max_content_width": 110},
    pretty_exceptions_enable=False,
)


class _State:
    """Global options, read by `main` after the command ran (or failed)."""

    debug = False


def _version(value: bool) -> None:
    if value:
        from rmscore import __version__

        typer.echo(f"rmscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback when a command fails.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Global options (the app's help text above is what `rmscore --help` shows)."""
    _State.debug = debug


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register()


def command() -> typer.core.TyperGroup:
    """The click command tree `main` runs, with help tidied (`rmscore.cli.helptext`)."""
    from rmscore.cli.helptext import tidy

    return tidy(typer.main.get_command(app))


def main() -> None:
    """The console script: run the command; an expected failure is its cause and fix, exit code ≠ 0."""
    try:
        command()(prog_name="rmscore")
    except Exception as e:
        from rmscore.cli.diagnose import explain

        failure = None if _State.debug else explain(e)
        if failure is None:
            raise
        for line in failure.lines():
            print(line, file=sys.stderr)
        sys.exit(failure.code)
