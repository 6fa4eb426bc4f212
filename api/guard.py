"""Checks that run before a route sees its request: who is calling, then how big its body is.

FastAPI reads and parses a JSON body before it solves a route's dependencies, so with the API key
checked in a dependency, anyone could make the API parse 60 MB of JSON without a key. This pure
ASGI middleware runs first, on every `/v1/*` request and on the trainer paths (`also`):

1. it authenticates from the headers alone (the key's slow hash in a thread); a missing or wrong
   key answers 401 before a byte of the body is read;
2. for JSON bodies, it reads the body itself, refusing it past `max_json_body_bytes` (by
   Content-Length at once, else as the bytes arrive) or when no byte comes for
   `upload_read_timeout` seconds, and refuses a body whose structure would parse into more
   objects than the API can hold (`[{},{},…]` parses to ~25 times its size);
3. then hands the route the caller (`scope["state"]["caller"]`, read by `api.deps.get_caller`)
   and the body, replayed.

The upload route streams its own body (its limits are in `api.upload`), so only step 1 applies.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import authenticate, known_caller
from rmscore.errors import BadRequest, ReadTimeout, TooLarge

if TYPE_CHECKING:
    from api.state import ApiState

# Keys are checked on two threads of their own. A key not in the cache costs a scrypt with 16 MiB
# of memory (db/api_keys.py), and glibc keeps that memory in the arena of the thread that ran it: on
# the shared thread pool, 40 threads and 640 MB for a burst of wrong keys; here, 32 MB at most.
_KEY_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rmscore-key-check")

# A parsed JSON body may take this many times the body limit in Python objects, as estimated (a
# chat body is estimated at ~4x its size, `[{},{},…]` at 80x): with the 8 MiB default, 32 MiB. With
# the body's own copies, a request then costs < 60 MB, and the API (~210 MB once pyarrow is loaded)
# stays under 300 MB.
PARSED_BUDGET_FACTOR = 4


def parsed_size_estimate(body: bytes) -> int:
    """An upper estimate, in bytes, of what `json.loads(body)` allocates, from a count of its tokens.

    Fitted with tracemalloc on the densest shapes (empty objects and arrays, one-key objects, short
    strings, small numbers): it over-counts each by 1-4x and real chat bodies by ~1.3x.
    """
    return (
        2 * len(body) + 200 * body.count(b"{") + 72 * body.count(b"[") + 40 * body.count(b",") + 30 * body.count(b'"')
    )


class RequestGuard:
    """Authenticate, then bound the body (see the module docstring). Add it as the innermost middleware."""

    def __init__(
        self,
        app: ASGIApp,
        state: ApiState,
        streamed: tuple[str, ...],
        also: tuple[str, ...] = (),
        basic: tuple[str, ...] = (),
    ) -> None:
        self.app, self.state, self.streamed, self.also, self.basic = app, state, streamed, also, basic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"].startswith("/v1/") or scope["path"] in self.also):
            await self.app(scope, receive, send)
            return
        try:
            scope.setdefault("state", {})["caller"] = await self._authenticate(scope)
            if scope["path"] not in self.streamed and scope["method"] in ("POST", "PUT", "PATCH"):
                receive = _replay(await self._read_body(scope, receive), receive)
        except Exception as exc:  # noqa: BLE001 - every refusal becomes the one error shape
            await self._refuse(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> object:
        s = self.state
        header = Headers(scope=scope).get("authorization")
        enabled = s.settings.auth == "enabled"
        basic = scope["path"] in self.basic  # HTTP Basic on the trainer faces only (api.auth.bearer_token)
        caller = known_caller(s.key_cache, header, enabled=enabled, basic=basic)
        if caller is not None:  # the common case, without a thread: a wrong-key flood cannot delay it
            return caller
        return await asyncio.get_running_loop().run_in_executor(
            _KEY_CHECKS, lambda: authenticate(s.db, s.key_cache, header, enabled=enabled, basic=basic)
        )

    async def _read_body(self, scope: Scope, receive: Receive) -> list[bytes]:
        limit = self.state.config.max_json_body_bytes
        too_large = TooLarge(f"request body over the {limit:,}-byte limit", code="body_too_large")
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise too_large
        parts: list[bytes] = []
        seen = estimate = 0
        more = True
        while more:
            message = await read_message(receive, self.state.settings.upload_read_timeout)
            if message["type"] == "http.disconnect":
                raise BadRequest("the client went away while sending the body", code="upload_incomplete")
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                raise too_large
            estimate += parsed_size_estimate(chunk)  # single-byte tokens: chunk boundaries split none
            parts.append(chunk)
            more = message.get("more_body", False)
        budget = PARSED_BUDGET_FACTOR * limit
        if estimate > budget:
            raise TooLarge(
                f"this body would parse into more than {budget:,} bytes of objects (it is dense in "
                "tiny values); send fewer items per request, or upload the items as a JSONL file",
                code="body_too_complex",
            )
        return parts

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        from api.errors import respond

        # Answered at once, the body left unread: the server closes the connection after the answer,
        # and HTTP clients (curl, httpx) read an early answer even while still sending.
        response = await respond(Request(scope), exc)
        await response(scope, receive, send)


async def read_message(receive: Receive, timeout: float) -> Message:
    """The next ASGI message, or ReadTimeout when the client sends nothing for `timeout` seconds."""
    with anyio.move_on_after(timeout):
        return await receive()
    raise ReadTimeout(f"no byte of the body came for {timeout:g} seconds", code="read_timeout")


def _replay(parts: list[bytes], receive: Receive) -> Receive:
    """The body's messages again, as they came (not joined: one copy of the body, not two), then the
    client's own messages (a disconnect)."""
    parts.reverse()

    async def replay() -> Message:
        if parts:
            chunk = parts.pop()
            return {"type": "http.request", "body": chunk, "more_body": bool(parts)}
        return await receive()

    return replay
