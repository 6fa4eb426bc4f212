"""A small typed client for the rmscore API, for scripts and notebooks.

    from rmscore.client import Client

    with Client("http://127.0.0.1:8000", api_key="rk_…") as api:
        job = api.submit("pairs.jsonl", kind="pairwise")
        job = api.wait(job.id, on_progress=lambda j: print(j.done, "/", j.total))
        for record in api.results(job.id):
            ...

Errors come back as the `rmscore.errors` class of their status (NotFound, Unauthorized, …) with
the server's stable `code`. Submissions carry an `Idempotency-Key` (a fresh one unless given), so
a submission retried after a dropped connection returns the same job, never a second one.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from rmscore import errors
from rmscore.http import CLIENT_HEADER

TERMINAL = ("completed", "failed", "cancelled")
RETRY_STATUSES = (429, 502, 503, 504)
_STATUS_ERRORS: dict[int, type[errors.RmscoreError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.TooLarge,
    422: errors.InputError,
}


class ApiError(errors.RmscoreError):
    """An answer with no more specific class (5xx, 415, …); `http_status` is the answer's."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int = 500) -> None:
        super().__init__(message, code=code)
        self.http_status = http_status


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    kind: str
    model: str
    total: int
    completed: int
    failed: int
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        c = d.get("request_counts") or {}
        return cls(
            d["id"],
            d["status"],
            d["kind"],
            d["model"],
            int(c.get("total", 0)),
            int(c.get("completed", 0)),
            int(c.get("failed", 0)),
            d,
        )

    @property
    def done(self) -> int:
        return self.completed + self.failed

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def accuracy(self) -> dict[str, Any] | None:
        return self.raw.get("accuracy")

    @property
    def items_per_second(self) -> float | None:
        return self.raw.get("items_per_second")


def raise_for_error(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        if not resp.is_stream_consumed:
            resp.read()
        body = resp.json()
        code, message = body["error"]["code"], body["error"]["message"]
    except Exception:  # noqa: BLE001 - not our error shape (a proxy, say): keep what there is
        code, message = "http_error", f"HTTP {resp.status_code}: {resp.text[:300]}"
    cls = _STATUS_ERRORS.get(resp.status_code)
    if resp.status_code == 429:
        retry = resp.headers.get("Retry-After", "30")
        raise errors.Overloaded(message, retry_after=int(retry) if retry.isdigit() else 30)
    if cls is not None:
        raise cls(message, code=code)
    raise ApiError(message, code=code, http_status=resp.status_code)


class _ProgressFile:
    """A binary file that reports bytes read, for upload progress (httpx streams it in chunks)."""

    def __init__(self, f: IO[bytes], total: int | None, on_progress: Callable[[int, int | None], None]) -> None:
        self._f, self.total, self.on_progress, self.sent = f, total, on_progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sent += len(data)
        self.on_progress(self.sent, self.total)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if offset == 0 and whence == 0:
            self.sent = 0
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if base_url is None or api_key is None:
            from rmscore.settings import get_settings

            s = get_settings()
            base_url = base_url or s.api_url or "http://127.0.0.1:8000"
            api_key = api_key if api_key is not None else s.api_key
        # CLIENT_HEADER: an API without auth refuses form-shaped bodies (our uploads) without it.
        headers = {"User-Agent": "rmscore-client", CLIENT_HEADER: "rmscore"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.retries = retries
        self.http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        """One call; connection errors and 429/5xx-unavailable are retried with backoff when `retry`
        (only for calls safe to repeat: reads, and submissions carrying an idempotency key)."""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                resp = self.http.request(method, url, **kw)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                if attempt == attempts:
                    raise
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < attempts:
                wait = resp.headers.get("Retry-After", "")
                time.sleep(min(float(wait), 30.0) if wait.isdigit() else min(0.5 * 2 ** (attempt - 1), 8.0))
                continue
            raise_for_error(resp)
            return resp
        raise AssertionError("unreachable")

    def _json(self, method: str, url: str, **kw: Any) -> Any:
        return self._request(method, url, **kw).json()

    # ------------------------------------------------------------------ jobs

    def submit(
        self,
        source: str | os.PathLike[str] | Iterable[dict[str, Any]],
        *,
        kind: str = "auto",
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
        models: list[str] | None = None,
    ) -> Job:
        """Submit a file (JSONL, .jsonl.gz, .parquet, .json; streamed) or a list of items as a job.

        `on_progress(bytes_sent, total_bytes)` follows a file upload.
        """
        key = idempotency_key or uuid.uuid4().hex
        headers = {"Idempotency-Key": key}
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            form: dict[str, str] = {"kind": kind}
            if model:
                form["model"] = model
            if metadata is not None:
                form["metadata"] = json.dumps(metadata)
            if options and options.get("overflow"):
                form["overflow"] = options["overflow"]
            if options and options.get("control_tokens"):
                form["control_tokens"] = options["control_tokens"]
            if options and options.get("cache") is not None:
                form["cache"] = "true" if options["cache"] else "false"
            if models:
                form["models"] = ",".join(models)
            with open(path, "rb") as f:
                fobj: Any = f
                if on_progress is not None:
                    fobj = _ProgressFile(f, path.stat().st_size, on_progress)
                # Uploads can take long: no read timeout while the server stores the lines.
                d = self._json(
                    "POST",
                    "/v1/jobs/upload",
                    data=form,
                    files={"file": (path.name, fobj, "application/octet-stream")},
                    headers=headers,
                    timeout=httpx.Timeout(None, connect=10.0),
                )
            return Job.from_dict(d)
        body: dict[str, Any] = {"kind": kind, "items": list(source)}
        if model:
            body["model"] = model
        if metadata is not None:
            body["metadata"] = metadata
        if options:
            body["options"] = options
        if models:
            body["models"] = models
        return Job.from_dict(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def compare(self, job_id: str, models: list[str] | None = None, **params: Any) -> dict[str, Any]:
        """GET /v1/jobs/{id}/compare: two of the job's models side by side (`db.compare.compare_job`)."""
        if models:
            params["models"] = ",".join(models)
        return self._json("GET", f"/v1/jobs/{job_id}/compare", params=params)

    def job(self, job_id: str) -> Job:
        return Job.from_dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, status: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """Your jobs, newest first (every page, lazily)."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", "/v1/jobs", params=params)
            for d in page["data"]:
                yield Job.from_dict(d)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def wait(
        self,
        job_id: str,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job ends; `on_progress(job)` after each poll. TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout}s")
            time.sleep(poll)

    def report(self, job_id: str) -> str:
        """GET /v1/jobs/{id}/report: the job's report, one self-contained HTML page."""
        return self._request("GET", f"/v1/jobs/{job_id}/report").text

    def cancel(self, job_id: str) -> Job:
        return Job.from_dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def results(self, job_id: str, *, errors_only: bool = False, model: str | None = None) -> Iterator[dict[str, Any]]:
        """The job's result records in input order, streamed (the shapes `rmscore score` writes);
        `model`: whose, for a job scored by several models [the job's own model]."""
        url = f"/v1/jobs/{job_id}/{'errors' if errors_only else 'results'}"
        params = {"format": "jsonl", **({"model": model} if model else {})}
        with self.http.stream("GET", url, params=params, timeout=httpx.Timeout(None, connect=10.0)) as r:
            raise_for_error(r)
            for line in r.iter_lines():
                if line:
                    yield json.loads(line)

    def results_page(
        self, job_id: str, *, cursor: str | None = None, limit: int = 100, errors_only: bool = False
    ) -> dict[str, Any]:
        """One page `{data, next_cursor, has_more}` of records."""
        params: dict[str, Any] = {"format": "json", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._json("GET", f"/v1/jobs/{job_id}/{'errors' if errors_only else 'results'}", params=params)

    def download(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        format: str | None = None,
        errors_only: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write results to `path` as jsonl, jsonl.gz, csv or parquet (default: the format its suffix
        names; any other suffix is refused with BadRequest before anything is asked or written).
        Returns the bytes received."""
        from rmscore.export import format_of

        path = Path(path)
        fmt = format or format_of(path)
        gz = fmt == "jsonl.gz"  # the API sends JSON lines; they are compressed here, as the name says
        url = f"/v1/jobs/{job_id}/{'errors' if errors_only else 'results'}"
        return self._save(url, {"format": "jsonl" if gz else fmt}, path, gz=gz, on_progress=on_progress)

    def preferences(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        pairs: str | None = None,
        min_margin: float | None = None,
        model: str | None = None,
    ) -> int:
        """GET /v1/jobs/{id}/preferences into `path` (.jsonl, .jsonl.gz or .parquet): the job's
        preference rows in TRL's format (`rmscore.preferences`). Returns the bytes received."""
        params = {"pairs": pairs, "min_margin": min_margin, "model": model}
        return self._export(f"/v1/jobs/{job_id}/preferences", params, path)

    def best(
        self, job_id: str, path: str | os.PathLike[str], *, min_score: float | None = None, model: str | None = None
    ) -> int:
        """GET /v1/jobs/{id}/best into `path`: each line's best response, as TRL's prompt-completion rows."""
        return self._export(f"/v1/jobs/{job_id}/best", {"min_score": min_score, "model": model}, path)

    def _export(self, url: str, params: dict[str, Any], path: str | os.PathLike[str]) -> int:
        from rmscore.preferences import output_format

        fmt = output_format(path)  # refused before anything is asked
        gz = fmt == "jsonl.gz"
        wanted = {k: v for k, v in params.items() if v is not None}
        return self._save(url, {**wanted, "format": "jsonl" if gz else fmt}, path, gz=gz)

    def _save(
        self,
        url: str,
        params: dict[str, Any],
        path: str | os.PathLike[str],
        *,
        gz: bool,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream a download into `path` (complete or not at all; '-': stdout), gzipping it here with
        `gz`: the API sends JSON lines plain. Returns the bytes received."""
        from rmscore.export import save

        with self.http.stream("GET", url, params=params, timeout=httpx.Timeout(None, connect=10.0)) as r:
            raise_for_error(r)

            def received() -> Iterator[bytes]:
                n = 0
                for chunk in r.iter_bytes():
                    n += len(chunk)
                    if on_progress is not None:
                        on_progress(n)
                    yield chunk

            if os.fspath(path) == "-":
                return sum(sys.stdout.buffer.write(chunk) for chunk in received())
            return save(received(), path, gz=gz)

    # ------------------------------------------------------------------ scores

    def scores(self, *, page_size: int = 1000, **filters: Any) -> Iterator[dict[str, Any]]:
        """Stored scores of your jobs matching `filters` (job_id, custom_id, subset, min_score,
        max_score, truncated, correct, model), every page, in (job_id, line, model) order."""
        cursor: str | None = None
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items() if v is not None}
        while True:
            q = {**params, "limit": page_size}
            if cursor:
                q["cursor"] = cursor
            page = self._json("GET", "/v1/scores", params=q)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def score(
        self, items: list[dict[str, Any]], *, model: str | None = None, overflow: str | None = None
    ) -> list[dict[str, Any]]:
        """Score a few items now (`POST /v1/score`); one record per item, in order."""
        body: dict[str, Any] = {"items": items}
        if model:
            body["model"] = model
        if overflow:
            body["options"] = {"overflow": overflow}
        # Not retried: a timed-out request may still be scored, and scoring twice only wastes work.
        return self._json("POST", "/v1/score", json=body, retry=False)["results"]

    def ready(self) -> dict[str, Any]:
        resp = self.http.get("/readyz")
        return resp.json()


class RewardFunction:
    """A TRL reward function backed by rmscore (`reward_function` makes one); see its docstring."""

    def __init__(
        self,
        urls: list[str],
        api_key: str | None,
        *,
        model: str | None,
        timeout: float,
        retries: int,
        batch_size: int,
        name: str,
    ) -> None:
        if not urls:
            raise ValueError("reward_function needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.api_key, self.model = api_key, model
        self.timeout, self.retries, self.batch_size = timeout, retries, max(1, batch_size)
        # TRL logs each reward function under its __name__ (GRPOTrainer's reward_func_names).
        self.__name__ = name
        self._http: httpx.Client | None = None
        self._pid = 0
        self._next = 0  # the URL to try first: calls take turns, spreading load over the fleet

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for trainer processes: each process opens its own connections (below).
        return {**self.__dict__, "_http": None, "_pid": 0}

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        """TRL's signature: one raw-logit reward per completion. Strings are a prompt and its reply
        (a user turn, an assistant turn); conversational lists are joined, prompt turns then the
        completion's. Extra dataset columns TRL passes in `kwargs` are ignored."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        items = [_trl_item(p, c) for p, c in zip(prompts, completions, strict=True)]
        rewards: list[float] = []
        for start in range(0, len(items), self.batch_size):
            records = self._post({"items": items[start : start + self.batch_size], "model": self.model})
            for rec in records:
                if "error" in rec:
                    err = rec["error"]
                    raise errors.InputError(f"completion {start + rec['line'] - 1}: {err['message']}", code=err["code"])
                rewards.append(float(rec["score"]))
        return rewards

    def _client(self) -> httpx.Client:
        # A client made before a fork is not the child's to use (its sockets are shared): one per process.
        if self._http is None or self._pid != os.getpid():
            headers = {"User-Agent": "rmscore-reward-function", CLIENT_HEADER: "rmscore"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout, connect=5.0))
            self._pid = os.getpid()
        return self._http

    def _post(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """POST /v1/score to each URL in turn, on connection errors and 429/502/503/504, for `retries`
        rounds with backoff. Repeating a request is safe: scoring has no side effect."""
        last: Exception | None = None
        for round_ in range(self.retries + 1):
            for k in range(len(self.urls)):
                url = self.urls[(self._next + k) % len(self.urls)]
                try:
                    resp = self._client().post(f"{url}/v1/score", json=body)
                except httpx.TransportError as exc:
                    last = exc
                    continue
                if resp.status_code in RETRY_STATUSES:
                    last = ApiError(f"{url}: HTTP {resp.status_code}", http_status=resp.status_code)
                    continue
                raise_for_error(resp)
                self._next = (self._next + k + 1) % len(self.urls)
                results: list[dict[str, Any]] = resp.json()["results"]
                return results
            if round_ < self.retries:
                time.sleep(min(0.5 * 2**round_, 8.0))
        message = f"no rmscore server answered after {self.retries + 1} rounds: {last}"
        raise ApiError(message, code="unavailable", http_status=503)


def _trl_item(prompt: Any, completion: Any) -> dict[str, Any]:
    if isinstance(prompt, str) and isinstance(completion, str):
        return {"prompt": prompt, "response": completion}
    if isinstance(prompt, list) and isinstance(completion, list):
        return {"messages": [*prompt, *completion]}
    raise TypeError("prompts and completions must both be strings or both be lists of messages (TRL's formats)")


def reward_function(
    url: str | list[str],
    api_key: str | None = None,
    *,
    model: str | None = None,
    timeout: float = 120.0,
    retries: int = 3,
    batch_size: int = 64,
    name: str = "rmscore",
) -> RewardFunction:
    """A callable with TRL's reward-function signature (`prompts`, `completions`, `**kwargs` ->
    `list[float]`), for `GRPOTrainer(reward_funcs=[...])`, scoring through `POST /v1/score`.

    `url`: one rmscore API or several, tried in turn (failover); `batch_size`: completions per
    request (keep it at most the server's RMSCORE_SYNC_MAX_ITEMS, 64 by default). Safe to pickle and
    to call from several processes. A completion the server cannot score (an empty one, a NUL
    character) raises `rmscore.errors.InputError`: a silent 0 would train on a wrong reward.
    """
    urls = [url] if isinstance(url, str) else list(url)
    return RewardFunction(
        urls, api_key, model=model, timeout=timeout, retries=retries, batch_size=batch_size, name=name
    )
