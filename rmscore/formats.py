"""Input formats: turn user lines into normalized items, or into per-line errors that say why.

Every line of input ends as exactly one `ChatItem`, `PairItem` or `LineError`, in input order, so a
bad line never stops a run and never disappears. Supported shapes (JSON lines, `.gz` too):

- chat: `{"custom_id"?, "messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`
- prompt/response: `{"custom_id"?, "prompt": str, "response": str}` -> `[user, assistant]`
- pairwise: `{"custom_id"?, "prompt": str|messages, "chosen": str|messages, "rejected": str|messages,
  "subset"?}`; chosen and rejected are the assistant's reply (or turns) after the prompt
- HH-RLHF: `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`
- EvalBiasBench rows `{"instruction", "response1", "response2", "label", "bias"?}`, and its whole
  `.json` file (bias -> rows)
- text (online requests only, `text_ok=True`): `{"custom_id"?, "text": str}`, a conversation the
  caller already rendered with the chat template, as RLHF trainers send it (see `TextItem`)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

Kind = Literal["chat", "pairwise", "text"]
Message = dict[str, str]
Conversation = list[Message]
ROLES = ("system", "user", "assistant")
DEFAULT_MAX_LINE_BYTES = 1_000_000
DEFAULT_MAX_TURNS = 512
MAX_CUSTOM_ID = 512
MAX_SUBSET = 200


@dataclass(slots=True)
class ChatItem:
    line: int
    custom_id: str | None
    messages: Conversation
    kind: Kind = field(default="chat", init=False)

    @property
    def conversations(self) -> list[Conversation]:
        return [self.messages]

    def payload(self) -> dict[str, Any]:
        return {"messages": self.messages}


@dataclass(slots=True)
class PairItem:
    line: int
    custom_id: str | None
    subset: str | None
    chosen: Conversation
    rejected: Conversation
    kind: Kind = field(default="pairwise", init=False)

    @property
    def conversations(self) -> list[Conversation]:
        return [self.chosen, self.rejected]

    def payload(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "rejected": self.rejected}


@dataclass(slots=True)
class TextItem:
    """A pre-rendered conversation. Scored under the card's rule for its text: every BOS string is
    removed and the tokenizer adds exactly one (`worker.render.Renderer.text`), so a text that already
    starts with `<|begin_of_text|>` (an applied chat template) scores exactly as its conversation.
    Online requests only: a stored job keeps turns, which reports and exports show."""

    line: int
    custom_id: str | None
    text: str
    kind: Kind = field(default="text", init=False)

    @property
    def conversations(self) -> list[str]:
        return [self.text]

    def payload(self) -> dict[str, Any]:
        return {"text": self.text}


@dataclass(slots=True)
class LineError:
    line: int
    custom_id: str | None
    code: str
    message: str
    subset: str | None = None


Item = ChatItem | PairItem | TextItem
Parsed = ChatItem | PairItem | TextItem | LineError


class _Bad(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def item_from_payload(
    kind: Kind, line: int, custom_id: str | None, subset: str | None, payload: dict[str, Any]
) -> Item:
    """Rebuild an item stored with `payload()` (the database keeps that form)."""
    if kind == "chat":
        return ChatItem(line, custom_id, payload["messages"])
    if kind == "text":
        return TextItem(line, custom_id, payload["text"])
    return PairItem(line, custom_id, subset, payload["chosen"], payload["rejected"])


def content_hash(item: Item) -> str:
    """Identity of what the model sees: equal conversations hash equal, whatever their ids."""
    blob = json.dumps(item.conversations, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------- object -> item


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None.

    JSON can carry what neither UTF-8 nor PostgreSQL can hold: a lone surrogate escape (`"\\ud800"`)
    has no UTF-8 encoding, and PostgreSQL text and JSONB refuse NUL. Every string that is stored
    (contents, custom_id, subset, metadata) goes through this one check, whatever format it came in.
    """
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"contains a lone surrogate (character {e.start}), which UTF-8 cannot encode"
    return None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad("invalid_field", f"{what} must be a string, got {_type(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise _Bad("invalid_text", f"{what} {problem}")
    return value


def _type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _show(value: Any) -> str:
    """A user value echoed in a message: repr escapes NUL and surrogates (so the message is storable)
    and the cut keeps a huge value from being copied into its error."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _messages(value: Any, what: str, max_turns: int) -> Conversation:
    if not isinstance(value, list):
        raise _Bad("invalid_field", f"{what} must be an array of messages, got {_type(value)}")
    if not value:
        raise _Bad("empty_conversation", f"{what} has no messages")
    if len(value) > max_turns:
        raise _Bad("too_many_turns", f"{what} has {len(value)} messages; the limit is {max_turns}")
    out: Conversation = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise _Bad("invalid_field", f"{what}[{i}] must be an object with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise _Bad(
                "unknown_role",
                f"{what}[{i}].role is {_show(role)}; expected one of {', '.join(ROLES)}",
            )
        out.append({"role": role, "content": _text(m.get("content"), f"{what}[{i}].content")})
    return out


def _ends_with_assistant(conv: Conversation, what: str) -> Conversation:
    if conv[-1]["role"] != "assistant":
        raise _Bad(
            "last_turn_not_assistant",
            f"{what} ends with a {conv[-1]['role']} turn; a reward model scores the assistant's last reply",
        )
    return conv


def _reply(value: Any, what: str, max_turns: int) -> Conversation:
    if isinstance(value, str):
        return [{"role": "assistant", "content": _text(value, what)}]
    return _messages(value, what, max_turns)


_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def split_hh(transcript: str, what: str = "transcript") -> Conversation:
    """Split an Anthropic HH-RLHF transcript into user/assistant turns."""
    parts = _HH_TURN.split(transcript)
    if len(parts) < 3 or parts[0].strip():
        raise _Bad("invalid_field", f"{what} is not a '\\n\\nHuman: …\\n\\nAssistant: …' transcript")
    conv: Conversation = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        conv.append({"role": "user" if speaker == "Human" else "assistant", "content": content})
    return conv


def _custom_id(obj: dict[str, Any]) -> str | None:
    cid = obj.get("custom_id")
    if cid is None:
        return None
    if isinstance(cid, bool) or not isinstance(cid, str | int):
        raise _Bad("invalid_field", f"custom_id must be a string, got {_type(cid)}")
    cid = _text(str(cid), "custom_id")
    if len(cid) > MAX_CUSTOM_ID:
        raise _Bad("invalid_field", f"custom_id is longer than {MAX_CUSTOM_ID} characters")
    return cid


def detect_kind(obj: Any) -> Kind | None:
    if not isinstance(obj, dict):
        return None
    if "chosen" in obj or "rejected" in obj or ("response1" in obj and "response2" in obj):
        return "pairwise"
    if "messages" in obj or "response" in obj:
        return "chat"
    return None


def parse_object(
    obj: Any, line: int, kind: Kind | None = None, *, max_turns: int = DEFAULT_MAX_TURNS, text_ok: bool = False
) -> Parsed:
    """Normalize one decoded JSON value. `kind=None` accepts either kind; `text_ok` also kind text."""
    cid: str | None = None
    subset: str | None = None
    try:
        if not isinstance(obj, dict):
            raise _Bad("not_an_object", f"expected a JSON object, got {_type(obj)}")
        cid = _custom_id(obj)
        raw_subset = obj.get("subset", obj.get("bias"))
        if raw_subset is not None:
            subset = _text(raw_subset, "subset")[:MAX_SUBSET]
        found = detect_kind(obj)
        if found is None and text_ok and "text" in obj:
            text = _text(obj["text"], "text")
            if not text.strip():
                raise _Bad("empty_text", "text is empty")
            return TextItem(line, cid, text)
        if found is None:
            raise _Bad(
                "unknown_format",
                "expected 'messages', 'prompt'+'response', or 'chosen'+'rejected' fields",
            )
        if kind is not None and found != kind:
            raise _Bad("kind_mismatch", f"this is a {found} line in a {kind} job")
        if found == "chat":
            return ChatItem(line, cid, _chat(obj, max_turns))
        chosen, rejected = _pair(obj, max_turns)
        return PairItem(line, cid, subset, chosen, rejected)
    except _Bad as bad:
        return LineError(line, cid, bad.code, bad.message, subset)


def _chat(obj: dict[str, Any], max_turns: int) -> Conversation:
    if "messages" in obj:
        return _ends_with_assistant(_messages(obj["messages"], "messages", max_turns), "messages")
    if "prompt" not in obj:
        raise _Bad("unknown_format", "a 'response' needs a 'prompt'")
    return [
        {"role": "user", "content": _text(obj["prompt"], "prompt")},
        {"role": "assistant", "content": _text(obj["response"], "response")},
    ]


def _pair(obj: dict[str, Any], max_turns: int) -> tuple[Conversation, Conversation]:
    if "response1" in obj:  # EvalBiasBench row
        label = str(obj.get("label", "")).strip()
        if label not in ("1", "2"):
            raise _Bad("invalid_field", f"label must be '1' or '2', got {_show(obj.get('label'))}")
        prompt: Conversation = [{"role": "user", "content": _text(obj.get("instruction"), "instruction")}]
        r1 = _reply(obj["response1"], "response1", max_turns)
        r2 = _reply(obj["response2"], "response2", max_turns)
        good, bad = (r1, r2) if label == "1" else (r2, r1)
        return prompt + good, prompt + bad
    if "chosen" not in obj or "rejected" not in obj:
        raise _Bad("unknown_format", "a pairwise line needs both 'chosen' and 'rejected'")
    if "prompt" not in obj:
        # Anthropic HH-RLHF: two whole transcripts sharing a prefix.
        chosen = split_hh(_text(obj["chosen"], "chosen"), "chosen")
        rejected = split_hh(_text(obj["rejected"], "rejected"), "rejected")
    else:
        p = obj["prompt"]
        prompt = (
            [{"role": "user", "content": _text(p, "prompt")}]
            if isinstance(p, str)
            else (_messages(p, "prompt", max_turns))
        )
        chosen = prompt + _reply(obj["chosen"], "chosen", max_turns)
        rejected = prompt + _reply(obj["rejected"], "rejected", max_turns)
    for conv, what in ((chosen, "chosen"), (rejected, "rejected")):
        if len(conv) > max_turns:
            raise _Bad("too_many_turns", f"{what} has {len(conv)} messages; the limit is {max_turns}")
        _ends_with_assistant(conv, what)
    return chosen, rejected


# --------------------------------------------------------------------------- bytes -> items


def parse_line(
    raw: bytes | str,
    line: int,
    kind: Kind | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> Parsed:
    if len(raw) > max_line_bytes:
        return LineError(
            line, None, "line_too_long", f"line is {len(raw)} bytes; the limit is {max_line_bytes}"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return LineError(line, None, "invalid_utf8", f"line is not valid UTF-8 (byte {e.start})")
    try:
        obj = json.loads(raw)
    except RecursionError:
        return LineError(line, None, "invalid_json", "line is nested too deeply")
    except ValueError as e:
        return LineError(line, None, "invalid_json", f"line is not valid JSON: {e}")
    return parse_object(obj, line, kind, max_turns=max_turns)


def open_input(path: str | Path) -> IO[bytes]:
    path = Path(path)
    f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.open(f, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def _is_json_document(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(".json")


def iter_json(
    source: str | Path | IO[bytes],
    kind: Kind | Literal["auto"] | None = "auto",
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_turns: int = DEFAULT_MAX_TURNS,
) -> Iterator[Parsed]:
    """Stream a JSONL (or one JSON document) into items and errors, one per input line, in order.

    With `kind="auto"` the first line that names a kind fixes it for the rest of the input.
    Blank lines are skipped but still counted, so line numbers match what an editor shows.
    JSON only: a file of any type (Parquet too) goes through `rmscore.inputs.iter_parsed`, which
    picks the reader; this module never imports `rmscore.parquet`, which builds on it.
    """
    if isinstance(source, str | Path) and _is_json_document(Path(source)):
        yield from _iter_json_document(Path(source), kind, max_turns)
        return
    stream = open_input(source) if isinstance(source, str | Path) else source
    fixed: Kind | None = None if kind in ("auto", None) else kind  # type: ignore[assignment]
    try:
        for n, raw in enumerate(_lines(stream), start=1):
            if not raw.strip():
                continue
            parsed = parse_line(raw, n, fixed, max_line_bytes=max_line_bytes, max_turns=max_turns)
            if fixed is None and not isinstance(parsed, LineError):
                fixed = parsed.kind
            yield parsed
    finally:
        if isinstance(source, str | Path):
            stream.close()


UTF8_BOM = b"\xef\xbb\xbf"


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream's lines without their line ends; a UTF-8 byte order mark before the first one (what
    Windows editors write) is dropped, so it cannot turn line 1 into `invalid_json`."""
    for n, raw in enumerate(stream):
        if n == 0 and raw.startswith(UTF8_BOM):
            raw = raw[len(UTF8_BOM) :]
        yield raw.rstrip(b"\r\n")


def _iter_json_document(path: Path, kind: Kind | Literal["auto"] | None, max_turns: int) -> Iterator[Parsed]:
    with open_input(path) as f:
        try:
            doc = json.load(io.TextIOWrapper(f, encoding="utf-8-sig"))  # -sig: a BOM is not JSON
        except (ValueError, RecursionError) as e:
            yield LineError(1, None, "invalid_json", f"file is not valid JSON: {e}")
            return
    yield from iter_objects(document_rows(doc), kind, max_turns=max_turns)


def document_rows(doc: Any) -> Iterable[Any]:
    """The items of one `.json` document: a list, EvalBiasBench's `{bias: [rows]}`, or one object."""
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        # EvalBiasBench layout: {bias: [rows]}; the bias becomes the subset.
        return (
            {**row, "subset": bias} if isinstance(row, dict) and "subset" not in row else row
            for bias, group in doc.items()
            for row in group
        )
    if isinstance(doc, list):
        return doc
    return [doc]


def iter_objects(
    objs: Iterable[Any],
    kind: Kind | Literal["auto"] | None = "auto",
    *,
    max_line_bytes: int | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    text_ok: bool = False,
) -> Iterator[Parsed]:
    """Decoded JSON values (request items, a document's rows) as lines 1..n (`text_ok`: see parse_object).

    An item is held to `max_line_bytes` as its JSON text, however it arrived, as a file's line is.
    `kind="auto"`: the first valid item fixes the kind; None: each item may be either kind.
    """
    fixed: Kind | None = None if kind in ("auto", None) else kind  # type: ignore[assignment]
    for n, obj in enumerate(objs, start=1):
        size = json_size(obj) if max_line_bytes is not None else 0
        if max_line_bytes is not None and size > max_line_bytes:
            parsed: Parsed = LineError(n, None, "line_too_long", f"item is {size} bytes; the limit is {max_line_bytes}")
        else:
            parsed = parse_object(obj, n, fixed, max_turns=max_turns, text_ok=text_ok)
        if kind == "auto" and fixed is None and not isinstance(parsed, LineError):
            fixed = parsed.kind
        yield parsed


def json_size(obj: Any) -> int:
    """Bytes of `obj` as compact-ish JSON text; surrogatepass so a lone surrogate is measured, not raised."""
    return len(json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------- results -> records


def error_record(
    line: int, custom_id: str | None, code: str, message: str, subset: str | None = None
) -> dict[str, Any]:
    """A failed line. It carries `subset` exactly when the line named one, whatever failed."""
    rec: dict[str, Any] = {"line": line, "custom_id": custom_id, "error": {"code": code, "message": message}}
    if subset is not None:
        rec["subset"] = subset
    return rec


def chat_record(
    line: int, custom_id: str | None, score: float, num_tokens: int, truncated: bool
) -> dict[str, Any]:
    return {
        "line": line,
        "custom_id": custom_id,
        "score": score,
        "num_tokens": num_tokens,
        "truncated": truncated,
    }


def pair_record(
    line: int,
    custom_id: str | None,
    subset: str | None,
    chosen_score: float,
    rejected_score: float,
    truncated: bool = False,
) -> dict[str, Any]:
    # A tie counts as wrong, as in RewardBench: the model failed to prefer the chosen reply.
    return {
        "line": line,
        "custom_id": custom_id,
        "subset": subset,
        "chosen_score": chosen_score,
        "rejected_score": rejected_score,
        "correct": chosen_score > rejected_score,
        "truncated": truncated,
    }
