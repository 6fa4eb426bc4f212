"""The words of `rmscore.vocabulary` are the ones stored, sent and type-checked: the `Literal`s that
type the same words elsewhere cannot drift from the enums (adding a kind fails here until they agree)."""

from __future__ import annotations

import json
from typing import get_args

from rmscore.vocabulary import (
    JOB_KINDS,
    KIND_CHOICES,
    ChunkStatus,
    ControlTokens,
    JobKind,
    JobStatus,
    Overflow,
    choices,
)


def test_literals_match_the_enums() -> None:
    from api.schemas import Job, KindIn
    from rmscore.formats import Kind
    from rmscore.settings import Settings
    from worker.engine import Overflow as EngineOverflow
    from worker.render import ControlTokens as RenderControlTokens

    assert set(get_args(Kind)) == set(JobKind)
    assert set(get_args(KindIn)) == set(KIND_CHOICES)
    assert set(get_args(Job.model_fields["kind"].annotation)) == set(JOB_KINDS)  # text is online-only
    assert set(get_args(EngineOverflow)) == set(Overflow)
    assert set(get_args(Settings.model_fields["overflow"].annotation)) == set(Overflow)
    assert set(get_args(RenderControlTokens)) == set(ControlTokens)


def test_members_are_the_stored_strings() -> None:
    # What the tables hold and the API sends stays the plain word.
    assert json.dumps({"status": JobStatus.cancelling}) == '{"status": "cancelling"}'
    assert f"{ChunkStatus.leased}" == "leased" and ChunkStatus.leased == "leased"
    assert [m.name for m in JobStatus] == [m.value for m in JobStatus]


def test_choices_reads_as_a_message() -> None:
    assert choices(KIND_CHOICES) == "chat, pairwise, listwise or auto"
    assert choices(("card",)) == "card"
