"""Cross-origin use of the tus routes, on jupyter-server's own CORS settings.

jupyter-server lets a page of another origin use its API when ``ServerApp.allow_origin``
(that origin, or ``*``), ``ServerApp.allow_origin_pat``, or an
``Access-Control-Allow-Origin`` in ``ServerApp.tornado_settings["headers"]`` lets that
origin in. The tus routes follow the same settings, and add what a tus client needs:

- The browser's preflight (an OPTIONS with ``Origin`` and ``Access-Control-Request-Method``;
  it never carries credentials) is answered without authentication, allowing every tus
  method and request header, but only for an allowed origin. From any other origin it
  is an ordinary OPTIONS: authenticated, hence 403, without any CORS header.
- Every answer to an allowed origin, errors included, carries jupyter-server's own
  ``Access-Control-Allow-Origin`` (and ``-Allow-Credentials``) and exposes the tus
  response headers to the page. They are default headers, so ``send_error``, which
  clears the headers set before it, sets them again.
"""

from __future__ import annotations

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import origin_matches_pat

# What tus clients send (tus-js-client, tuspy, the JupyterLab front end), what clients
# of the IETF resumable-upload draft send (ietf.py), and jupyter-server's own list
# (accept, content-type, authorization, x-xsrftoken).
REQUEST_HEADERS = (
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Offset",
    "Upload-Concat",
    "Upload-Checksum",
    "X-HTTP-Method-Override",
    "Upload-Draft-Interop-Version",
    "Upload-Complete",
    "Content-Disposition",
    "Content-Type",
    "Authorization",
    "X-XSRFToken",
    "X-Requested-With",
    "Accept",
)
METHODS = ("POST", "GET", "HEAD", "PATCH", "DELETE", "OPTIONS")
# What a page's script may read of an answer (beyond the CORS-safelisted ones).
RESPONSE_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Concat",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Jupyter-Tus-Path",
    "Upload-Limit",
    "Jupyter-Tus-Max-Chunk-Size",
    "Upload-Draft-Interop-Version",
    "Upload-Complete",
)
# A browser may reuse a preflight's answer this long (seconds; Chromium caps it at
# 7200): one preflight per upload URL instead of one before every PATCH.
PREFLIGHT_MAX_AGE = 600


def origin_allowed(handler: JupyterHandler) -> bool:
    """Whether jupyter-server's settings let this request's ``Origin`` in.

    The rule of ``JupyterHandler.check_origin``, whose settings and pattern matching
    this reuses; that method itself cannot be asked, as it waves every OPTIONS through.
    """
    origin = handler.get_origin()
    if not origin:
        return False
    configured = handler.settings.get("headers", {}).get("Access-Control-Allow-Origin")
    if configured in ("*", origin):
        return True
    if handler.allow_origin:
        return handler.allow_origin in ("*", origin)
    return bool(handler.allow_origin_pat) and origin_matches_pat(handler.allow_origin_pat, origin)


def is_allowed_preflight(handler: JupyterHandler) -> bool:
    """A CORS preflight (not a tus discovery OPTIONS) from an allowed origin."""
    request = handler.request
    return (
        request.method == "OPTIONS"
        and "Access-Control-Request-Method" in request.headers
        and origin_allowed(handler)
    )


def set_default_headers(handler: JupyterHandler) -> None:
    """The CORS headers of every answer to an allowed origin, errors included."""
    if not origin_allowed(handler):
        return
    if handler.allow_origin or handler.allow_origin_pat:
        handler.set_cors_headers()  # jupyter-server's own, as set in its prepare
    elif handler.allow_credentials:
        # The origin comes from tornado_settings["headers"], already among the default
        # headers; set_cors_headers would need the user, unknown before prepare.
        handler.set_header("Access-Control-Allow-Credentials", "true")
    handler.set_header("Access-Control-Expose-Headers", ", ".join(RESPONSE_HEADERS))


def answer_preflight(handler: JupyterHandler) -> None:
    """204 with the methods and request headers a tus client uses (plus any
    ``Access-Control-Allow-Headers`` configured in ``tornado_settings["headers"]``)."""
    configured = handler.settings.get("headers", {}).get("Access-Control-Allow-Headers", "")
    allowed = list(REQUEST_HEADERS)
    known = {name.lower() for name in allowed}
    for name in (n.strip() for n in configured.split(",")):
        if name and name.lower() not in known:
            allowed.append(name)
            known.add(name.lower())
    handler.set_header("Access-Control-Allow-Headers", ", ".join(allowed))
    handler.set_header("Access-Control-Allow-Methods", ", ".join(METHODS))
    handler.set_header("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE))
    handler.set_status(204)
    handler.finish()
