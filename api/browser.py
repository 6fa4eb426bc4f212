"""Keep web pages from driving an API that has no credentials to check (RMSCORE_AUTH=disabled).

With auth enabled every `/v1/*` call needs `Authorization: Bearer …`, which a browser never adds
to a request on its own, so a page cannot forge one (no CSRF) and DNS rebinding gains nothing.
With auth disabled the API trusts every caller that reaches it, and a browser on the same machine
reaches it. Two things stop a page there:

- **Host allow-list (DNS rebinding).** A page on evil.example whose name is re-pointed at 127.0.0.1
  is same-origin with the API as far as the browser knows, so it could read and write freely; but
  its requests say `Host: evil.example`. Only loopback names (any port) and RMSCORE_ALLOWED_HOSTS
  are answered; anything else gets 400 `invalid_host`.
- **Cross-site writes (CSRF).** A page can POST a form (multipart, urlencoded, text/plain) to any
  address without the browser asking first. A state-changing request is refused (403
  `cross_site_request`) when fetch metadata or `Origin` says it comes from another site (unless
  RMSCORE_CORS_ORIGINS lists that origin), and when its body is of a kind a plain form can send,
  it must be same-origin (or a listed CORS origin) or carry `X-Rmscore-Client` — a header no page can add cross-site
  without a preflight that CORS (off by default) refuses. JSON bodies already force that preflight.

A pure ASGI middleware (no body is read), so it runs before any route, upload streaming included.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from rmscore.http import CLIENT_HEADER

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Content types an HTML form (or a no-cors fetch) can send cross-site without a preflight.
SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""})
_CLIENT_HEADER = CLIENT_HEADER.lower()


def host_name(host: str) -> str:
    """`Host` header value without its port, brackets of an IPv6 literal removed, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class BrowserGuard:
    """Refuse requests a web page could have made to an API without auth (see the module doc)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = LOOPBACK_HOSTS | {host_name(h) for h in allowed_hosts}
        self.origins = frozenset(o.rstrip("/").lower() for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            # Not the name's owner speaking: a rebound DNS name, or a proxy nobody configured.
            why = "unknown Host; with RMSCORE_AUTH=disabled list extra names in RMSCORE_ALLOWED_HOSTS"
            await error_response(400, "invalid_host", why)(scope, receive, send)
            return
        if scope["method"] in UNSAFE_METHODS:
            refused = self._cross_site(headers, host)
            if refused:
                await error_response(403, "cross_site_request", refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _cross_site(self, headers: dict[str, str], host: str) -> str | None:
        """Why this state-changing request may come from another site's page; None when it cannot."""
        origin = headers.get("origin", "").rstrip("/").lower()
        same_origin = bool(origin) and urlsplit(origin).netloc == host.strip().lower()
        allowed_origin = same_origin or origin in self.origins
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site") and not allowed_origin:
            return "cross-site requests are refused while RMSCORE_AUTH=disabled"
        if origin and origin != "null" and not allowed_origin:
            return "requests from another origin are refused while RMSCORE_AUTH=disabled"
        if origin == "null":  # sandboxed frames, file:// pages, redirects: no origin to trust
            return "requests from an opaque origin are refused while RMSCORE_AUTH=disabled"
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        # An origin the operator listed in RMSCORE_CORS_ORIGINS is trusted like the API's own pages.
        if media in SIMPLE_TYPES and not (allowed_origin or site == "same-origin") and not headers.get(_CLIENT_HEADER):
            return (
                f"a {media or 'bodiless'} request needs the {CLIENT_HEADER} header while RMSCORE_AUTH=disabled "
                "(a web page cannot add it; rmscore's client sends it)"
            )
        return None
