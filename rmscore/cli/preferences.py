"""`rmscore preferences JOB` and `rmscore best JOB`: a scored job as training data in TRL's formats.

The rows are built by `rmscore.preferences` from what `db.preferences` reads (locally) or come from
the API's `/v1/jobs/{id}/preferences` and `/best` (with RMSCORE_API_URL): the same rows either way.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rmscore import preferences

err = Console(stderr=True)

Output = Annotated[
    str,
    typer.Option(
        "-o",
        "--output",
        metavar="FILE",
        help="Where to write: '-' = stdout (JSONL); a file's suffix picks the format: .jsonl, .jsonl.gz or .parquet.",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(help="Whose scores, for a job scored by several models [default: the job's model, when it has one].")
]


def _export(job_id: str, output: str, what: preferences.What, **options: Any) -> None:
    from rmscore.cli.backends import open_backend, user_errors

    with user_errors():
        spec = preferences.Spec(what, **options)  # bad options and an unknown suffix: refused before any read
        preferences.output_format(output)
    with open_backend() as backend:
        export = backend.preferences if what == "preferences" else backend.best
        written = export(job_id, spec, output)
    err.print(escape(written), highlight=False, soft_wrap=True)


def preferences_command(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id (a pairwise or listwise job that has ended).")],
    output: Output = "-",
    pairs: Annotated[
        str,
        typer.Option(metavar="best-worst|best-vs-rest", help="Best vs worst, or best vs each other response."),
    ] = "best-worst",
    min_margin: Annotated[
        float, typer.Option(metavar="M", help="Only pairs whose score margin is at least M (>= 0).")
    ] = 0.0,
    model: Model = None,
) -> None:
    """Write a job's preference pairs for DPO: TRL's prompt/chosen/rejected rows, chosen being the
    response the model scored higher, with chosen_score, rejected_score, margin, agrees_with_label,
    custom_id and line. Strings when every line gave strings, else conversational message lists.
    Ties and failed lines make no row."""
    _export(job_id, output, "preferences", pairs=pairs, min_margin=min_margin, model=model)


def best_command(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id (a pairwise or listwise job that has ended).")],
    output: Output = "-",
    min_score: Annotated[
        float | None, typer.Option(metavar="S", help="Only responses scored at least S [default: every line's best].")
    ] = None,
    model: Model = None,
) -> None:
    """Write each line's best-scored response (rejection sampling): TRL's prompt/completion rows
    with score, custom_id and line."""
    _export(job_id, output, "best", min_score=min_score, model=model)


def register(app: typer.Typer) -> None:
    app.command("preferences")(preferences_command)
    app.command("best")(best_command)
