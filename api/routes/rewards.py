"""Faces RLHF trainers already speak, over the same online lane as `POST /v1/score` (api/online.py),
with the same API keys, limits and errors. Every score is the card's raw logit.

- `POST /get_reward`: OpenRLHF's remote reward model protocol. Its client (`remote_rm_fn` in
  openrlhf/utils/remote_rm_utils.py) posts `{"query": [text, ...], "prompts": [...], "labels": [...]}`
  and reads `rewards`; its reference server (openrlhf/cli/serve_rm.py) answers
  `{"rewards", "scores", "extra_logs"}`, which this matches. That client sends no Authorization
  header, but `requests` turns credentials in the URL into HTTP Basic, which api/auth.py accepts with
  the key as the password: `--remote_rm_url http://rm:KEY@host:8000/get_reward`.
- `POST /classify` (and `/v1/classify`): vLLM's classification API (ClassificationCompletionRequest /
  ClassificationChatRequest and ClassificationResponse in vllm/entrypoints/pooling/classify/protocol.py):
  `input` (a text or a list of texts) or `messages` (one conversation) in, `data[i].probs` out.
  vLLM applies the head's activation unless `use_activation` is false; a reward model's score is the
  raw logit, so here the default is raw and `use_activation` (or its deprecated `activation` /
  `softmax`) true asks for the sigmoid, vLLM's activation for a single-label head.

A text is a conversation the trainer already rendered with the chat template (kind `text`): every
BOS string in it is removed and exactly one added, so a text with the template's BOS and one
without score the same. An item that cannot be scored fails the whole request (422, saying which):
a trainer needs one reward per sample, not a partial list.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api import online
from api.deps import CallerDep, StateDep
from api.errors import responses
from api.state import ApiState
from rmscore.errors import InputError

router = APIRouter(tags=["trainers"])
ERRORS = responses(400, 401, 413, 422, 429, 502, 503, 504)


class GetRewardRequest(BaseModel):
    # OpenRLHF sends `prompts` and `labels` beside `query` (its rule-based servers use them): accepted,
    # unused; anything else it may add later is ignored rather than refused.
    model_config = ConfigDict(extra="ignore")

    query: list[Any] = Field(min_length=1, description="Rendered conversations (chat template applied).")
    prompts: list[Any] | None = Field(None, description="Accepted for OpenRLHF; not used (queries hold them).")
    labels: list[Any] | None = Field(None, description="Accepted for OpenRLHF; not used.")
    model: str | None = Field(None, max_length=256, description="A model the server serves [default model].")


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # vLLM's other fields (priority, user, …) change nothing here

    model: str | None = Field(None, max_length=256)
    input: str | list[Any] | None = Field(None, description="A rendered conversation, or a list of them.")
    messages: list[Any] | None = Field(None, description="One conversation as chat messages (vLLM's chat form).")
    use_activation: bool | None = Field(None, description="true: sigmoid of the logit; default: the raw logit.")
    activation: bool | None = Field(None, description="Deprecated in vLLM for use_activation.")
    softmax: bool | None = Field(None, description="Deprecated in vLLM for use_activation.")
    truncate_prompt_tokens: int | None = Field(
        None, description="Accepted; over-long inputs keep their end, as RMSCORE_OVERFLOW says."
    )
    user: str | None = Field(None, max_length=256)


async def _scores(
    state: ApiState, tenant: str, model: str | None, items: list[Any], what: str
) -> tuple[str, list[Any]]:
    """(model, one scored record per item, in order); 422 naming the first item that failed."""
    errors, todo = online.parse(items, state)
    if errors:
        line = min(errors)
        err = errors[line]["error"]
        raise InputError(f"{what}[{line - 1}]: {err['message']}", code=err["code"])
    model, reply = await online.score(state, tenant, model, todo, None)
    records = reply["records"] if reply else []
    bad = next((r for r in records if "error" in r), None)
    if bad is not None:
        raise InputError(f"{what}[{bad['line'] - 1}]: {bad['error']['message']}", code=bad["error"]["code"])
    return model, records


def _sigmoid(x: float) -> float:
    # Either form only ever takes exp of a non-positive number: no overflow for any logit.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@router.post("/get_reward", summary="OpenRLHF remote reward model protocol", responses=ERRORS)
async def get_reward(body: GetRewardRequest, caller: CallerDep, state: StateDep) -> JSONResponse:
    """`{"query": [text, ...]}` -> `{"rewards": [logit, ...], "scores": [...], "extra_logs": {}}`."""
    _, records = await _scores(state, caller.tenant, body.model, [{"text": q} for q in body.query], "query")
    rewards = [r["score"] for r in records]
    return JSONResponse({"rewards": rewards, "scores": rewards, "extra_logs": {}})


@router.post("/classify", summary="vLLM-compatible classification", responses=ERRORS)
@router.post("/v1/classify", summary="vLLM-compatible classification", responses=ERRORS, include_in_schema=False)
async def classify(body: ClassifyRequest, caller: CallerDep, state: StateDep) -> JSONResponse:
    """vLLM's ClassificationResponse; `data[i].probs[0]` is the reward (raw logit unless `use_activation`)."""
    if (body.input is None) == (body.messages is None):
        raise InputError("send exactly one of input (text or list of texts) or messages", code="invalid_request")
    if body.messages is not None:
        items: list[Any] = [{"messages": body.messages}]
        what = "messages"
    else:
        texts = [body.input] if isinstance(body.input, str) else body.input or []
        if not texts:
            raise InputError("input is empty", code="invalid_request")
        items, what = [{"text": t} for t in texts], "input"
    model, records = await _scores(state, caller.tenant, body.model, items, what)
    flags = (body.use_activation, body.activation, body.softmax)
    sigmoid = next((f for f in flags if f is not None), False)
    tokens = sum(r["num_tokens"] for r in records)
    data = [
        {
            "index": i,
            "label": None,
            "probs": [_sigmoid(r["score"]) if sigmoid else r["score"]],
            "num_classes": 1,
        }
        for i, r in enumerate(records)
    ]
    return JSONResponse(
        {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": data,
            "usage": {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }
    )
