"""Bytes on the wire: a TCP relay in front of a server that counts what each side sent.

    with WireCounter(server.port) as wire:
        page.goto(f"http://127.0.0.1:{wire.port}/lab?token=...")
        ...
        assert wire.upstream <= 1.1 * size

What a browser or a client really sent, every byte of every connection, including requests
cut off half way (a body a tus client sent again after a drop counts twice): the measure the
"at most 1.1 x its size on the wire" checks need. The relay adds no HTTP of its own; Host and
Origin stay those of the relay's address, so jupyter-server's origin checks see one site.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BLOCK = 1 << 20


class WireCounter:
    """Relays 127.0.0.1:<port> to 127.0.0.1:<target>; ``upstream`` is the number of bytes
    clients sent through it (requests), ``downstream`` the bytes the server sent back."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.upstream = 0
        self.downstream = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> WireCounter:
        threading.Thread(target=self._accept, name="wire-accept", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        try:
            while True:
                n = src.recv_into(buf)
                if not n:
                    break
                dst.sendall(view[:n])
                with self._lock:
                    if up:
                        self.upstream += n
                    else:
                        self.downstream += n
        except OSError:
            pass
        finally:
            # One side ended: end the other (both directions), as a proxy would.
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
