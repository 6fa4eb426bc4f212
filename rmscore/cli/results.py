"""What `rmscore results` does with a job's records, local or over the API: which models, the
`model` field, the file format from the suffix, and the accuracy line after it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape

from rmscore.errors import BadRequest

err = Console(stderr=True)


def pick_models(available: list[str], wanted: str | None) -> list[str]:
    """The models to export: `wanted` if the job has it, else all of them (the job's own first)."""
    if wanted is None:
        return available
    if wanted not in available:
        raise BadRequest(f"the job is not scored by {wanted}; its models: {', '.join(available)}", code="unknown_model")
    return [wanted]


def tagged(records: Iterable[dict[str, Any]], model: str) -> Iterator[dict[str, Any]]:
    """Records with the model that gave them, right after `line`: in a job scored by several models
    each line appears once per model, and without it two rows of one line could not be told apart."""
    for rec in records:
        yield {"line": rec["line"], "model": model, **{k: v for k, v in rec.items() if k != "line"}}


def export(
    read: Callable[[str], Iterable[dict[str, Any]]],
    models: list[str],
    wanted: str | None,
    output: str,
    kind: str,
) -> int:
    """Write the records `read(model)` gives for each picked model, one model after the other (each in
    input order), to `output` ('-' = stdout as JSONL; else the format its suffix names). Jobs scored by
    several models get a `model` field (column) on every record, even when one model is picked, so
    files of one job always have the same shape. Returns the number of records written."""
    from rmscore.export import format_of, write_records

    format_of(output)  # an unknown suffix is refused before the first read
    picked = pick_models(models, wanted)
    several = len(models) > 1

    def records() -> Iterator[dict[str, Any]]:
        for m in picked:
            yield from (tagged(read(m), m) if several else read(m))

    if output != "-":
        return write_records(records(), output, kind, with_model=several)
    n = 0
    for rec in records():
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def print_accuracy(summary: dict[str, Any], wanted: str | None) -> None:
    """One accuracy line per exported model of a pairwise job (its own model's only, for one model)."""
    by_model = summary.get("by_model") or {summary.get("model"): {"accuracy": summary.get("accuracy")}}
    several = len(by_model) > 1
    unit = "lines" if summary.get("kind") == "listwise" else "pairs"
    for name, row in by_model.items():
        acc = row.get("accuracy")
        if not acc or (wanted is not None and name != wanted):
            continue
        parts = ", ".join(f"{k} {100 * v['accuracy']:.1f}% ({v['n']})" for k, v in acc["subsets"].items())
        who = f"{name}: " if several else ""
        err.print(
            escape(f"accuracy: {who}overall {100 * acc['overall']:.1f}% over {acc['n']:,} {unit}; {parts}"),
            highlight=False,
            soft_wrap=True,
        )
