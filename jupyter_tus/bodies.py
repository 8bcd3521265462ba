"""Request bodies read straight into a reused buffer, for tus PATCH and POST bodies.

tornado's HTTP/1 reader (``HTTP1Connection._read_fixed_body``) takes a body through
its stream's read buffer: every ``recv`` lands in a fresh ``bytearray`` (allocated and
zeroed per read), is appended to the stream's buffer, then sliced out as a new ``bytes``
for ``data_received``: three copies of every byte before the handler's own ``write``,
and a 512 KiB allocation per read. ``read_body_into`` replaces that reader for one
request: ``IOStream.read_into`` (tornado's public API) receives the body into a buffer
taken from a small pool (``recv_into``: one copy), and ``data_received`` gets a
``memoryview`` of it. Only bodies with a ``Content-Length`` are read this way (chunked
bodies keep tornado's reader, which parses the chunk framing); the limits, the 100
Continue, keep-alive and the answer stay tornado's.

The buffer is lent, not given: ``data_received`` must be done with the view when the
awaitable it returns resolves (or when it returns None), as the next read reuses it.
The handlers copy what they keep (a small creation's body) and write the rest before
they return or resolve.

This leans on two private names of ``tornado.http1connection`` (the method it replaces
on the connection object, and ``_ExceptionLoggingContext``); ``install`` checks they
are there and otherwise leaves tornado's reader in place (slower, same behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import threading
from typing import Any

from tornado import http1connection, iostream
from tornado.log import app_log

BUFFER_SIZE = 1024 * 1024  # bytes a body piece may have (one recv_into at most)
POOL_MAX = 8  # buffers (and pipes) kept for reuse; more are made (and dropped) under load
_YIELD = getattr(http1connection, "_YIELD_THRESHOLD", 256 * 1024)
# Splicing (Linux): bytes moved from the socket to a pipe and from the pipe to the file
# in the kernel. PIPE_SIZE: a pipe's capacity asked for (the default maximum a user may
# set, /proc/sys/fs/pipe-max-size); SPLICE_WAIT: the piece tornado reads (and the
# handler writes itself) while the socket is empty and the body may be spliced.
SPLICE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
PIPE_SIZE = 1024 * 1024
SPLICE_WAIT = 64 * 1024

_pool: list[bytearray] = []
_pipes: list[tuple[int, int]] = []
_pool_lock = threading.Lock()

SUPPORTED = hasattr(http1connection.HTTP1Connection, "_read_fixed_body") and hasattr(
    http1connection, "_ExceptionLoggingContext"
)


def take_buffer() -> bytearray:
    with _pool_lock:
        if _pool:
            return _pool.pop()
    return bytearray(BUFFER_SIZE)


def give_back(buf: bytearray) -> None:
    with _pool_lock:
        if len(_pool) < POOL_MAX:
            _pool.append(buf)


def take_pipe() -> tuple[int, int] | None:
    """An empty pipe (read end, write end) for ``os.splice``, of PIPE_SIZE if allowed;
    None where there is no splice."""
    with _pool_lock:
        if _pipes:
            return _pipes.pop()
    if not SPLICE:
        return None
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # else the default (64 KiB)
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def give_back_pipe(pipe: tuple[int, int], empty: bool) -> None:
    """Return a pipe to the pool if it is ``empty``; close it otherwise."""
    with _pool_lock:
        if empty and len(_pipes) < POOL_MAX:
            _pipes.append(pipe)
            return
    for fd in pipe:
        os.close(fd)


def install(connection: Any, headers: Any, handler: Any = None) -> bool:
    """Read this request's body with ``read_body_into`` if it can be: an
    ``HTTP1Connection`` without decompression, a body with ``Content-Length`` and no
    ``Transfer-Encoding``. Call it before tornado reads the body (``prepare``). Returns
    whether it did. The replacement is for this request only: it removes itself from
    the connection when tornado calls it. ``handler``, if given, may take bytes
    spliced from the socket straight into a file: ``body_sink()`` returns a writer
    with ``spliceable``, ``room()`` and ``splice_from(pipe, n)`` (or None), and
    ``body_spliced(pipe, n)`` writes them and says whether the pipe is empty again."""
    if (
        not SUPPORTED
        or not isinstance(connection, http1connection.HTTP1Connection)
        or getattr(connection.params, "decompress", False)
        or "Content-Length" not in headers
        or "Transfer-Encoding" in headers
        or not hasattr(connection.stream, "read_into")
    ):
        return False
    connection._read_fixed_body = functools.partial(read_body_into, connection, handler)
    return True


async def read_body_into(connection: Any, handler: Any, content_length: int, delegate: Any) -> None:
    """``HTTP1Connection._read_fixed_body`` over ``IOStream.read_into``: the body in
    pieces of at most ``BUFFER_SIZE`` bytes, each as much as the socket had, handed to
    ``delegate.data_received`` as a view of one pooled buffer; its awaitable (flow
    control) is awaited before the next read, as tornado does.

    When ``handler`` has a file to take them (``body_sink``), and tornado's own buffer
    is empty, the bytes the socket has are spliced (``os.splice``: socket -> pipe ->
    file, no copy through Python, nothing held in memory) instead; when the socket has
    nothing yet, tornado's read waits for it (a small piece, copied as above)."""
    connection.__dict__.pop("_read_fixed_body", None)  # this request only
    stream = connection.stream
    sock = None
    if SPLICE and handler is not None and type(stream) is iostream.IOStream:
        sock = stream.socket.fileno()
    pipe = None
    buf = take_buffer()
    view = memoryview(buf)
    work = 0
    try:
        while content_length > 0:
            writer = None
            if sock is not None and not connection._write_finished:
                writer = handler.body_sink()
            if writer is not None and not getattr(stream, "_read_buffer_size", 1):
                room = writer.room()
                want = min(PIPE_SIZE, content_length, PIPE_SIZE if room is None else room)
                if pipe is None:
                    pipe = take_pipe()
                n = None
                if want and pipe is not None:
                    try:
                        n = os.splice(sock, pipe[1], want, flags=SPLICE_FLAGS)
                    except OSError:  # nothing there now (EAGAIN), or an error tornado meets
                        n = None
                if n:
                    content_length -= n
                    if not handler.body_spliced(pipe[0], n):
                        give_back_pipe(pipe, empty=False)  # bytes left in it: never reused
                        pipe = None
                    work += n
                    if work >= _YIELD:
                        work = 0
                        await asyncio.sleep(0)
                    continue
            # tornado's read: what its buffer holds, or (waiting for the socket) what
            # comes next; a small piece when the rest may be spliced
            size = SPLICE_WAIT if writer is not None else BUFFER_SIZE
            n = await stream.read_into(view[: min(size, content_length)], partial=True)
            content_length -= n
            if not connection._write_finished:  # as tornado: not once answered early
                with http1connection._ExceptionLoggingContext(app_log):
                    ret = delegate.data_received(view[:n])
                    if ret is not None:
                        await ret
            work += n
            if work >= _YIELD:  # as tornado: let the loop serve others now and then
                work = 0
                await asyncio.sleep(0)
    finally:
        give_back(buf)
        if pipe is not None:
            give_back_pipe(pipe, empty=True)
