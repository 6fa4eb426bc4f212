"""The worker warns when chunks are too small, in tokens, for the engine to pack them well."""

from __future__ import annotations

import logging

import pytest

from worker.runner import CHUNK_BUDGETS, warn_small_chunks


def test_default_cpu_chunks_are_big_enough(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        assert warn_small_chunks(262_144, 1024) is False  # the defaults on CPU: 256 budgets
    assert not caplog.records


def test_gpu_budget_with_default_chunks_warns_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        assert warn_small_chunks(262_144, 32_768) is True  # 8 budgets per chunk on a GPU
    (record,) = caplog.records
    assert "RMSCORE_CHUNK_MAX_TOKENS >= 524288" in record.getMessage()


def test_exactly_enough_budgets_is_fine() -> None:
    assert warn_small_chunks(CHUNK_BUDGETS * 4096, 4096) is False
    assert warn_small_chunks(CHUNK_BUDGETS * 4096 - 1, 4096) is True
