"""Input formats: turn user lines into normalized items, or into per-line errors that say why.

Every line of input ends as exactly one `ChatItem`, `PairItem`, `ListwiseItem` or `LineError`, in input order, so a
bad line never stops a run and never disappears. Supported shapes (JSON lines, `.gz` too):

- chat: `{"custom_id"?, "messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`
- prompt/response: `{"custom_id"?, "prompt": str, "response": str}` -> `[user, assistant]`
- pairwise: `{"custom_id"?, "prompt": str|messages, "chosen": str|messages, "rejected": str|messages,
  "subset"?}`; chosen and rejected are the assistant's reply (or turns) after the prompt
- HH-RLHF: `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`
- EvalBiasBench rows `{"instruction", "response1", "response2", "label", "bias"?}`, and its whole
  `.json` file (bias -> rows)
- listwise (best-of-N): `{"custom_id"?, "subset"?, "prompt": str|messages, "responses": [str|messages, ...]}`,
  or labelled as RewardBench 2 lays it out: `{"prompt", "chosen": str|[str|messages, ...],
  "rejected": [str|messages, ...], "subset"?}`; each response is scored as its own chat (prompt + reply)
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
from typing import IO, Any, Literal, TypedDict, get_args

Kind = Literal["chat", "pairwise", "listwise", "text"]  # text: online requests only (see TextItem)
# What a reader takes: a kind, "auto" (the first line that names one fixes it) or None (each line its own).
KindArg = Kind | Literal["auto"] | None
_KIND_ARGS: dict[str, KindArg] = {word: word for word in (*get_args(Kind), "auto")}


def kind_arg(word: str | None) -> KindArg:
    """A kind as a user named it (a CLI option, an API field: checked against the vocabulary at that
    edge) in the type the readers take; ValueError for a word that is no kind."""
    if word is None:
        return None
    try:
        return _KIND_ARGS[word]
    except KeyError:
        raise ValueError(f"unknown kind {word!r}: one of {', '.join(_KIND_ARGS)}") from None


Message = dict[str, str]
Conversation = list[Message]
ROLES = ("system", "user", "assistant")
DEFAULT_MAX_LINE_BYTES = 1_000_000
DEFAULT_MAX_TURNS = 512
DEFAULT_MAX_RESPONSES = 64  # responses on one listwise line (Settings.max_responses)
MAX_CUSTOM_ID = 512
MAX_SUBSET = 200


class LineLimits(TypedDict, total=False):
    """What one input line may hold, as every reader takes it (keywords; the `DEFAULT_*` above when
    left out). `rmscore.inputs.iter_parsed` passes them on to the reader it picks."""

    max_line_bytes: int
    max_turns: int
    max_responses: int


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
    # The line gave prompt, chosen and rejected as plain strings (not messages, not an HH transcript):
    # preference exports give such pairs back as strings (`rmscore.preferences`).
    text: bool = False

    @property
    def conversations(self) -> list[Conversation]:
        return [self.chosen, self.rejected]

    def payload(self) -> dict[str, Any]:
        # `text` only when set: payloads stored before it existed read as not text, and most stay as they were.
        return {"chosen": self.chosen, "rejected": self.rejected, **({"text": True} if self.text else {})}


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


Reply = str | Conversation  # a response as the user gave it: text, or the assistant's turns


@dataclass(slots=True)
class ListwiseItem:
    """N responses to one prompt, each scored as its own chat (`conversations[i]` = prompt + reply i).

    `prompt` and `responses` are kept as given (a string stays a string, messages stay messages) so
    exports can write them back in the user's shape. Labelled lines (RewardBench 2's chosen/rejected)
    list the chosen responses first: `n_chosen` of them; None on an unlabelled line.
    """

    line: int
    custom_id: str | None
    subset: str | None
    prompt: Reply
    responses: list[Reply]
    n_chosen: int | None = None
    kind: Kind = field(default="listwise", init=False)
    conversations: list[Conversation] = field(init=False)

    def __post_init__(self) -> None:
        turns = self.prompt_turns()
        self.conversations = [turns + self.reply_turns(i) for i in range(len(self.responses))]

    def prompt_turns(self) -> Conversation:
        """The prompt as turns (a string is one user turn)."""
        return _turns(self.prompt, "user")

    def reply_turns(self, i: int) -> Conversation:
        """Response i as turns (a string is one assistant turn)."""
        return _turns(self.responses[i], "assistant")

    @property
    def text(self) -> bool:
        """The prompt and every response are plain strings (as `PairItem.text`)."""
        return isinstance(self.prompt, str) and all(isinstance(r, str) for r in self.responses)

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": self.prompt, "responses": self.responses}
        if self.n_chosen is not None:
            out["n_chosen"] = self.n_chosen
        if self.text:
            # Derived, stored only so one query over the payloads tells an export its form (db.preferences).
            out["text"] = True
        return out


def _turns(value: Reply, role: str) -> Conversation:
    """A prompt (role user) or a reply (role assistant) as turns: a string is one turn of `role`."""
    return [{"role": role, "content": value}] if isinstance(value, str) else [dict(m) for m in value]


Item = ChatItem | PairItem | ListwiseItem | TextItem
Parsed = ChatItem | PairItem | ListwiseItem | TextItem | LineError


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
    if kind == "listwise":
        return ListwiseItem(line, custom_id, subset, payload["prompt"], payload["responses"], payload.get("n_chosen"))
    if kind == "text":
        return TextItem(line, custom_id, payload["text"])
    return PairItem(line, custom_id, subset, payload["chosen"], payload["rejected"], text=payload.get("text") is True)


def content_hash(item: Item) -> str:
    """Identity of what the model sees: equal conversations hash equal, whatever their ids.

    The digest of the conversations' JSON array, fed one conversation at a time: a listwise line
    repeats its prompt in each of its (up to 64) conversations, so the whole array as one string
    was 64 times the line (a 1 MB line: 128 MB of text and bytes in the API at once). Same digest
    as hashing the array whole, so stored hashes keep matching."""
    digest = hashlib.sha256(b"[")
    for i, conv in enumerate(item.conversations):
        if i:
            digest.update(b",")
        digest.update(json.dumps(conv, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode())
    digest.update(b"]")
    return digest.hexdigest()


def text_chars(value: Any) -> int:
    """About how much memory a decoded JSON value holds, in characters of its strings (8 for any
    other leaf): what bounds a batch of stored lines or export rows, whose count alone says nothing
    when one line may be 1 MB."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + text_chars(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(text_chars(v) for v in value) + 8
    return 8


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


def _bounded(value: Any, what: str, items: str, limit: int, codes: tuple[str, str]) -> list[Any]:
    """`value` as a list of 1..`limit` `items`; else the error (codes: empty, too many) that says why.
    The length is checked before any item is read: a line of a million is refused at once."""
    if not isinstance(value, list):
        raise _Bad("invalid_field", f"{what} must be an array of {items}, got {_type(value)}")
    if not value:
        raise _Bad(codes[0], f"{what} has no {items}")
    if len(value) > limit:
        raise _Bad(codes[1], f"{what} has {len(value)} {items}; the limit is {limit}")
    return value


def _messages(value: Any, what: str, max_turns: int) -> Conversation:
    value = _bounded(value, what, "messages", max_turns, ("empty_conversation", "too_many_turns"))
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


def _is_response_list(value: Any) -> bool:
    """A non-empty list whose items are not message objects: several responses, not one reply's turns."""
    return isinstance(value, list) and bool(value) and not isinstance(value[0], dict)


def detect_kind(obj: Any) -> Kind | None:
    if not isinstance(obj, dict):
        return None
    # RewardBench 2 rows hold lists of responses in chosen/rejected; a pair holds one reply in each.
    if "responses" in obj or _is_response_list(obj.get("chosen")) or _is_response_list(obj.get("rejected")):
        return "listwise"
    if "chosen" in obj or "rejected" in obj or ("response1" in obj and "response2" in obj):
        return "pairwise"
    if "messages" in obj or "response" in obj:
        return "chat"
    return None


def parse_object(
    obj: Any,
    line: int,
    kind: Kind | None = None,
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_responses: int = DEFAULT_MAX_RESPONSES,
    text_ok: bool = False,
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
        if found is not None and text_ok and "text" in obj:
            # Either would be scored and the other silently dropped (`text` beside `messages` scored
            # the messages): which one the caller meant is theirs to say.
            raise _Bad("unknown_format", f"an item has 'text' or the fields of a {found} item, not both")
        if found is None and text_ok and "text" in obj:
            text = _text(obj["text"], "text")
            if not text.strip():
                raise _Bad("empty_text", "text is empty")
            return TextItem(line, cid, text)
        if found is None:
            raise _Bad(
                "unknown_format",
                "expected 'messages', 'prompt'+'response', 'chosen'+'rejected', or 'prompt'+'responses' fields",
            )
        if kind == "listwise" and found == "pairwise" and "prompt" in obj:
            found = "listwise"  # one chosen and one rejected reply: a labelled list of two
        if kind is not None and found != kind:
            raise _Bad("kind_mismatch", f"this is a {found} line in a {kind} job")
        if found == "chat":
            return ChatItem(line, cid, _chat(obj, max_turns))
        if found == "listwise":
            prompt, responses, n_chosen = _listwise(obj, max_turns, max_responses)
            item = ListwiseItem(line, cid, subset, prompt, responses, n_chosen)
            for i, conv in enumerate(item.conversations):
                what = response_name(i, n_chosen)
                if len(conv) > max_turns:
                    raise _Bad(
                        "too_many_turns", f"{what} has {len(conv)} messages with the prompt; the limit is {max_turns}"
                    )
                _ends_with_assistant(conv, what)
            return item
        chosen, rejected = _pair(obj, max_turns)
        return PairItem(line, cid, subset, chosen, rejected, text=_plain_text(obj))
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


def _plain_text(obj: dict[str, Any]) -> bool:
    """Whether a pairwise line (already parsed) gave its prompt and both replies as plain strings:
    `{"prompt": str, "chosen": str, "rejected": str}` or an EvalBiasBench row with string responses."""
    if "response1" in obj:
        return isinstance(obj["response1"], str) and isinstance(obj["response2"], str)
    return all(isinstance(obj.get(k), str) for k in ("prompt", "chosen", "rejected"))


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


def _listwise(obj: dict[str, Any], max_turns: int, max_responses: int) -> tuple[Reply, list[Reply], int | None]:
    """(prompt, responses, n_chosen) as given, validated; labelled lines list chosen first."""
    if "prompt" not in obj:
        raise _Bad("unknown_format", "a listwise line needs a 'prompt'")
    p = obj["prompt"]
    prompt: Reply = _text(p, "prompt") if isinstance(p, str) else _messages(p, "prompt", max_turns)
    if "responses" in obj:
        if "chosen" in obj or "rejected" in obj:
            raise _Bad("unknown_format", "a listwise line has 'responses' or 'chosen'+'rejected', not both")
        responses = _responses(obj["responses"], "responses", max_turns, max_responses)
        return prompt, responses, None
    if "chosen" not in obj or "rejected" not in obj:
        raise _Bad("unknown_format", "a labelled listwise line needs both 'chosen' and 'rejected'")
    chosen = _responses(obj["chosen"], "chosen", max_turns, max_responses, one_ok=True)
    rejected = _responses(obj["rejected"], "rejected", max_turns, max_responses, one_ok=True)
    if len(chosen) + len(rejected) > max_responses:
        raise _Bad(
            "too_many_responses",
            f"the line has {len(chosen) + len(rejected)} responses; the limit is {max_responses}",
        )
    return prompt, chosen + rejected, len(chosen)


def _responses(value: Any, what: str, max_turns: int, max_responses: int, *, one_ok: bool = False) -> list[Reply]:
    """A list of responses, each a string or the assistant's messages; `one_ok`: a bare string is one."""
    if one_ok and isinstance(value, str):
        return [_text(value, what)]
    if one_ok and isinstance(value, list) and value and isinstance(value[0], dict):
        return [_messages(value, what, max_turns)]  # one reply as messages, as a pair line gives it
    value = _bounded(value, what, "responses", max_responses, ("no_responses", "too_many_responses"))
    out: list[Reply] = []
    for i, r in enumerate(value):
        if isinstance(r, str):
            out.append(_text(r, f"{what}[{i}]"))
        elif isinstance(r, list):
            out.append(_messages(r, f"{what}[{i}]", max_turns))
        else:
            raise _Bad("invalid_field", f"{what}[{i}] must be a string or an array of messages, got {_type(r)}")
    return out


def response_name(i: int, n_chosen: int | None) -> str:
    """How an error names response i: as the user's own field and index."""
    if n_chosen is None:
        return f"responses[{i}]"
    return f"chosen[{i}]" if i < n_chosen else f"rejected[{i - n_chosen}]"


# --------------------------------------------------------------------------- bytes -> items


def parse_line(
    raw: bytes | str,
    line: int,
    kind: Kind | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_responses: int = DEFAULT_MAX_RESPONSES,
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
    return parse_object(obj, line, kind, max_turns=max_turns, max_responses=max_responses)


GZIP_MAGIC = b"\x1f\x8b"  # gzip is told by its first bytes, whatever the file's name


class KindLatch:
    """The kind every line of one input is read as, written once for every reader (JSON lines, a
    document's rows, request items, Parquet rows): a kind named up front; with "auto", the first valid
    line's kind, fixed for the rest (a job is one kind); with None, any kind line by line (online)."""

    def __init__(self, kind: KindArg) -> None:
        self._auto = kind == "auto"
        self.kind: Kind | None = None if kind is None or kind == "auto" else kind

    def saw(self, parsed: Parsed) -> Parsed:
        """`parsed`, after letting it fix the kind when it is the first valid line under "auto"."""
        if self._auto and self.kind is None and not isinstance(parsed, LineError):
            self.kind = parsed.kind
        return parsed


def open_input(path: str | Path) -> IO[bytes]:
    path = Path(path)
    f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if f.read(2) == GZIP_MAGIC:
        f.seek(0)
        return gzip.open(f, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def is_json_document(name: str) -> bool:
    """`.json` (or `.json.gz`): one document, parsed whole; any other name is read as JSON lines."""
    return name.lower().removesuffix(".gz").endswith(".json")


def iter_json(
    source: str | Path | IO[bytes],
    kind: KindArg = "auto",
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_responses: int = DEFAULT_MAX_RESPONSES,
) -> Iterator[Parsed]:
    """Stream a JSONL (or one JSON document) into items and errors, one per input line, in order.

    With `kind="auto"` the first line that names a kind fixes it for the rest of the input.
    Blank lines are skipped but still counted, so line numbers match what an editor shows.
    JSON only: a file of any type (Parquet too) goes through `rmscore.inputs.iter_parsed`, which
    picks the reader; this module never imports `rmscore.parquet`, which builds on it.
    """
    if isinstance(source, str | Path) and is_json_document(Path(source).name):
        yield from _iter_json_document(Path(source), kind, max_turns, max_responses)
        return
    stream = open_input(source) if isinstance(source, str | Path) else source
    latch = KindLatch(kind)
    try:
        for n, raw in enumerate(_lines(stream), start=1):
            if not raw.strip():
                continue
            parsed = parse_line(
                raw, n, latch.kind, max_line_bytes=max_line_bytes, max_turns=max_turns, max_responses=max_responses
            )
            yield latch.saw(parsed)
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


def _iter_json_document(
    path: Path, kind: KindArg, max_turns: int, max_responses: int
) -> Iterator[Parsed]:
    with open_input(path) as f:
        try:
            doc = json.load(io.TextIOWrapper(f, encoding="utf-8-sig"))  # -sig: a BOM is not JSON
        except (ValueError, RecursionError) as e:
            yield LineError(1, None, "invalid_json", f"file is not valid JSON: {e}")
            return
    yield from iter_objects(document_rows(doc), kind, max_turns=max_turns, max_responses=max_responses)


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
    kind: KindArg = "auto",
    *,
    max_line_bytes: int | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    max_responses: int = DEFAULT_MAX_RESPONSES,
    text_ok: bool = False,
) -> Iterator[Parsed]:
    """Decoded JSON values (request items, a document's rows) as lines 1..n (`text_ok`: see parse_object).

    An item is held to `max_line_bytes` as its JSON text, however it arrived, as a file's line is.
    `kind="auto"`: the first valid item fixes the kind; None: each item may be either kind.
    """
    latch = KindLatch(kind)
    for n, obj in enumerate(objs, start=1):
        size = json_size(obj) if max_line_bytes is not None else 0
        if max_line_bytes is not None and size > max_line_bytes:
            parsed: Parsed = LineError(n, None, "line_too_long", f"item is {size} bytes; the limit is {max_line_bytes}")
        else:
            parsed = parse_object(obj, n, latch.kind, max_turns=max_turns, max_responses=max_responses, text_ok=text_ok)
        yield latch.saw(parsed)


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


def listwise_record(
    line: int,
    custom_id: str | None,
    subset: str | None,
    scores: list[float],
    truncated: bool = False,
    n_chosen: int | None = None,
) -> dict[str, Any]:
    """A listwise line's outcome. `scores` in the order the responses were given (labelled: chosen
    first); `best` / `worst` index into it, the first such response when scores tie."""
    top, bottom = max(scores), min(scores)
    rec: dict[str, Any] = {
        "line": line,
        "custom_id": custom_id,
        "subset": subset,
        "scores": scores,
        "best": scores.index(top),
        "worst": scores.index(bottom),
        "truncated": truncated,
    }
    if n_chosen is not None:
        rec["correct"] = best_of_n_credit(scores, n_chosen)
    return rec


def best_of_n_credit(scores: list[float], n_chosen: int) -> float:
    """RewardBench 2's per-prompt result: 1/k when the top score is shared by k responses and a
    correct one (the first `n_chosen`) is among them, else 0.

    allenai/reward-bench `rewardbench/utils.py` `reroll_and_score_dataset` ("penalty for ties"):
    `results = 1 / np.sum(scores == max_val) if scores[0] == max_val else 0`. It checks scores[0]
    only, which is the whole rule for its one-correct-answer subsets; with several correct answers
    (a Ties line) any correct one at the top counts, as the issue asks. RewardBench 2 scores its Ties
    subset as a whole by another rule (`rmscore.evaluation.rewardbench2_ties`), not by this mean.
    """
    top = max(scores)
    if not any(s == top for s in scores[:n_chosen]):
        return 0.0
    return 1.0 / sum(1 for s in scores if s == top)
