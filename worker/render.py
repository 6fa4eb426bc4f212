"""Turn a conversation into exactly the token ids the model card's pipeline feeds the model.

The card: `text = tokenizer.apply_chat_template(chat, tokenize=False).replace(tokenizer.bos_token, "")`,
then the text-classification pipeline tokenizes `text` with special tokens on, which puts exactly
one BOS back. Removing *every* BOS string (not just the leading one) is the card's behaviour too,
and it is what keeps a `<|begin_of_text|>` typed by a user from becoming a second BOS.

Every *other* control-token string in content (`<|eot_id|>`, `<|start_header_id|>`, …) becomes
its control token under the card's semantics: a reply can close its own turn and forge a new one.
That stays the default (scores must be the card's), and `neutralize` (job option
`control_tokens`, setting RMSCORE_CONTROL_TOKENS) is the opt-in defence: see `ControlStrings`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rmscore.formats import Conversation

# Inserted after the first character of a control-token string found in content. Why this, and not
# tokenizing content with `split_special_tokens`: the text still goes through the card's single
# tokenizer call, so content without such strings gives bit-identical ids (and scores) in both
# modes, and the chat template's own control tokens are untouched. Tokenizing content pieces apart
# would change BPE merges at the seams for every conversation. The string still reads the same.
BREAK = "\u200b"  # ZERO WIDTH SPACE: not whitespace to str.strip/Jinja's trim, so never dropped


class ControlStrings:
    """The tokenizer's added-token strings (every one is matched before BPE, so every one is a
    control token when it appears in text), and how to break them in content."""

    def __init__(self, tokenizer: Any) -> None:
        added = {t.content for t in tokenizer.added_tokens_decoder.values() if t.content}
        # Longest first, so `<|reserved_special_token_25|>` is not matched as a shorter token.
        self.pattern = re.compile("|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)))
        self.strings = frozenset(added)

    def neutralize_text(self, text: str) -> str:
        """`text` with no control-token string left in it. No such string contains BREAK, so every
        occurrence after a pass is one of the original text that overlapped a match and was skipped:
        each pass breaks at least one original occurrence and creates none, so repeating until
        nothing matches ends within len(text) passes (one, unless occurrences overlap)."""
        if not self.strings:
            return text
        for _ in range(len(text) + 1):
            new = self.pattern.sub(lambda m: m[0][0] + BREAK + m[0][1:], text)
            if new == text:
                return text
            text = new
        raise AssertionError("unreachable: neutralizing did not converge")  # pragma: no cover

    def neutralize(self, conversation: Conversation) -> tuple[Conversation, bool]:
        """(the conversation with every message's content neutralized, whether anything changed)."""
        out: Conversation = []
        changed = False
        for message in conversation:
            content = self.neutralize_text(message["content"])
            if content != message["content"]:
                changed = True
                message = {**message, "content": content}
            out.append(message)
        return (out, True) if changed else (conversation, False)


@dataclass(slots=True)
class Encoded:
    ids: list[int]
    truncated: bool
    too_long: bool  # longer than max_length before truncation


class Renderer:
    def __init__(self, tokenizer: Any, max_length: int) -> None:
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template; a reward model needs one")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.bos_token: str | None = tokenizer.bos_token
        self.bos_id: int | None = tokenizer.bos_token_id
        self.control = ControlStrings(tokenizer)
        # A fast tokenizer's Rust state must not be called from two threads at once ("Already
        # borrowed"): a worker renders on its prepare thread and, bisecting a poison chunk, on its device thread.
        self._lock = threading.Lock()

    def text(self, conversation: Conversation | str) -> str:
        """The card's text for a conversation; a `str` is text a trainer already rendered (kind `text`),
        which gets the same rule: every BOS string removed, so the tokenizer puts back exactly one.
        A text that starts with its own BOS (as a rendered chat template does) thus scores the same
        as the conversation it renders; a text without one still gets one."""
        return self.texts([conversation])[0]

    def texts(self, conversations: Sequence[Conversation | str]) -> list[str]:
        """The card's text of each conversation; a `str` is text already rendered (kept as it is, then
        the same BOS rule). The conversations go through one `apply_chat_template` call: the same
        template renders each (identical strings) without the set-up of a call per conversation."""
        chats = [c for c in conversations if not isinstance(c, str)]
        rendered = iter(
            self.tokenizer.apply_chat_template(chats, tokenize=False, add_generation_prompt=False) if chats else []
        )
        texts = [c if isinstance(c, str) else next(rendered) for c in conversations]
        return [t.replace(self.bos_token, "") for t in texts] if self.bos_token else texts

    def encode(self, conversations: Sequence[Conversation | str]) -> list[Encoded]:
        if not conversations:  # every one answered by the score cache (the tokenizer refuses an empty batch)
            return []
        texts = self.texts(conversations)
        # One call for the whole list: the fast tokenizer encodes a batch in parallel in Rust.
        with self._lock:
            all_ids = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [self._fit(ids) for ids in all_ids]

    def _fit(self, ids: list[int]) -> Encoded:
        if len(ids) <= self.max_length:
            return Encoded(ids, truncated=False, too_long=False)
        # Truncate on the left, as the tokenizer's truncation_side says, keeping the one BOS: the
        # end of the conversation (the reply being judged) is what the score is about.
        head = [ids[0]] if self.bos_id is not None and ids[0] == self.bos_id else []
        keep = self.max_length - len(head)
        return Encoded(head + ids[-keep:], truncated=True, too_long=True)
