"""Preference data out: a scored job's responses as the rows TRL's trainers read, written as they come.

Rows follow TRL's dataset formats (https://huggingface.co/docs/trl/dataset_formats, "Preference" and
"Prompt-completion"; the DPO trainer reads `prompt`/`chosen`/`rejected`, the SFT trainer
`prompt`/`completion`):

- `rmscore preferences`: `{"prompt", "chosen", "rejected"}` plus `chosen_score`, `rejected_score`,
  `margin` (= chosen_score - rejected_score, > 0), `agrees_with_label`, `custom_id`, `line`;
- `rmscore best`: `{"prompt", "completion", "score"}` plus `custom_id`, `line` (rejection sampling).

Each is in TRL's *standard* format (strings) when every line of the job gave its prompt and replies
as plain strings, else in its *conversational* format: the prompt is the list of messages before the
reply, `chosen` / `rejected` / `completion` the reply's messages (TRL: "prompt": [{"role": "user", ...}],
"chosen": [{"role": "assistant", ...}]). One form per file: a column that is text on some rows and
a list on others loads in neither `datasets` nor Parquet.

A pairwise line's two conversations share the prompt: it is the messages they have in common from
the start, up to (not including) the last message of either, so each side keeps at least its reply;
`best-worst` and `best-vs-rest` give the same one row. A listwise line has its own prompt and N
responses: `best-worst` pairs its best-scored response with its worst, `best-vs-rest` with each
other one. The best is the first of equal top scores, the worst the first of equal bottom ones
(as the listwise record's `best` / `worst`). Ties never make a row (a tie prefers nothing);
`min_margin` drops rows whose margin is smaller. `agrees_with_label` is true when the row's chosen
is a labelled chosen response and its rejected a labelled rejected one, false the other way round,
null on unlabelled lines or when both sit on the same side of the label.

The writers stream: JSON lines a buffer at a time, Parquet a row group at a time, so an export of a
million lines holds one page of rows in memory, whatever its length.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from rmscore.errors import BadRequest
from rmscore.export import Counted, format_of, jsonl_chunks, save
from rmscore.formats import Conversation, ListwiseItem, text_chars

What = Literal["preferences", "best"]
Form = Literal["text", "messages"]
Pairs = Literal["best-worst", "best-vs-rest"]
PAIRS: tuple[str, ...] = get_args(Pairs)
PREFERENCE_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_score",
    "rejected_score",
    "margin",
    "agrees_with_label",
    "custom_id",
    "line",
)
BEST_COLUMNS = ("prompt", "completion", "score", "custom_id", "line")
ROW_GROUP = 1000  # Parquet rows per row group: what a writer holds at once
# ... and at most this much text: rows repeat their line's prompt (best-vs-rest: up to 63 rows of a
# 1 MB prompt), so 1000 rows could be a GB; a 660 KB .jsonl.gz took the API to 1.8 GB before this.
ROW_GROUP_CHARS = 2 * 1024**2


@dataclass(frozen=True)
class Spec:
    """What to export, checked when made: a bad option is a BadRequest (400), never a 5xx later."""

    what: What = "preferences"
    pairs: str = "best-worst"
    min_margin: float = 0.0
    min_score: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.pairs not in PAIRS:
            raise BadRequest(f"--pairs must be one of {', '.join(PAIRS)}, not {self.pairs!r}", code="invalid_pairs")
        if not math.isfinite(self.min_margin) or self.min_margin < 0:
            raise BadRequest(
                f"min margin must be a finite number >= 0, not {self.min_margin!r} (rows always have margin > 0)",
                code="invalid_min_margin",
            )
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise BadRequest(f"min score must be a finite number, not {self.min_score!r}", code="invalid_min_score")


@dataclass(frozen=True)
class Group:
    """One line's candidates: the shared prompt, each response's reply turns and score, in input order.

    `n_chosen`: a labelled line's responses start with its `n_chosen` chosen ones, the rejected after
    them (a pairwise line: 1); None for an unlabelled line.
    """

    line: int
    custom_id: str | None
    prompt: Conversation
    replies: list[Conversation]
    scores: list[float]
    n_chosen: int | None


def split_pair(chosen: Conversation, rejected: Conversation) -> tuple[Conversation, Conversation, Conversation]:
    """(prompt, chosen reply, rejected reply): the messages both start with are the prompt, but never
    the last message of either, so each reply keeps at least one message."""
    shared = 0
    most = min(len(chosen), len(rejected)) - 1
    while shared < most and chosen[shared] == rejected[shared]:
        shared += 1
    return chosen[:shared], chosen[shared:], rejected[shared:]


def pair_group(
    line: int, custom_id: str | None, payload: dict[str, Any], chosen_score: float, rejected_score: float
) -> Group:
    """A pairwise line (its stored payload and scores) as a group of two, the labelled chosen first."""
    prompt, chosen, rejected = split_pair(payload["chosen"], payload["rejected"])
    return Group(line, custom_id, prompt, [chosen, rejected], [chosen_score, rejected_score], 1)


def listwise_group(line: int, custom_id: str | None, payload: dict[str, Any], scores: list[float]) -> Group:
    """A listwise line (its stored payload and scores, in the order given) as a group: the prompt is
    the line's own, each reply a response's turns after it."""
    item = ListwiseItem(line, custom_id, None, payload["prompt"], payload["responses"], payload.get("n_chosen"))
    n_prompt = 1 if isinstance(item.prompt, str) else len(item.prompt)
    return Group(
        line,
        custom_id,
        item.conversations[0][:n_prompt],
        [conv[n_prompt:] for conv in item.conversations],
        list(scores),
        item.n_chosen,
    )


def _shown(messages: Conversation, form: Form) -> str | Conversation:
    # In the text form every line gave strings: prompt and replies are single messages (`PairItem.text`).
    if form == "text":
        return "\n\n".join(m["content"] for m in messages)
    return messages


def _agrees(group: Group, better: int, worse: int) -> bool | None:
    """Whether the label says the same: the better one labelled chosen and the worse rejected (True),
    the reverse (False); None when unlabelled or when both sit on the same side of the label."""
    if group.n_chosen is None:
        return None
    better_chosen, worse_chosen = better < group.n_chosen, worse < group.n_chosen
    if better_chosen == worse_chosen:
        return None
    return better_chosen


def preference_rows(group: Group, form: Form, spec: Spec) -> Iterator[dict[str, Any]]:
    """The group's preference rows: its best response against its worst (`best-worst`) or against
    each other response (`best-vs-rest`); ties and margins under `spec.min_margin` make none."""
    scores = group.scores
    if len(scores) < 2:
        return
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # the first of equal best scores
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    others = [worst] if spec.pairs == "best-worst" else range(len(scores))
    for other in others:
        margin = scores[best] - scores[other]
        if other == best or margin <= 0 or margin < spec.min_margin:
            continue
        yield {
            "prompt": _shown(group.prompt, form),
            "chosen": _shown(group.replies[best], form),
            "rejected": _shown(group.replies[other], form),
            "chosen_score": scores[best],
            "rejected_score": scores[other],
            "margin": margin,
            "agrees_with_label": _agrees(group, best, other),
            "custom_id": group.custom_id,
            "line": group.line,
        }


def best_rows(group: Group, form: Form, spec: Spec) -> Iterator[dict[str, Any]]:
    """The group's best-scored response (the first of equal ones), if it reaches `spec.min_score`."""
    if not group.scores:
        return
    best = max(range(len(group.scores)), key=lambda i: (group.scores[i], -i))
    if spec.min_score is not None and group.scores[best] < spec.min_score:
        return
    yield {
        "prompt": _shown(group.prompt, form),
        "completion": _shown(group.replies[best], form),
        "score": group.scores[best],
        "custom_id": group.custom_id,
        "line": group.line,
    }


def rows(groups: Iterable[Group], form: Form, spec: Spec) -> Iterator[dict[str, Any]]:
    """The export's rows, one group at a time (lazily: nothing is read ahead)."""
    make = preference_rows if spec.what == "preferences" else best_rows
    for group in groups:
        yield from make(group, form, spec)


# --------------------------------------------------------------------------- writers


def columns(what: What) -> tuple[str, ...]:
    return PREFERENCE_COLUMNS if what == "preferences" else BEST_COLUMNS


def arrow_schema(what: What, form: Form) -> Any:
    """The Parquet schema: text columns are strings, or lists of {role, content} in the conversational form."""
    import pyarrow as pa

    turns = pa.string() if form == "text" else pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    types = {
        "prompt": turns,
        "chosen": turns,
        "rejected": turns,
        "completion": turns,
        "agrees_with_label": pa.bool_(),
        "custom_id": pa.string(),
        "line": pa.int64(),
    }
    return pa.schema([pa.field(c, types.get(c, pa.float64())) for c in columns(what)])


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until `take()`: Parquet bytes handed on as made."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts = []
        return out


def parquet_chunks(records: Iterable[dict[str, Any]], what: What, form: Form) -> Iterator[bytes]:
    """Records as one Parquet file's bytes, handed on a row group (`ROW_GROUP` rows) at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(what, form)
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    batch: list[dict[str, Any]] = []
    wrote = False
    chars = 0
    for rec in records:
        batch.append(rec)
        chars += sum(text_chars(rec.get(c)) for c in ("prompt", "chosen", "rejected", "completion"))
        if len(batch) >= ROW_GROUP or chars >= ROW_GROUP_CHARS:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch, wrote, chars = [], True, 0
            yield sink.take()
    if batch or not wrote:  # an empty export is still a file with the schema
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    writer.close()
    yield sink.take()


def output_format(output: str | os.PathLike[str]) -> str:
    """jsonl, jsonl.gz or parquet from the file's suffix ('-': JSON lines on stdout); BadRequest otherwise."""
    fmt = format_of(output)
    if fmt == "csv":
        raise BadRequest(
            "preference rows hold conversations, which CSV cannot: write .jsonl, .jsonl.gz or .parquet",
            code="unknown_output_format",
        )
    return fmt


def chunks(records: Iterable[dict[str, Any]], fmt: str, what: What, form: Form) -> Iterator[bytes]:
    """The export's bytes in `fmt` ("jsonl" or "parquet"), as they are made; what the API streams."""
    return parquet_chunks(records, what, form) if fmt == "parquet" else jsonl_chunks(records)


def write(records: Iterable[dict[str, Any]], output: str, what: What, form: Form) -> int:
    """Write the rows to `output` (its suffix picks the format; '-' = stdout); returns how many.

    A file appears complete or not at all: it is written next to its final name, then renamed."""
    fmt = output_format(output)
    counted = Counted(records)
    if output == "-":
        for piece in jsonl_chunks(counted):
            sys.stdout.buffer.write(piece)
        sys.stdout.flush()
    else:
        save(chunks(counted, "parquet" if fmt == "parquet" else "jsonl", what, form), output, gz=fmt == "jsonl.gz")
    return counted.n
