"""`--help` shows real defaults and reads like a well-kept CLI's: no `<bool>`/`<str>` type labels,
no "[default: …]" eaten by markup, and every default that comes from a setting names the setting
and its true built-in value (checked against `Settings`, so help cannot drift from it)."""

from __future__ import annotations

import io
import re
import subprocess
from contextlib import redirect_stdout
from typing import Any

import pytest
from testkit import CLI, clean_env

from rmscore.cli import command
from rmscore.settings import Settings

ENV_DEFAULT = re.compile(r"\[default: \$RMSCORE_(\w+), else ([^\]]+)\]")
# Settings whose built-in default depends on the machine, so help describes it in words.
DESCRIBED = {
    "max_batch_tokens": "1024 on CPU, 32768 on CUDA",
    "lanes": "one per torch thread",
    "worker_metrics_port": "off",
}
# Options whose absence means "not given" (nothing to default to): they need no [default: …].
NO_DEFAULT = {"metadata", "summary_json", "status", "check", "models"}


def leaves(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(cmd, "commands", None)
    if not subs:
        return [(path, cmd)]
    return [leaf for name, sub in sorted(subs.items()) for leaf in leaves(sub, (*path, name))]


def help_of(path: tuple[str, ...]) -> str:
    """The help text exactly as `rmscore … --help` prints it (main's command tree, in this process)."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = command().main(
            [*path, "--help"], prog_name="rmscore", standalone_mode=False, terminal_width=1000, max_content_width=1000
        )
    assert code == 0, out.getvalue()
    return " ".join(out.getvalue().split())


COMMANDS = leaves(command())


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p))
def test_help_has_no_type_labels_and_shows_defaults(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert not re.search(r"<(bool|str|int|float|path|file|dir)[^>]*>", text), text
    assert "{" not in text.split("Options:")[0], "arguments are shown as {name}"
    cmd = dict(COMMANDS)[path]
    for param in cmd.params:
        takes_value = not getattr(param, "is_flag", False) and param.param_type_name == "option"
        if takes_value and param.default is None and param.name not in NO_DEFAULT:
            assert "[default:" in (param.help or ""), f"rmscore {' '.join(path)} {param.opts[0]} shows no default"


def test_setting_defaults_in_help_are_the_real_ones() -> None:
    seen = set()
    for path, _ in COMMANDS:
        for name, shown in ENV_DEFAULT.findall(help_of(path)):
            field = name.lower()
            assert field in Settings.model_fields, f"help names RMSCORE_{name}, which is no setting"
            real = DESCRIBED.get(field, Settings.model_fields[field].default)
            assert shown == str(real), f"help says RMSCORE_{name} defaults to {shown!r}; it is {real!r}"
            seen.add(field)
    assert {"model", "chunk_size", "overflow", "device", "max_batch_tokens"} <= seen


def test_the_installed_command_prints_it() -> None:
    """The same through a real process: the console entry point, defaults intact, --version."""
    done = subprocess.run([*CLI, "submit", "--help"], env=clean_env(COLUMNS="200"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "[default: $RMSCORE_MODEL, else NCSOFT/Llama-3-OffsetBias-RM-8B]" in text
    assert "[default: $RMSCORE_CHUNK_SIZE, else 256]" in text and "--wait Show" in text
    version = subprocess.run([*CLI, "--version"], env=clean_env(), capture_output=True, text=True)
    from rmscore import __version__

    assert version.returncode == 0 and version.stdout.strip() == f"rmscore {__version__}"


def test_help_says_what_options_do_in_each_mode() -> None:
    """Options whose effect depends on the mode or the file name say so, rather than a run-time note."""
    submit = help_of(("submit",))
    assert "only without RMSCORE_API_URL" in submit and "server's RMSCORE_CHUNK_SIZE decides" in submit
    results = help_of(("results",))
    for suffix in (".jsonl,", ".jsonl.gz", ".csv", ".parquet"):
        assert suffix in results, suffix
    assert "--model MODEL" in results and "every model" in results
    assert "`local` is the tenant of jobs submitted without RMSCORE_API_URL" in help_of(("keys", "create"))
