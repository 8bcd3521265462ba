"""Bytes on the wire: a TCP relay in front of a server that counts what clients send.

    with Relay(server.port) as relay:
        page.goto(f"http://127.0.0.1:{relay.port}/lab?token=...")
        ...
        assert relay.upstream <= 1.1 * size

What a browser or a client really sent, every byte of every connection, including requests
cut off half way (a body a tus client sent again after a drop counts twice): the measure
the "at most 1.1 x its size on the wire" and "only the rest plus one chunk" checks need.
The relay adds no HTTP of its own; Host and Origin stay those of the relay's address, so
jupyter-server's origin checks see one site. It can also hold a client's bytes or cut every
connection at a given count (the CLI's kill-and-resume tests).
"""

from __future__ import annotations

import collections
import contextlib
import socket
import threading

BLOCK = 1 << 20


class Relay:
    """A TCP relay 127.0.0.1:<port> -> 127.0.0.1:<target> that counts the bytes clients
    send, per epoch (``new_epoch()`` before each client run). ``hold_at(n)``: once the
    epoch has sent n bytes, the client's further bytes are held (not read) until
    ``release()``; ``cut_at(n)``: once the epoch has sent n bytes, every connection is
    cut (once)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.epoch = 0
        self.sent: collections.Counter[int] = collections.Counter()
        self.active: collections.Counter[int] = collections.Counter()
        self.connections = 0
        self._hold_at: int | None = None
        self._drop = False
        self.held = threading.Event()
        self._released = threading.Event()
        self._cut_at: int | None = None
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def new_epoch(self) -> int:
        with self.lock:
            self.epoch += 1
            return self.epoch

    def hold_at(self, n: int) -> None:
        self.held.clear()
        self._released.clear()
        self._hold_at = n

    def release(self, drop: bool = False) -> None:
        """Let the held bytes go on to the server, or (``drop``) cut the connections
        that were held instead, losing whatever the client had sent meanwhile."""
        self._drop = drop
        self._hold_at = None
        self._released.set()

    def cut_at(self, n: int) -> None:
        self._cut_at = n

    def __enter__(self) -> Relay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.release()
        self.listener.close()
        with self.lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server is down: refused, as without the relay
                down.close()
                continue
            with self.lock:
                epoch = self.epoch
                self.active[epoch] += 2
                self.connections += 1
                self._sockets += [down, up]
            threading.Thread(target=self._pump, args=(down, up, epoch, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, epoch, False), daemon=True).start()

    def _cut_all(self) -> None:
        with self.lock:
            self.cuts += 1
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _pump(self, src: socket.socket, dst: socket.socket, epoch: int, up: bool) -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        try:
            while True:
                size = BLOCK
                hold = self._hold_at
                if up and hold is not None:
                    size = min(size, hold - self.sent[epoch])
                    if size <= 0:
                        self.held.set()
                        self._released.wait()
                        if self._drop:
                            break
                        continue
                n = src.recv_into(view[:size])
                if not n:
                    break
                dst.sendall(view[:n])
                if up:
                    with self.lock:
                        self.sent[epoch] += n
                        cut = self._cut_at is not None and self.sent[epoch] >= self._cut_at
                        if cut:
                            self._cut_at = None
                    if cut:
                        self._cut_all()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self.lock:
                self.active[epoch] -= 1

    @property
    def upstream(self) -> int:
        """Bytes clients sent through the relay, every epoch."""
        with self.lock:
            return sum(self.sent.values())
