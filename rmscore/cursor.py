"""Opaque page cursors: one encoder and one strict decoder for every cursor-paged endpoint.

A cursor is the whole sort key of the last row a page returned, so the next page resumes exactly
after it: a key that left out a column (`(job, line)` for rows ordered by `(job, line, model)`)
would skip or repeat rows. Cursors come back from clients, so decoding trusts nothing: the text is
base64url of a JSON array `[kind, value, ...]` whose tag, length and value types must match what
the endpoint expects, integers must fit the INTEGER columns they are compared with, strings are
bounded and free of NUL (PostgreSQL refuses NUL in text), and timestamps are naive UTC. Anything
else is a 400 `invalid_cursor`, never a database error or a 500.

No signature: a cursor only says where to resume within what the caller may already read (every
query stays filtered by tenant), so forging one reveals nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from rmscore.errors import BadRequest

Field = Literal["int", "str", "datetime"]
# The largest value PostgreSQL's INTEGER holds: line numbers are INTEGER columns (a job holds at most
# millions of lines), and a bound past the column's range is a DataError there, an OverflowError in SQLite.
INT_MAX = 2**31 - 1
STR_MAX = 512
_TEXT_MAX = 16_384  # a bound before any decoding; the API also caps the query parameter (512)


def invalid(why: str) -> BadRequest:
    return BadRequest(f"invalid cursor: {why}; pass back the next_cursor of a previous page", code="invalid_cursor")


def encode(kind: str, *values: int | str | datetime) -> str:
    """The cursor for a page that ended on a row whose sort key is `values`."""
    out: list[Any] = [kind]
    for v in values:
        out.append(v.isoformat() if isinstance(v, datetime) else v)
    raw = json.dumps(out, ensure_ascii=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, kind: str, fields: Sequence[Field]) -> tuple[Any, ...]:
    """The sort key in `cursor`, checked against `kind` and the types in `fields`; BadRequest otherwise."""
    if not cursor or len(cursor) > _TEXT_MAX:
        raise invalid("wrong length")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("ascii"), parse_float=_no_float, parse_constant=_no_float)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise invalid("not one of ours") from None
    if not isinstance(value, list) or len(value) != len(fields) + 1 or value[0] != kind:
        raise invalid("not a cursor of this endpoint")
    return tuple(_field(v, f) for v, f in zip(value[1:], fields, strict=True))


def _no_float(text: str) -> Any:
    raise ValueError(f"a cursor holds no number like {text[:20]}")


def _field(value: Any, field: Field) -> Any:
    if field == "int":
        # bool is an int in Python; a cursor of ours never holds one.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_MAX:
            raise invalid("a number out of range")
        return value
    if not isinstance(value, str) or len(value) > STR_MAX or "\x00" in value:
        raise invalid("a malformed value")
    if field == "str":
        return value
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise invalid("a malformed time") from None
    if at.tzinfo is not None:  # stored times are naive UTC; an aware one would not compare
        raise invalid("a malformed time")
    return at
