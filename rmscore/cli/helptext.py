"""How `--help` reads: click's plain layout, real defaults, names instead of type labels.

Typer labels every value `<str>`, `<int range>`, `<path>` and every flag `<bool>`, and its rich
markup ate "[default: …]" from help texts. `tidy` gives each option a metavar the way well-kept
CLIs do (`--model MODEL`, `--limit N`, `-o FILE`) and shows arguments as `INPUT`, `JOB`.
Defaults that come from a setting read "[default: $RMSCORE_X, else V]" (`env_default`), with V the
built-in value; tests/cli/test_help.py checks every V against `Settings`, so they cannot drift.
Written as text, not read from `Settings`, so `rmscore --help` does not import pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperOption

from rmscore.vocabulary import JOB_KINDS

T = TypeVar("T", bound=str)

DEFAULT_MODEL = "NCSOFT/Llama-3-OffsetBias-RM-8B"

# The input file and its kind, as `score` and `submit` both take them.
InputFile = Annotated[
    Path, typer.Argument(help="JSONL (or .jsonl.gz, or one .json document) to score.", exists=True)
]
KindOption = Annotated[str, typer.Option(help=f"{', '.join(JOB_KINDS)}, or auto (from the first line).")]


def comma_list(value: str | None) -> list[str] | None:
    """'a, b' -> ['a', 'b'] (empty names dropped); None when not given."""
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


def check_choice(value: str | None, allowed: tuple[T, ...], option: str) -> T | None:
    """`value` as the word of `allowed` it is (typed as such), None when not given; a BadParameter
    naming the allowed words otherwise."""
    from rmscore.vocabulary import choices, one_of

    try:
        return one_of(value, allowed)
    except ValueError:
        raise typer.BadParameter(f"{option} must be {choices(allowed)}", param_hint=f"--{option}") from None


def env_default(setting: str, value: object) -> str:
    """'[default: $RMSCORE_<SETTING>, else <value>]': the setting wins, else the built-in default."""
    return f"[default: $RMSCORE_{setting.upper()}, else {value}]"


# The model to load and its device, as `score`, `worker` and `up` take them (one help text each).
ModelPathOption = Annotated[
    str | None, typer.Option(help=f"Model directory or hub id. {env_default('model', DEFAULT_MODEL)}")
]
DeviceOption = Annotated[str | None, typer.Option(help=f"auto, cpu, cuda, cuda:1 … {env_default('device', 'auto')}")]


class _PlainArgument(TyperArgument):
    """An argument shown by its name alone (`INPUT`), as click shows it, not `{input} <path>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.upper()
        return name if self.required else f"[{name}]"

    def _rich_display_name(self) -> str:
        return self.display_name_raw.upper()


def _metavar(opt: TyperOption) -> str:
    desc = opt.type_descriptor
    if desc.is_path:
        return "PATH"
    if desc.annotation is int:
        return "N"
    if desc.annotation is float:
        return "SECONDS" if "timeout" in (opt.name or "") else "NUMBER"
    return (opt.name or "value").upper()


def tidy(cmd: Any) -> Any:
    """Give every option without one a metavar, and every argument its plain name, through the tree.

    Typer (0.29) builds its own parameter classes on a vendored click, hence its types here."""
    for param in cmd.params:
        if isinstance(param, TyperOption) and not param.is_flag and not param.count and param.metavar is None:
            param.metavar = _metavar(param)
        elif isinstance(param, TyperArgument):
            param.__class__ = _PlainArgument
    for sub in getattr(cmd, "commands", {}).values():
        tidy(sub)
    return cmd
