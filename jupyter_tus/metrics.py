"""Prometheus metrics of the tus endpoint, served on jupyter-server's ``{base_url}metrics``.

jupyter-server exposes prometheus_client's default registry there (its own metrics in
``jupyter_server/prometheus/metrics.py`` are made the same way), so the metrics below,
created at import, appear beside them. Every name starts with ``jupyter_tus_``;
counters get prometheus_client's ``_total`` suffix (and a ``_created`` sample). The
names, labels and help are listed in docs/operations.md.

Counters are updated where things happen (handlers: requests, bytes; the manager:
uploads, takeovers, landings, hooks). The two gauges are set by the manager from what
it knows of the uploads still under way (``UploadManager`` keeps them in step with
every creation, write, completion and removal, and recounts them from the staging
folder at start and after each sweep). All of it is thread-safe (prometheus_client
locks), so worker threads update them directly.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

METHODS = frozenset({"OPTIONS", "HEAD", "GET", "POST", "PATCH", "DELETE"})

REQUESTS = Counter(
    "jupyter_tus_requests",
    "Requests the tus routes answered, by method (after X-HTTP-Method-Override) and status.",
    ["method", "status"],
)
ERRORS = Counter(
    "jupyter_tus_errors",
    "Error answers (status >= 400) of the tus routes, by status and the name of the error"
    " (OffsetMismatch, UploadTooLarge, BodyTooLarge, QuotaExceeded, HookRefused, ...;"
    " HTTPError for jupyter-server's own refusals such as authentication).",
    ["status", "code"],
)
RECEIVED_BYTES = Counter(
    "jupyter_tus_received_bytes",
    "Body bytes written into uploads (PATCH and creation-with-upload); bodies of refused"
    " requests, read and discarded, are not counted.",
)
UPLOADS_CREATED = Counter("jupyter_tus_uploads_created", "Uploads created (POST).")
UPLOADS_FINISHED = Counter(
    "jupyter_tus_uploads_finished",
    "Uploads completed: every byte arrived and the file landed at its destination (or, for"
    " an upload without destination or a partial upload, stays complete in the store).",
)
UPLOADS_TERMINATED = Counter(
    "jupyter_tus_uploads_terminated", "Uploads removed at their client's request (DELETE)."
)
UPLOADS_EXPIRED = Counter(
    "jupyter_tus_uploads_expired", "Unfinished uploads removed by the sweep once expired."
)
UPLOADS_IN_PROGRESS = Gauge(
    "jupyter_tus_uploads_in_progress", "Unfinished uploads in the staging folder."
)
STAGED_BYTES = Gauge(
    "jupyter_tus_staged_bytes",
    "Bytes received so far by the unfinished uploads in the staging folder.",
)
LOCK_TAKEOVERS = Counter(
    "jupyter_tus_lock_takeovers",
    "Requests that asked the holder of an upload's lock to let go (a client resuming while"
    " its previous connection still held the upload).",
)
LANDING_FAILURES = Counter(
    "jupyter_tus_landing_failures",
    "Final moves of a finished upload to its destination that failed: kind 'retry' (may"
    " pass: full, read-only, busy; retried) or 'refused' (for good; the bytes are kept).",
    ["kind"],
)
HOOK_FAILURES = Counter(
    "jupyter_tus_hook_failures",
    "Hooks (c.TusApp.pre_create, post_finish, pre_terminate) that raised an unexpected"
    " error (a HookRefused refusal is not a failure).",
    ["hook"],
)


def request_answered(method: str, status: int, code: str | None) -> None:
    """Count one answer of the tus routes (``code``: the error's name, for errors)."""
    method = method if method in METHODS else "OTHER"
    REQUESTS.labels(method=method, status=str(status)).inc()
    if status >= 400:
        ERRORS.labels(status=str(status), code=code or "HTTPError").inc()
