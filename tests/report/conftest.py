"""Finished jobs to report on, scored for real: the tiny model, the job store, the chunk lifecycle.

Each chunk goes through what a worker does with it (claim, load the items, score them with the
real engine, store the results and finish the job) but called in-process rather than through
Redis and Celery: the report reads the database, and the broker plays no part in what it shows.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

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


def score_chunks(db: Any, engine: Any, job_id: str) -> None:
    """Run every queued chunk of the job as a worker would, until the job ends."""
    from db.chunks import claim_chunk, complete_chunk, load_items, new_owner, queued_chunks
    from worker.scoring import score_items

    for ref in queued_chunks(db, job_id=job_id):
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


def make_job(db: Any, engine: Any, lines: list[dict[str, Any]], *, kind: str, chunk_size: int) -> str:
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
    score_chunks(db, engine, created.job.id)
    return created.job.id


@pytest.fixture(scope="session")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from db.migrate import upgrade
    from db.session import make_engine

    path = tmp_path_factory.mktemp("report-db") / "rmscore.db"
    db = make_engine(f"sqlite:///{path}")
    upgrade(db)
    return db


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from worker.engine import Engine
    from worker.tiny_model import make_tiny_model

    model_dir = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)
    return Engine.load(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def pairwise_job(report_db: Any, tiny_engine: Any) -> str:
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need the project's shared data sets"
    return make_job(report_db, tiny_engine, pairwise_lines(SHARED), kind="pairwise", chunk_size=16)


@pytest.fixture(scope="session")
def chat_job(report_db: Any, tiny_engine: Any) -> str:
    return make_job(report_db, tiny_engine, chat_lines(), kind="chat", chunk_size=8)


@pytest.fixture(scope="session")
def pairwise_report(tmp_path_factory: pytest.TempPathFactory, report_db: Any, pairwise_job: str) -> Path:
    from rmscore.report import build_report

    out = tmp_path_factory.mktemp("reports") / "pairwise.html"
    out.write_text(build_report(report_db, pairwise_job), encoding="utf-8")
    return out
