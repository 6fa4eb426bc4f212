"""What the CLI prints about jobs and runs: one place for the tables `score`, `status` (local or
over the API) and `demo` share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from rich.progress import Progress

err = Console(stderr=True)


def progress_bar(label: str, console: Console, *, eta: bool = True) -> Progress:
    """The CLI's one progress bar: `label` (text, or a task field such as "{task.fields[status]}"),
    bar, done / total, the task's `rate` field, time elapsed and, with `eta`, time remaining.
    `console` is the caller's, so the bar and the caller's own lines never draw over each other."""
    # Imported here: the commands that draw no bar (and `--help`) need not load rich.progress.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}")]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()] if eta else [TimeElapsedColumn()]
    return Progress(*columns, console=console)


def accuracy_table(acc: dict[str, Any], kind: str = "pairwise") -> Table:
    """Accuracy per subset and overall (`rmscore.summary.accuracy_summary`'s shape); a listwise job's
    is the mean RewardBench 2 credit of its labelled lines."""
    listwise = kind == "listwise"
    title = "best-of-N accuracy (RewardBench 2 credit)" if listwise else "preference accuracy (chosen > rejected)"
    t = Table(title=title)
    t.add_column("subset")
    t.add_column("lines" if listwise else "pairs", justify="right")
    t.add_column("accuracy", justify="right")
    for name, row in acc["subsets"].items():
        t.add_row(escape(name), f"{row['n']:,}", f"{100 * row['accuracy']:.1f}%")
    t.add_row("[b]overall[/b]", f"{acc['n']:,}", f"[b]{100 * acc['overall']:.1f}%[/b]")
    return t


def rate_unit(models: list[str]) -> str:
    """What a job's rate counts: lines, or results when each line is scored by several models. The
    progress bars and `status` say the same, so the figure reads the same everywhere."""
    return "results/s" if len(models) > 1 else "lines/s"


def print_job(s: dict[str, Any]) -> None:
    """A job summary (`db.jobs.job_summary` / `GET /v1/jobs/{id}`) as tables on stderr."""
    t = Table(title=f"job {s['id']}", show_header=False)
    counts = s["request_counts"]
    t.add_row("status", s["status"] + (f" ({s['error']})" if s.get("error") else ""))
    models = s.get("models") or [s["model"]]
    if len(models) > 1:
        # `total` counts results, one per line and model: a 50-line file scored by two models has 100.
        t.add_row("kind / models", escape(f"{s['kind']} / {', '.join(models)}"))
        t.add_row("lines", f"{counts['total'] // len(models):,}, each scored by {len(models)} models")
        t.add_row("scored / failed", f"{counts['completed']:,} / {counts['failed']:,} of {counts['total']:,} results")
    else:
        t.add_row("kind / model", escape(f"{s['kind']} / {s['model']}"))
        t.add_row("lines", f"{counts['total']:,}")
        t.add_row("scored / failed", f"{counts['completed']:,} / {counts['failed']:,}")
    if counts.get("responses") is not None:
        t.add_row("responses", f"{counts['responses']:,} on the lines that parsed")
    for k in ("created_at", "started_at", "completed_at", "cancelled_at", "failed_at"):
        if s.get(k):
            t.add_row(k.replace("_", " "), s[k])
    if s.get("items_per_second"):
        t.add_row(rate_unit(models), f"{s['items_per_second']:,.1f}")
    err.print(t)
    if s.get("best_of_n"):
        err.print(best_of_n_table(s["best_of_n"]))
    if s.get("accuracy"):
        err.print(accuracy_table(s["accuracy"], s["kind"]))
    for table in evaluation_tables(s.get("evaluation")):
        err.print(table)
    if s.get("by_model"):
        m = Table(title="models")
        m.add_column("model")
        m.add_column("lines" if s["kind"] == "listwise" else "pairs", justify="right")
        m.add_column("accuracy", justify="right")
        for name, row in s["by_model"].items():
            macc = row.get("accuracy")
            m.add_row(escape(name), f"{macc['n']:,}" if macc else "0", f"{100 * macc['overall']:.1f}%" if macc else "—")
        err.print(m)
        # On a line of its own: a table title would wrap to the table's narrow width.
        unit = "lines" if s["kind"] == "listwise" else "pairs"
        hint = f"rmscore compare {escape(s['id'])}: their agreement and the {unit} they disagree on"
        err.print(hint, highlight=False)


def best_of_n_table(b: dict[str, Any]) -> Table:
    """A listwise job's best and worst scores and their margin (`db.listwise.best_of_n_spread`)."""

    def num(x: float | None) -> str:
        return "—" if x is None else f"{x:.4f}"

    t = Table(title=f"best of N ({b['n']:,} lines scored)")
    for name in ("", "mean", "min", "max"):
        t.add_column(name, justify="left" if not name else "right")
    for key, label in (("best", "best score"), ("worst", "worst score"), ("margin", "best − worst")):
        t.add_row(label, *(num(b[key][a]) for a in ("mean", "min", "max")))
    return t


def evaluation_tables(evaluation: dict[str, Any] | None) -> list[Any]:
    """Rich tables for `rmscore status`: RewardBench sections and the EvalBiasBench table, those that
    apply to `evaluation` (`rmscore.evaluation.evaluate` / `evaluate_accuracy` output)."""

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    def sections(title: str, heads: tuple[str, str], rows: list[tuple[str, float | None, str]], total: Any) -> Table:
        t = Table(title=title)
        t.add_column(heads[0])
        t.add_column("score", justify="right")
        t.add_column(heads[1], justify="right")
        for name, score, note in rows:
            t.add_row(name, pct(score), note)
        t.add_row("[b]score[/b]", f"[b]{pct(total[0])}[/b]", total[1])
        return t

    tables: list[Any] = []
    rb = (evaluation or {}).get("rewardbench")
    if rb:
        rows = [
            (s["section"], s["score"], f"{len(s['subsets'])} of {len(s['subsets']) + len(s['missing'])}")
            for s in rb["sections"]
        ]
        title = "RewardBench sections (per-prompt weighted, as RewardBench)"
        tables.append(sections(title, ("section", "subsets"), rows, (rb["score"], "mean of the four")))
    rb2 = (evaluation or {}).get("rewardbench2")
    if rb2:
        rows = [(s["section"], s["score"], f"{s['n']:,}") for s in rb2["sections"]]
        title = "RewardBench 2 (Ties by its own weighted rule)"
        tables.append(sections(title, ("domain", "lines"), rows, (rb2["score"], "mean of the six")))
        problem = (rb2.get("ties") or {}).get("problem")
        if problem:
            tables.append(f"Ties: {escape(problem)}")
    eb = (evaluation or {}).get("evalbiasbench")
    if eb:
        t = Table(title=f"EvalBiasBench (model card: {eb['reference_model']})")
        t.add_column("bias", justify="left")
        for name in ("pairs", "accuracy", "card", "Δ"):
            t.add_column(name, justify="right")
        for r in eb["rows"]:
            delta = "—" if r["accuracy"] is None else f"{100 * r['accuracy'] - r['reference']:+.1f}"
            t.add_row(escape(r["bias"]), f"{r['n']:,}", pct(r["accuracy"]), f"{r['reference']:.1f}%", delta)
        t.add_row("[b]all biases[/b]", f"{eb['overall']['n']:,}", pct(eb["overall"]["accuracy"]), "", "")
        tables.append(t)
    return tables
