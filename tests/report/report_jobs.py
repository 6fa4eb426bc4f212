"""Finished jobs to report on, scored for real: the tiny model, the job store, the chunk lifecycle.

Each chunk goes through what a worker does with it (claim, load the items, score them with the
real engine, store the results and finish the job) but called in-process rather than through
Redis and Celery: the report reads the database, and the broker plays no part in what it shows.
"""

from __future__ import annotations

import gzip
import json
import os
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
XSS = "<script>alert(1)</script>"
PER_SUBSET = 5
# RewardBench subset names on real pairs (HH-RLHF), a few of each section.
RB_SUBSETS = (
    "alpacaeval-easy",
    "mt-bench-hard",
    "llmbar-natural",
    "refusals-dangerous",
    "donotanswer",
    "math-prm",
    "hep-go",
)


def score_chunks(db: Any, engine: Any, job_id: str, *, limit: int | None = None) -> None:
    """Run the job's queued chunks (the first `limit`, or all until the job ends) as a worker would."""
    from db.chunks import claim_chunk, complete_chunk, load_items, new_owner, queued_chunks
    from worker.scoring import score_items

    for ref in queued_chunks(db, job_id=job_id)[:limit]:
        lease = claim_chunk(db, ref.id, new_owner("report-test"), lease_seconds=300, max_attempts=3)
        assert lease is not None, f"chunk {ref.id} could not be claimed"
        records = score_items(engine, load_items(db, lease))
        assert complete_chunk(db, lease, records, engine.identity)


def pairwise_lines(shared: Path) -> list[dict[str, Any]]:
    """EvalBiasBench (all six biases), RewardBench-named subsets, a hostile pair and a bad line."""
    lines: list[dict[str, Any]] = []
    # A few pairs of each bias and subset: enough for every table row, quick on two CPU cores.
    for bias, rows in json.loads((shared / "evalbiasbench.json").read_text()).items():
        lines += [{**row, "subset": bias} for row in rows[:PER_SUBSET]]
    with gzip.open(shared / "hh-rlhf-harmless-base-test.jsonl.gz", "rt") as f:
        hh = [json.loads(next(f)) for _ in range(PER_SUBSET * len(RB_SUBSETS))]
    lines += [{**row, "subset": RB_SUBSETS[i // PER_SUBSET]} for i, row in enumerate(hh)]
    lines.append(
        {
            "custom_id": f"xss {XSS}",
            "subset": f"hostile {XSS}",
            "prompt": f"Say {XSS} & <b>bold</b>",
            "chosen": f"I will not run {XSS}",
            "rejected": f"{XSS}<img src=x onerror=alert(2)>",
        }
    )
    lines.append({"prompt": "a pair without its rejected reply", "chosen": "x"})
    return lines


def chat_lines() -> list[dict[str, Any]]:
    topics = ["tea", "rust", "the moon", "taxes", "jazz", "gardening", "chess", "bread", "rain", "maps"]
    lines = [
        {
            "custom_id": f"c{i}",
            "messages": [
                {"role": "user", "content": f"Tell me something about {t}."},
                {"role": "assistant", "content": f"Here is a fact about {t}. " * (1 + i % 5)},
            ],
        }
        for i, t in enumerate(topics)
    ]
    # Eleven lines: each is among the 10 highest or the 10 lowest, so the hostile one is shown.
    lines.append(
        {"custom_id": XSS, "messages": [{"role": "user", "content": XSS}, {"role": "assistant", "content": XSS}]}
    )
    return lines


def make_job(
    db: Any, engine: Any, lines: list[dict[str, Any]], *, kind: str, chunk_size: int, chunks: int | None = None
) -> str:
    """A job of these lines, its first `chunks` chunks scored (all of them by default)."""
    from db.jobs import create_job
    from rmscore.formats import parse_object

    parsed = [parse_object(obj, n) for n, obj in enumerate(lines, start=1)]
    created = create_job(
        db,
        parsed,
        model=engine.name,
        kind=kind,
        chunk_size=chunk_size,
        metadata={"note": f"report test {XSS}"},
    )
    score_chunks(db, engine, created.job.id, limit=chunks)
    return created.job.id


class Page(HTMLParser):
    """What a reader sees: the tables (rows of cell texts) by id, the charts, the text."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.tags: dict[str, int] = {}
        self.svg_paths = 0
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._svg = 0
        self.meta_csp: str | None = None
        self.source = source
        self.feed(source)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "svg":
            self._svg += 1
        elif tag == "path" and self._svg:
            self.svg_paths += 1
        elif tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.meta_csp = a.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "svg":
            self._svg -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def tallies_from_results(db: Any, job_id: str) -> dict[str, tuple[int, int]]:
    """Per-subset (right, pairs) from the result records, independently of the report's queries."""
    from db.results import iter_results

    t: dict[str, tuple[int, int]] = {}
    for rec in iter_results(db, job_id):
        if "correct" in rec:
            name = rec.get("subset") or "all"
            r, n = t.get(name, (0, 0))
            t[name] = (r + bool(rec["correct"]), n + 1)
    return t


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "source", "col", "area", "base"}


class Elements(HTMLParser):
    """The report as a reader sees it, by element: the text of every element with an id, the example
    cards of each section (line, score text, score class), and the x-axis tick labels of each figure."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.xticks: dict[str, list[str]] = {}
        self._stack: list[tuple[str, str | None]] = []
        self._capture: str | None = None  # "line" or "score" while inside such a span
        self._xtick_depth = 0
        self.feed(source)

    def _ids(self) -> list[str]:
        return [i for _, i in self._stack if i]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "g" and self._xtick_depth:
            self._xtick_depth += 1
        elif tag == "g" and (a.get("id") or "").startswith("xtick_"):
            self._xtick_depth = 1
        if tag == "article" and "example" in (a.get("class") or "").split():
            section = next(i for _, i in reversed(self._stack) if i and self._is_section(i))
            self.examples.setdefault(section, []).append({"line": None, "score": "", "class": ""})
        if tag == "span" and self._ids() and self._in_example():
            cls = (a.get("class") or "").split()
            if "line" in cls:
                self._capture = "line"
            elif "score" in cls:
                self._capture = "score"
                self._current()["class"] = " ".join(c for c in cls if c != "score")
        if tag not in VOID:
            self._stack.append((tag, a.get("id")))
            if a.get("id"):
                self.text.setdefault(a["id"], [])  # type: ignore[index]

    def _is_section(self, element_id: str) -> bool:
        return any(t == "section" and i == element_id for t, i in self._stack)

    def _in_example(self) -> bool:
        return any(t == "article" for t, _ in self._stack)

    def _current(self) -> dict[str, Any]:
        section = next(i for t, i in reversed(self._stack) if t == "section" and i)
        return self.examples[section][-1]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._xtick_depth:
            self._xtick_depth -= 1
        if tag == "span":
            self._capture = None
        if tag in VOID:
            return
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for i in self._ids():
            self.text[i].append(data)
        if self._capture == "line":
            self._current()["line"] = int(data.split()[-1])
        elif self._capture == "score":
            self._current()["score"] += data
        if self._xtick_depth and data.strip():
            figure = next((i for t, i in reversed(self._stack) if t == "figure" and i), None)
            if figure is not None:
                self.xticks.setdefault(figure, []).append(data.strip())

    def of(self, element_id: str) -> str:
        """The text of an element, its pieces (one per element) separated by a space, whitespace collapsed."""
        return " ".join(" ".join(self.text[element_id]).split())
