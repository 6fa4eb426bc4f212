"""The scoring engine: one loaded reward model, fed length-sorted micro-batches under a token budget.

Semantics are the model card's (see `worker.render`): the score is the raw logit of the single
output at the last real token, no sigmoid. The engine reads that logit from the base model's hidden
state at each row's own last position rather than letting the model find it through pad ids, so a
missing pad token, or a pad-token string typed by a user, can never move the pooled position.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

import torch

from rmscore.formats import Conversation
from rmscore.vocabulary import Overflow
from worker import faults
from worker.batching import filled, pack
from worker.render import Encoded, Renderer

log = logging.getLogger(__name__)

# Budgets (batch size x longest sequence). On a 2-core CPU, 512-2048 tokens beat 8192 (the batch's
# activations stay in cache); a GPU needs big batches to fill its cores. See README, Performance.
DEFAULT_BUDGET = {"cpu": 1024, "cuda": 32768}
# Model types whose position ids count from 0 whatever the attention mask says (transformers derives
# them from cache positions), so dropping the mask under right padding is exact.
MASK_FREE = frozenset({"llama"})
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ScorerOptions(TypedDict, total=False):
    """How a Scorer places and batches its model: the keywords `Scorer.load` passes on to
    `Scorer.from_model` (one list, so the two load paths cannot drift apart)."""

    device: str
    max_batch_tokens: int | None
    max_batch_size: int
    overflow: Overflow
    lanes: int | None
    packed: bool


@dataclass(slots=True)
class Scored:
    score: float  # the raw logit of the single-output head: the reward
    num_tokens: int  # tokens the model saw (after truncation), BOS included
    truncated: bool


@dataclass(slots=True)
class Rejected:
    code: str  # stable, e.g. "too_long"
    message: str


@dataclass
class EngineStats:
    items: int = 0
    tokens: int = 0  # real tokens
    padded_tokens: int = 0  # batch_size x longest, summed over batches
    batches: int = 0
    oom_splits: int = 0
    seconds: float = 0.0  # time inside forward passes

    @property
    def padding_efficiency(self) -> float:
        return self.tokens / self.padded_tokens if self.padded_tokens else 1.0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def lanes_for(device: torch.device, lanes: int | None) -> tuple[int, int]:
    """(lanes, torch threads per lane). A CPU gets one lane per torch thread by default: a 2-core
    machine scores ~1.2-1.4x faster running two single-threaded batches than splitting every op of
    one batch across both cores (small ops pay for each fork-join). A GPU runs one batch at a time."""
    if device.type != "cpu":
        return 1, torch.get_num_threads()
    threads = torch.get_num_threads()
    n = max(1, lanes if lanes is not None else threads)
    return n, max(1, threads // n)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected auto, {', '.join(DTYPES)}") from None


@dataclass
class Scorer:
    model: str
    name: str
    device: str
    dtype: str
    max_length: int
    max_batch_tokens: int
    max_batch_size: int
    overflow: Overflow
    stats: EngineStats = field(default_factory=EngineStats)
    revision: str | None = None
    # What names the weights' content (`worker.weights`): a SHA-256 digest of a model directory or a
    # hub commit; None for a model built in memory, which the score cache then never serves.
    weights: str | None = None
    # Micro-batches in flight at once. On a CPU each lane is a thread with its share of the cores:
    # one small batch per core beats every core splitting each op (see `lanes_for`). CUDA: 1.
    lanes: int = 1
    packed_linears: int = 0  # linear layers running on oneDNN-packed weights (CPU fp32)
    # Right padding under a causal mask: a real token attends only to positions before it, all of
    # them real, so a padding mask changes nothing the pooled read sees. Without one, attention runs
    # the plain causal kernel (flash on CUDA), the same one the card's unpadded batch-size-1 calls
    # get. Only for architectures whose position ids do not come from the mask (see MASK_FREE).
    mask_free: bool = False
    # Called after each micro-batch's forward pass: (rows, padded width, real tokens, seconds). Metrics
    # hang here, outside the scoring path.
    on_batch: Callable[[int, int, int, float], None] | None = field(default=None, repr=False)
    # Called at every micro-batch boundary of a scoring call, on the calling thread, while it holds
    # `gate`: the online lane (worker/online.py) serves waiting requests here, so they wait for one
    # micro-batch of batch work, not for the whole chunk. Must not raise (failures are logged).
    between_batches: Callable[[], None] | None = field(default=None, repr=False)
    # Held by whoever is scoring (re-entrant: online work served at a boundary scores inside the batch
    # call). One scoring call at a time keeps the tokenizer, which is not thread-safe, to one thread.
    gate: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _model: Any = field(default=None, repr=False)
    _renderer: Renderer | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, model: str, *, dtype: str = "auto", **options: Unpack[ScorerOptions]) -> Scorer:
        """Load a model directory or hub id through the same path the card uses (from_pretrained);
        `options` go on to `from_model`, which holds their defaults."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from worker.model_source import check_model_available
        from worker.weights import PendingIdentity

        check_model_available(model)
        dev = resolve_device(options.get("device", "auto"))
        options["device"] = str(dev)  # "auto" settled once: from_model runs on the device the dtype fits
        torch_dtype = resolve_dtype(dtype, dev)
        # A directory's weights are hashed while they load; a hub model's commit is known after.
        pending = PendingIdentity(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model)
            hf_model = AutoModelForSequenceClassification.from_pretrained(
                model, dtype=torch_dtype, attn_implementation="sdpa"
            )
            engine = cls.from_model(hf_model, tokenizer, model=model, **options)
            engine.weights = pending.result(engine.revision)
        finally:
            pending.close()
        return engine

    @classmethod
    def from_model(
        cls,
        hf_model: Any,
        tokenizer: Any,
        *,
        model: str = "in-memory",
        device: str = "auto",
        max_batch_tokens: int | None = None,
        max_batch_size: int = 256,
        overflow: Overflow = "truncate",
        lanes: int | None = None,
        packed: bool = True,
    ) -> Scorer:
        """Wrap an already-loaded model (benchmarks build one in memory)."""
        from rmscore.settings import model_name

        dev = resolve_device(device)
        if getattr(hf_model.config, "num_labels", 1) != 1:
            raise ValueError(f"{model} has {hf_model.config.num_labels} labels; a reward model has one")
        hf_model = hf_model.to(dev).eval()
        max_length = int(min(tokenizer.model_max_length, 1_000_000))
        budget = max_batch_tokens or DEFAULT_BUDGET.get(dev.type, DEFAULT_BUDGET["cuda"])
        engine = cls(
            model=model,
            name=model_name(model),
            device=str(dev),
            dtype=str(next(hf_model.parameters()).dtype).removeprefix("torch."),
            max_length=max_length,
            max_batch_tokens=max(budget, 1),
            max_batch_size=max_batch_size,
            overflow=overflow,
            revision=getattr(hf_model.config, "_commit_hash", None),
        )
        engine.mask_free = getattr(hf_model.config, "model_type", None) in MASK_FREE
        engine.lanes, threads = lanes_for(dev, lanes)
        if engine.lanes > 1:
            engine._pool = ThreadPoolExecutor(
                engine.lanes, thread_name_prefix="rmscore-lane", initializer=torch.set_num_threads, initargs=(threads,)
            )
        if packed and dev.type == "cpu":
            from worker.cpu_linear import pack_linears

            # The head stays plain: it is one row per conversation, and the pooled read needs it.
            engine.packed_linears = pack_linears(getattr(hf_model, hf_model.base_model_prefix))
        engine._model = hf_model
        engine._renderer = Renderer(tokenizer, max_length)
        return engine

    @property
    def identity(self) -> dict[str, Any]:
        """What makes two scores comparable: same model, revision, weights, dtype and max_length."""
        return {
            "model": self.model,
            "revision": self.revision,
            "weights": self.weights,
            "dtype": self.dtype,
            "max_length": self.max_length,
        }

    @property
    def renderer(self) -> Renderer:
        assert self._renderer is not None, "engine not loaded"
        return self._renderer

    def warmup(self) -> None:
        """One real forward pass before taking work: proves the model runs and pays one-off costs."""
        conv = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! How can I help?"}]
        self.score([conv, conv])

    # ------------------------------------------------------------------ scoring

    def score(
        self, conversations: Sequence[Conversation | str], *, overflow: Overflow | None = None
    ) -> list[Scored | Rejected]:
        """Score each conversation (or pre-rendered text, see `Renderer.text`); results in input order."""
        with self.gate:
            return self.score_encoded(self.renderer.encode(conversations), overflow=overflow)

    def score_encoded(
        self, encoded: Sequence[Encoded], *, overflow: Overflow | None = None
    ) -> list[Scored | Rejected]:
        policy = overflow or self.overflow
        out: list[Scored | Rejected | None] = [None] * len(encoded)
        todo: list[int] = []
        for i, enc in enumerate(encoded):
            if enc.too_long and policy == "error":
                out[i] = Rejected(
                    "too_long",
                    f"conversation is longer than the model's {self.max_length}-token limit "
                    "(overflow=error; use overflow=truncate to keep its end)",
                )
            else:
                todo.append(i)
        lengths = [len(encoded[i].ids) for i in todo]
        batches = [[todo[b] for b in batch] for batch in pack(lengths, self.max_batch_tokens, self.max_batch_size)]
        with self.gate:
            scored = self._run([[encoded[i] for i in rows] for rows in batches])
        for rows, results in zip(batches, scored, strict=True):
            for i, result in zip(rows, results, strict=True):
                out[i] = result
        with self._lock:
            self.stats.items += len(encoded)
        return filled(out)

    def _run(self, batches: list[list[Encoded]]) -> list[list[Scored | Rejected]]:
        """Score micro-batches, `lanes` at a time; results in the order of `batches`. Between two of
        them, `between_batches` runs (online requests get the device there)."""
        out: list[list[Scored | Rejected] | None] = [None] * len(batches)
        if self._pool is None or len(batches) < 2:
            for i, rows in enumerate(batches):
                if i:
                    self._boundary()
                out[i] = self._score_rows(rows)
            return filled(out)
        # At most `lanes` batches in flight (not all of them queued on the pool at once), so what
        # `between_batches` submits waits behind one batch per lane, not behind the whole call.
        inflight: dict[Future[list[Scored | Rejected]], int] = {}
        try:
            for i, rows in enumerate(batches):
                if len(inflight) >= self.lanes:
                    self._collect(inflight, out)
                    self._boundary()
                inflight[self._pool.submit(self._score_rows, rows)] = i
            while inflight:
                self._collect(inflight, out)
        except BaseException:
            for f in inflight:  # a failed batch fails the call: do not leave the others computing
                f.cancel()
            raise
        return filled(out)

    @staticmethod
    def _collect(
        inflight: dict[Future[list[Scored | Rejected]], int], out: list[list[Scored | Rejected] | None]
    ) -> None:
        """Wait for at least one batch in flight; store the finished ones' results (raises their error)."""
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        for f in done:
            out[inflight.pop(f)] = f.result()

    def _boundary(self) -> None:
        hook = self.between_batches
        if hook is None:
            return
        try:
            hook()
        except Exception:  # noqa: BLE001 - online work must never fail the batch call it interrupted
            log.exception("between_batches failed")

    def _score_rows(self, rows: list[Encoded]) -> list[Scored | Rejected]:
        """Score one micro-batch; on out-of-memory, halve it, retry, and keep the lower budget."""
        faults.before_batch()  # inert unless a test asks for slow batches
        try:
            scores = self._forward([r.ids for r in rows])
        except torch.OutOfMemoryError:
            if self._model is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
            longest = max(len(r.ids) for r in rows)
            if len(rows) == 1:
                return [
                    Rejected("out_of_memory", f"a single {longest}-token conversation does not fit in memory")
                ]
            with self._lock:
                self.stats.oom_splits += 1
            self.max_batch_tokens = min(self.max_batch_tokens, max(longest, (len(rows) // 2) * longest))
            log.warning(
                "out of memory on %d x %d tokens; max_batch_tokens now %d",
                len(rows),
                longest,
                self.max_batch_tokens,
            )
            half = len(rows) // 2
            return self._score_rows(rows[:half]) + self._score_rows(rows[half:])
        return [Scored(s, len(r.ids), r.truncated) for s, r in zip(scores, rows, strict=True)]

    @torch.inference_mode()
    def _forward(self, batch: list[list[int]]) -> list[float]:
        model = self._model
        dev = torch.device(self.device)
        lengths = [len(ids) for ids in batch]
        width = max(lengths)
        pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for r, ids in enumerate(batch):
            input_ids[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        kwargs: dict[str, torch.Tensor] = {}
        if not self.mask_free:
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, ids in enumerate(batch):
                mask[r, : len(ids)] = 1
            kwargs["attention_mask"] = mask.to(dev)
        t0 = time.perf_counter()
        # Right padding keeps every real token at the position ids it has unbatched, so a row's
        # score does not depend on what it was batched with.
        base = getattr(model, model.base_model_prefix)
        hidden = base(input_ids=input_ids.to(dev), **kwargs).last_hidden_state
        last = torch.tensor(lengths, device=dev) - 1
        pooled = hidden[torch.arange(len(batch), device=dev), last]
        scores = model.score(pooled)[:, 0].float().tolist()
        seconds = time.perf_counter() - t0
        with self._lock:  # lanes finish batches concurrently
            self.stats.seconds += seconds
            self.stats.batches += 1
            self.stats.tokens += sum(lengths)
            self.stats.padded_tokens += len(batch) * width
        if self.on_batch is not None:
            self.on_batch(len(batch), width, sum(lengths), seconds)
        return scores
