"""README drift: every `rmscore …` command line it shows exists with the options it uses, and its
first screen tells a newcomer what to type (make demo, how to get the command, submit, jobs, report)."""

from __future__ import annotations

import re
from typing import Any

from testkit import REPO

from rmscore.cli import command

README = (REPO / "README.md").read_text(encoding="utf-8")
FIRST_SCREEN = "\n".join(README.splitlines()[:60])


def code_lines(text: str = README) -> list[str]:
    """Lines of the text's shell blocks that run rmscore."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.strip() for b in blocks for line in b.splitlines()]
    # A command at the start of a line, or captured: `JOB=$(rmscore submit pairs.jsonl --wait)`.
    found = [m.group(1) for line in lines if (m := re.match(r"^(?:[A-Z_]+=\$\()?(rmscore [^)]*)", line))]
    return found


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command that `rmscore WORDS…` runs, and the words that named it."""
    cmd, used = command(), []
    for w in words:
        subs = getattr(cmd, "commands", None)
        if not subs or w not in subs:
            break
        cmd, used = subs[w], [*used, w]
    return cmd, used


def test_every_command_line_in_the_readme_runs_a_real_command_and_options() -> None:
    lines = code_lines()
    assert len(lines) >= 10
    for line in lines:
        argv = line.split("#", 1)[0].split()[1:]
        words = [a for a in argv if not a.startswith("-")]
        cmd, used = resolve(words)
        assert (used or not words) and not (used and getattr(cmd, "commands", None)), (
            f"README runs a command rmscore lacks: {line}"
        )
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        # A negative number is an option's value (`--min-score -5`), not an option.
        for opt in (a.split("=")[0] for a in argv if a.startswith("-") and not re.fullmatch(r"-[\d.]+", a)):
            assert opt in known, f"README uses {opt}, which `rmscore {' '.join(used)}` lacks: {line}"


def test_the_first_screen_says_what_to_type() -> None:
    for must in ("make demo", "source .venv/bin/activate", ".venv/bin/rmscore", "rmscore up", "rmscore submit",
                 "rmscore jobs", "rmscore report", "RMSCORE_MODEL="):  # fmt: skip
        assert must in FIRST_SCREEN, f"README's first screen does not say {must!r}"
    shown = "\n".join(code_lines(FIRST_SCREEN))
    written = set(re.findall(r"^rmscore \S+ .*-o (\S+)", shown, flags=re.M))  # e.g. `rmscore sample -o pairs.jsonl`
    for path in re.findall(r"^rmscore submit (\S+)", shown, flags=re.M):
        assert path in written or (REPO / path).is_file(), (
            f"README's first screen submits {path}, which neither ships with the repository nor is written before"
        )


def test_readme_lists_every_code_a_result_line_can_carry() -> None:
    """The README's list of error codes names each one a line's result can hold, those a job that
    ended without scoring a line gives it (`db.results.NOT_SCORED`) included."""
    import ast

    from db.results import NOT_SCORED

    listed = README.split("Error codes:", 1)[1].split("\n\n", 1)[0]
    # Codes the parser gives a bad line: the code argument of every `_Bad(code, …)` / `LineError(line, id, code, …)`.
    position = {"_Bad": 0, "LineError": 2}
    source = ast.parse((REPO / "rmscore" / "formats.py").read_text(encoding="utf-8"))
    parsing = {
        node.args[position[node.func.id]].value
        for node in ast.walk(source)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in position
        and len(node.args) > position[node.func.id]
        and isinstance(node.args[position[node.func.id]], ast.Constant)
    }  # fmt: skip
    assert {"invalid_json", "kind_mismatch", "line_too_long"} <= parsing
    for code in sorted(parsing | {code for code, _ in NOT_SCORED.values()}):
        assert f"`{code}`" in listed, code
