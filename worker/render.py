"""Turn a conversation into exactly the token ids the model card's pipeline feeds the model.

The card: `text = tokenizer.apply_chat_template(chat, tokenize=False).replace(tokenizer.bos_token, "")`,
then the text-classification pipeline tokenizes `text` with special tokens on, which puts exactly
one BOS back. Removing *every* BOS string (not just the leading one) is the card's behaviour too,
and it is what keeps a `<|begin_of_text|>` typed by a user from becoming a second BOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rmscore.formats import Conversation


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

    def text(self, conversation: Conversation) -> str:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        return text.replace(self.bos_token, "") if self.bos_token else text

    def encode(self, conversations: Sequence[Conversation]) -> list[Encoded]:
        texts = [self.text(c) for c in conversations]
        # One call for the whole list: the fast tokenizer encodes a batch in parallel in Rust.
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
