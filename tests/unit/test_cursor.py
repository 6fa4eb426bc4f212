"""`rmscore.cursor`: every cursor it encodes decodes to the same key; anything else is `invalid_cursor`."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmscore import cursor as cursors
from rmscore.errors import BadRequest

TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=cursors.STR_MAX)
LINE = st.integers(0, cursors.INT_MAX)
TIME = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))


@given(job=TEXT, line=LINE, model=TEXT, at=TIME)
def test_round_trip(job: str, line: int, model: str, at: datetime) -> None:
    assert cursors.decode(cursors.encode("k", job, line, model), "k", ("str", "int", "str")) == (job, line, model)
    assert cursors.decode(cursors.encode("t", at, job), "t", ("datetime", "str")) == (at, job)


@given(junk=st.text(max_size=200))
def test_any_text_is_a_cursor_or_a_bad_request(junk: str) -> None:
    try:
        key = cursors.decode(junk, "k", ("str", "int", "str"))
    except BadRequest as e:
        assert e.code == "invalid_cursor" and e.http_status == 400
    else:
        assert isinstance(key[0], str) and 0 <= key[1] <= cursors.INT_MAX and isinstance(key[2], str)


@pytest.mark.parametrize("line", [-1, cursors.INT_MAX + 1, 10**30, True, 1.0, "1", None])
def test_a_line_out_of_range_or_of_another_type_is_refused(line: object) -> None:
    with pytest.raises(BadRequest):
        cursors.decode(cursors.encode("k", line), "k", ("int",))  # type: ignore[arg-type]


def test_a_cursor_of_another_endpoint_or_length_is_refused() -> None:
    with pytest.raises(BadRequest):
        cursors.decode(cursors.encode("jobs", 1), "line", ("int",))
    with pytest.raises(BadRequest):
        cursors.decode(cursors.encode("line", 1, 2), "line", ("int",))
    with pytest.raises(BadRequest):
        cursors.decode(cursors.encode("s", "x" * (cursors.STR_MAX + 1)), "s", ("str",))
