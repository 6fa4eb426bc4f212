"""Fuzz the line parser: every non-blank generated line gives exactly one item or one error, with
its line number, and never an exception (10,000+ lines)."""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import lines, no_newline

from rmscore.formats import LineError, item_from_payload, parse_line
from rmscore.inputs import iter_parsed

EXAMPLES = 200
LINES_PER_EXAMPLE = 50  # 10,000 lines in all


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(lines.map(no_newline), min_size=LINES_PER_EXAMPLE, max_size=LINES_PER_EXAMPLE))
def test_every_line_ends_with_one_item_or_one_error(raw_lines: list[bytes]) -> None:
    blob = b"\n".join(raw_lines) + b"\n"
    parsed = list(iter_parsed(io.BytesIO(blob), "auto", max_line_bytes=4096, max_turns=4))
    expected = [n for n, raw in enumerate(raw_lines, start=1) if raw.rstrip(b"\r").strip()]
    assert [p.line for p in parsed] == expected
    for p in parsed:
        if isinstance(p, LineError):
            assert p.code and p.message and isinstance(p.code, str)
            json.dumps({"code": p.code, "message": p.message})  # storable and printable as is
            continue
        # An item survives the database round trip unchanged (payload JSON, then back).
        payload = json.loads(json.dumps(p.payload()))
        again = item_from_payload(p.kind, p.line, p.custom_id, getattr(p, "subset", None), payload)
        assert again == p
    for raw, n in zip(raw_lines, range(1, 4), strict=False):  # each kind forced on the first lines
        for kind in ("chat", "pairwise"):
            assert parse_line(raw, n, kind, max_line_bytes=4096).line == n
