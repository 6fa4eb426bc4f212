"""`rmscore score`: score a file in this process, no queue or database. The reference for every
other path: a job's results must equal what this command writes for the same lines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rmscore.cli.display import accuracy_table, progress_bar
from rmscore.cli.helptext import (
    DeviceOption,
    InputFile,
    KindOption,
    ModelPathOption,
    check_choice,
    env_default,
)
from rmscore.formats import Item, LineError, Parsed, error_record, kind_arg, open_input
from rmscore.inputs import iter_parsed
from rmscore.summary import Tally
from rmscore.vocabulary import CONTROL_TOKEN_MODES, KIND_CHOICES, OVERFLOW_MODES

if TYPE_CHECKING:
    from worker.engine import Scorer  # imports torch: loaded only when `score` runs

err = Console(stderr=True)
WINDOW = 2048  # items read, scored and written at a time: memory stays flat on any input size


def count_lines(path: Path) -> int | None:
    if path.name.lower().removesuffix(".gz").endswith((".json", ".parquet")):
        return None
    with open_input(path) as f:
        return sum(1 for line in f if line.strip())


def windows(parsed: Iterator[Parsed], size: int) -> Iterator[list[Parsed]]:
    window: list[Parsed] = []
    for p in parsed:
        window.append(p)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window


def score(
    input: InputFile,
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="FILE", help="Where to write result lines ('-' = stdout).")
    ] = "-",
    model: ModelPathOption = None,
    kind: KindOption = "auto",
    device: DeviceOption = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help=f"auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16. {env_default('dtype', 'auto')}"
        ),
    ] = None,
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(
            help=f"Token budget per micro-batch. {env_default('max_batch_tokens', '1024 on CPU, 32768 on CUDA')}"
        ),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help=f"Cap on conversations per micro-batch. {env_default('max_batch_size', 256)}")
    ] = None,
    overflow: Annotated[
        str | None,
        typer.Option(
            metavar="MODE", help=f"truncate (keep the end, flag it) or error. {env_default('overflow', 'truncate')}"
        ),
    ] = None,
    lanes: Annotated[
        int | None,
        typer.Option(
            help=f"CPU: micro-batches in flight at once. {env_default('lanes', 'one per torch thread')}", min=1
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also write the summary as JSON here.")
    ] = None,
    control_tokens: Annotated[
        str | None,
        typer.Option(
            metavar="MODE",
            help="card (control-token strings in content are control tokens, as the card does) or "
            f"neutralize (plain text; flagged). {env_default('control_tokens', 'card')}",
        ),
    ] = None,
) -> None:
    """Score conversations in-process and write one result line per input line, in input order."""
    from rmscore.settings import get_settings

    settings = get_settings()
    check_choice(kind, KIND_CHOICES, "kind")
    overflow_mode = check_choice(overflow, OVERFLOW_MODES, "overflow") or settings.overflow
    control = check_choice(control_tokens, CONTROL_TOKEN_MODES, "control-tokens") or settings.control_tokens

    from worker.engine import Scorer
    from worker.scoring import score_items

    model_id = model or settings.model
    with err.status(f"loading {model_id}"):
        engine = Scorer.load(
            model_id,
            device=device or settings.device,
            dtype=dtype or settings.dtype,
            max_batch_tokens=max_batch_tokens or settings.max_batch_tokens,
            max_batch_size=max_batch_size or settings.max_batch_size,
            overflow=overflow_mode,
            lanes=lanes or settings.lanes,
        )
    err.print(
        f"model {engine.model} on {engine.device} ({engine.dtype}), max_batch_tokens {engine.max_batch_tokens}, "
        f"lanes {engine.lanes}"
    )

    tally = Tally()
    started = time.perf_counter()
    out: IO[str] = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with progress_bar("scoring", err) as progress:
            task = progress.add_task("score", total=count_lines(input), rate="")
            parsed = iter_parsed(
                input,
                kind_arg(kind),
                **settings.line_limits,
            )
            for window in windows(parsed, WINDOW):
                for record in _score_window(engine, window, partial(score_items, control_tokens=control)):
                    tally.add(record)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                elapsed = time.perf_counter() - started
                progress.update(task, advance=len(window), rate=f"{tally.total / elapsed:,.1f} items/s")
    finally:
        if out is not sys.stdout:
            out.close()
    summary = run_summary(tally, engine, time.perf_counter() - started)
    print_summary(summary)
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")


def _score_window(
    engine: Scorer, window: list[Parsed], score_items: Callable[[Scorer, list[Item]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    items = [p for p in window if not isinstance(p, LineError)]
    scored = iter(score_items(engine, items))
    records = []
    for p in window:
        if isinstance(p, LineError):
            records.append(error_record(p.line, p.custom_id, p.code, p.message, p.subset))
        else:
            records.append(next(scored))
    return records


def run_summary(tally: Tally, engine: Scorer, seconds: float) -> dict[str, Any]:
    stats = engine.stats
    return {
        "lines": tally.total,
        "scored": tally.scored,
        "failed": tally.failed,
        "truncated": tally.truncated,
        "errors": dict(tally.errors_by_code),
        "accuracy": tally.accuracy,
        "accuracy_kind": "listwise" if tally.listwise else "pairwise",
        "seconds": seconds,
        "items_per_s": tally.total / seconds if seconds else 0.0,
        "tokens_per_s": stats.tokens / seconds if seconds else 0.0,
        "padding_efficiency": stats.padding_efficiency,
        "model": engine.identity,
        "max_batch_tokens": engine.max_batch_tokens,
    }


def print_summary(s: dict[str, Any]) -> None:
    table = Table(title="summary", show_header=False)
    table.add_row("lines", f"{s['lines']:,}")
    table.add_row("scored / failed", f"{s['scored']:,} / {s['failed']:,}")
    if s["errors"]:
        table.add_row("errors", ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items())))
    table.add_row("truncated", f"{s['truncated']:,}")
    table.add_row("items/s", f"{s['items_per_s']:,.1f}")
    table.add_row("tokens/s", f"{s['tokens_per_s']:,.0f}")
    table.add_row("padding efficiency", f"{s['padding_efficiency']:.3f}")
    err.print(table)
    if s["accuracy"]:
        err.print(accuracy_table(s["accuracy"], s["accuracy_kind"]))


def register(app: typer.Typer) -> None:
    app.command("score")(score)
