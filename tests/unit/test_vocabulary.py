"""The words of `rmscore.vocabulary` are the ones stored, sent and type-checked: the `Literal`s that
type the same words elsewhere cannot drift from the enums (adding a kind fails here until they agree)."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from rmscore.vocabulary import (
    CONTROL_TOKEN_MODES,
    JOB_KINDS,
    KIND_CHOICES,
    OVERFLOW_MODES,
    ChunkStatus,
    ControlTokens,
    JobKind,
    JobStatus,
    Overflow,
    choices,
    one_of,
)


def test_literals_match_the_enums() -> None:
    from api.schemas import Job, KindIn
    from rmscore.formats import Kind

    assert set(get_args(Kind)) == set(JobKind)
    assert set(get_args(KindIn)) == set(KIND_CHOICES)
    assert set(get_args(Job.model_fields["kind"].annotation)) == set(JOB_KINDS)  # text is online-only


def test_modes_are_typed_and_checked_with_one_definition() -> None:
    # Settings and the API's schemas type the modes with the vocabulary's aliases, so what pydantic
    # accepts is what the store's and the CLI's run-time checks accept.
    from api.schemas import JobOptions
    from rmscore.settings import Settings

    assert OVERFLOW_MODES == ("truncate", "error") and CONTROL_TOKEN_MODES == ("card", "neutralize")
    assert get_args(Settings.model_fields["overflow"].annotation) == OVERFLOW_MODES
    assert get_args(Settings.model_fields["control_tokens"].annotation) == CONTROL_TOKEN_MODES
    assert JobOptions.model_fields["overflow"].annotation == Overflow | None
    assert JobOptions.model_fields["control_tokens"].annotation == ControlTokens | None


def test_one_of_returns_the_allowed_word_or_names_them() -> None:
    assert one_of("error", OVERFLOW_MODES) == "error" and one_of(None, OVERFLOW_MODES) is None
    with pytest.raises(ValueError, match="'Error' is not truncate or error"):
        one_of("Error", OVERFLOW_MODES)


def test_members_are_the_stored_strings() -> None:
    # What the tables hold and the API sends stays the plain word.
    assert json.dumps({"status": JobStatus.cancelling}) == '{"status": "cancelling"}'
    assert f"{ChunkStatus.leased}" == "leased" and ChunkStatus.leased == "leased"
    assert [m.name for m in JobStatus] == [m.value for m in JobStatus]


def test_choices_reads_as_a_message() -> None:
    assert choices(KIND_CHOICES) == "chat, pairwise, listwise or auto"
    assert choices(("card",)) == "card"
