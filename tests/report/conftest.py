"""Fixtures of the report tests: a job store, the tiny model, and finished jobs (see report_jobs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_jobs import SHARED, chat_lines, make_job, pairwise_lines


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
    from worker.engine import Scorer
    from worker.tiny_model import make_tiny_model

    model_dir = make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", "tiny", seed=0)
    return Scorer.load(str(model_dir), device="cpu")


@pytest.fixture(scope="session")
def pairwise_job(report_db: Any, tiny_engine: Any) -> str:
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need the project's shared data sets"
    return make_job(report_db, tiny_engine, pairwise_lines(SHARED), kind="pairwise", chunk_size=16)


@pytest.fixture(scope="session")
def chat_job(report_db: Any, tiny_engine: Any) -> str:
    return make_job(report_db, tiny_engine, chat_lines(), kind="chat", chunk_size=8)


@pytest.fixture(scope="session")
def cancelled_job(report_db: Any, tiny_engine: Any) -> str:
    """A pairwise job cancelled after its first chunk of 8 pairs: the other 32 lines were never scored."""
    from db.jobs import cancel_job

    lines = pairwise_lines(SHARED)[:40]
    job_id = make_job(report_db, tiny_engine, lines, kind="pairwise", chunk_size=8, chunks=1)
    assert cancel_job(report_db, job_id).status == "cancelled"
    return job_id


@pytest.fixture(scope="session")
def pairwise_report(tmp_path_factory: pytest.TempPathFactory, report_db: Any, pairwise_job: str) -> Path:
    from db.report import build_report

    out = tmp_path_factory.mktemp("reports") / "pairwise.html"
    out.write_text(build_report(report_db, pairwise_job), encoding="utf-8")
    return out
