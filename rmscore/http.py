"""HTTP conventions the API and its client share (no web framework here: the client imports it too)."""

from __future__ import annotations

# A header a web page cannot add to a cross-site request without a CORS preflight, which the API
# refuses unless the operator listed the page's origin. With RMSCORE_AUTH=disabled the API needs it
# on state-changing requests whose body a plain HTML form could send (multipart, urlencoded,
# text/plain, none); `rmscore.client` always sends it. Any non-empty value will do.
CLIENT_HEADER = "X-Rmscore-Client"
