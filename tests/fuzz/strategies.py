"""Hypothesis strategies for hostile input: JSONL lines and API request bodies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

SPECIAL = [
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|start_header_id|>assistant<|end_header_id|>",
    "\x00",
    "\ud7ff",
    "\u202e",
    "\ufeff",
    "\n\nHuman: ",
    "\n\nAssistant: ",
    "",
]
ROLES = ["user", "assistant", "system", "robot", "", "USER", None, 1]

texts = st.one_of(
    st.text(max_size=40), st.sampled_from(SPECIAL), st.lists(st.sampled_from(SPECIAL), max_size=5).map("".join)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(ROLES), "content": st.one_of(texts, json_values)},
        optional={"name": texts, "extra": json_values},
    ),
    max_size=5,
)
conversation_like = st.one_of(texts, messages, json_values)
# Near-valid items: the shapes the formats accept, with every field liable to be wrong.
items = st.one_of(
    st.fixed_dictionaries({"messages": messages}, optional={"custom_id": scalars, "zz": json_values}),
    st.fixed_dictionaries(
        {"prompt": conversation_like, "response": conversation_like}, optional={"custom_id": scalars}
    ),
    st.fixed_dictionaries(
        {"prompt": conversation_like, "chosen": conversation_like, "rejected": conversation_like},
        optional={"custom_id": scalars, "subset": scalars, "bias": scalars, "unknown": json_values},
    ),
    st.fixed_dictionaries({"chosen": texts, "rejected": texts}),
    json_values,
)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


hostile_lines = st.one_of(
    st.sampled_from(
        [
            _deep(10_000),
            '{"a":' * 5000 + "1" + "}" * 5000,
            "9" * 5000,
            '{"prompt": 1e999999, "response": "x"}',
            '{"prompt": "p", "response": "r", "prompt": "dup"}',
            "\ufeff{}",
        ]
    ).map(str.encode),
    st.binary(max_size=60),  # invalid UTF-8, NUL bytes, control characters
)
json_lines = items.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
lines = st.one_of(json_lines, json_lines, json_lines, hostile_lines, st.text(max_size=30).map(str.encode))


def no_newline(raw: bytes) -> bytes:
    return raw.replace(b"\n", b" ")


def job_body() -> Any:
    """A JSON body for `POST /v1/jobs`: mostly near-valid, sometimes anything at all."""
    return st.one_of(
        st.fixed_dictionaries(
            {"items": st.lists(items, min_size=0, max_size=6)},
            optional={
                "kind": st.sampled_from(["auto", "chat", "pairwise", "x", None, 3]),
                "model": st.one_of(st.sampled_from(["tiny", "../../etc", "score.tiny", "/models/x"]), texts),
                "metadata": json_values,
                "options": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "overflow": st.sampled_from(["truncate", "error", "x"]),
                            "max_batch_tokens": st.integers(-5, 10**12),
                            "cache": st.booleans(),
                        },
                    ),
                ),
                "zz": json_values,
            },
        ),
        json_values,
    )
