"""A chunk records the exact model it must be scored with (`model_ref`); a worker serving another model
of the same short name (same queue) cannot claim it. Chunks stored before that (NULL) stay claimable."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select, update

from db.chunks import claim_chunk, new_owner, queued_for_model
from db.jobs import create_job
from db.models import chunks
from db.session import reading, writing
from rmscore.formats import parse_object
from rmscore.settings import Settings, model_name, model_ref, model_refs_served

LEASE = dict(lease_seconds=60, max_attempts=3)


def test_same_basename_different_directories_are_different_models(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a, b = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    assert model_name(str(a)) == model_name(str(b)) == "tiny"  # one queue
    assert model_ref(str(a)) != model_ref(str(b))
    monkeypatch.chdir(tmp_path)
    assert model_ref("a/tiny") == model_ref("./a/tiny") == str(a)  # relative: made absolute
    assert model_ref("NCSOFT/Llama-3-OffsetBias-RM-8B") == "NCSOFT/Llama-3-OffsetBias-RM-8B"  # a hub id as given
    link = tmp_path / "link"
    link.symlink_to(a)
    assert str(a) in model_refs_served(str(link))  # a producer that names the real directory
    assert model_ref(str(b)) not in model_refs_served(str(a))
    s = Settings(model=str(a), models=["NCSOFT/Llama-3-OffsetBias-RM-8B"], _env_file=None)
    assert s.model_refs == {"tiny": str(a), "llama-3-offsetbias-rm-8b": "NCSOFT/Llama-3-OffsetBias-RM-8B"}


def job_for(db: Engine, ref: str | None) -> int:
    rows = [parse_object({"prompt": "q", "response": "a"}, 1)]
    job = create_job(db, rows, model="tiny", model_refs={"tiny": ref} if ref else None).job  # type: ignore[arg-type]
    with reading(db) as conn:
        return int(conn.execute(select(chunks.c.id).where(chunks.c.job_id == job.id)).scalar_one())


def test_a_worker_of_another_model_cannot_claim(db: Engine) -> None:
    chunk = job_for(db, "/models/a/tiny")
    ref, wanted = queued_for_model(db, chunk) or (None, None)
    assert ref is not None and (ref.id, ref.model, wanted) == (chunk, "tiny", "/models/a/tiny")
    assert claim_chunk(db, chunk, new_owner("w-b"), model_refs={"/models/b/tiny", "tiny"}, **LEASE) is None
    with reading(db) as conn:
        row = conn.execute(select(chunks).where(chunks.c.id == chunk)).one()
    assert (row.status, row.attempts) == ("queued", 0)  # refusing uses up no attempt
    lease = claim_chunk(db, chunk, new_owner("w-a"), model_refs={"/models/a/tiny"}, **LEASE)
    assert lease is not None and lease.attempts == 1
    assert queued_for_model(db, chunk) is None  # leased now


def test_chunks_without_a_recorded_model_stay_claimable(db: Engine) -> None:
    chunk = job_for(db, None)
    assert queued_for_model(db, chunk) is None
    assert claim_chunk(db, chunk, new_owner("w"), model_refs={"/anything"}, **LEASE) is not None
    other = job_for(db, "/models/a/tiny")
    with writing(db) as conn:  # as stored before migration 0004
        conn.execute(update(chunks).where(chunks.c.id == other).values(model_ref=None))
    assert claim_chunk(db, other, new_owner("w"), model_refs={"/models/b/tiny"}, **LEASE) is not None
