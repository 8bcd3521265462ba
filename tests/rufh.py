"""A small client of the IETF draft "Resumable Uploads for HTTP" (interop version 8 by
default, 6 on request), for the tests: raw HTTP/1.1 over asyncio streams, framed by h11,
so a test sees interim 1xx answers, can stop a body half-way, or send one chunked.

    client = RufhClient(port, base_url, auth_headers)
    r = await client.create(data, filename="a.csv", complete=True)   # optimistic
    r = await client.upload(data, filename="a.csv", chunk=1000)      # careful, appends
    r = await client.head(r.location)

Every request opens its own connection (``Connection: close``), so a refusal answered
before the body never leaves a half-read connection behind.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from dataclasses import dataclass, field

import h11

READ = 65536
TIMEOUT = 30


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names lower-case
    body: bytes = b""
    interim: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    @property
    def location(self) -> str:
        return self.headers["location"]

    @property
    def offset(self) -> int:
        return int(self.headers["upload-offset"])

    @property
    def complete(self) -> bool | None:
        value = self.headers.get("upload-complete")
        return None if value is None else value == "?1"

    def problem(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/problem+json"), (
            self.status,
            self.headers,
            self.body,
        )
        return json.loads(self.body)


def _headers(items) -> dict[str, str]:
    return {name.decode().lower(): value.decode("latin-1") for name, value in items}


class Exchange:
    """One request on its own connection: send the head, then the body piece by piece
    (or stop and ``drop()`` the connection), then read the interim and final answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = h11.Connection(h11.CLIENT)
        self.interim: list[tuple[int, dict[str, str]]] = []
        self._final: h11.Response | None = None

    async def start(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        items = [("Host", f"127.0.0.1:{self.port}"), ("Connection", "close")]
        items += [(k, v) for k, v in headers.items() if v is not None]
        self.writer.write(self.conn.send(h11.Request(method=method, target=target, headers=items)))
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        if data:
            self.writer.write(self.conn.send(h11.Data(data=data)))
            await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(self.conn.send(h11.EndOfMessage()))
        await self.writer.drain()

    def drop(self) -> None:
        """Close the connection mid-request, as a network failure would."""
        self.writer.close()

    async def _event(self):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await asyncio.wait_for(self.reader.read(READ), TIMEOUT))

    async def next_interim(self) -> tuple[int, dict[str, str]]:
        """Wait for an interim (1xx) answer, before the body is sent."""
        event = await self._event()
        assert isinstance(event, h11.InformationalResponse), event
        item = (event.status_code, _headers(event.headers))
        self.interim.append(item)
        return item

    async def response(self) -> Response:
        body = b""
        while True:
            event = await self._event()
            if isinstance(event, h11.InformationalResponse):
                self.interim.append((event.status_code, _headers(event.headers)))
            elif isinstance(event, h11.Response):
                self._final = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        self.writer.close()
        assert self._final is not None
        return Response(self._final.status_code, _headers(self._final.headers), body, self.interim)


class RufhClient:
    """Requests of the draft against ``{base_url}api/tus/uploads`` on 127.0.0.1:port."""

    def __init__(
        self, port: int, base_url: str, headers: dict[str, str] | None = None, version: int = 8
    ) -> None:
        self.port = port
        self.endpoint = base_url.rstrip("/") + "/api/tus/uploads"
        self.headers = dict(headers or {})
        self.version = version

    def _merged(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = {"Upload-Draft-Interop-Version": str(self.version), **self.headers}
        merged.update(headers or {})
        return {k: v for k, v in merged.items() if v is not None}

    async def open(
        self, method: str, target: str, headers: dict[str, str] | None = None
    ) -> Exchange:
        exchange = Exchange(self.port)
        await exchange.start(method, target, self._merged(headers))
        return exchange

    async def request(
        self,
        method: str,
        target: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | list[bytes] = b"",
    ) -> Response:
        """``body`` as bytes goes with Content-Length (none for an empty body of a
        method that takes none); a list of pieces goes chunked."""
        headers = dict(headers or {})
        if isinstance(body, list):
            headers["Transfer-Encoding"] = "chunked"
        elif body or method in ("POST", "PATCH"):
            headers.setdefault("Content-Length", str(len(body)))
        exchange = await self.open(method, target or self.endpoint, headers)
        for piece in body if isinstance(body, list) else [body]:
            await exchange.send(piece)
        await exchange.end()
        return await exchange.response()

    # ---------------------------------------------------------------- the draft's steps

    @staticmethod
    def disposition(filename: str) -> str:
        quoted = urllib.parse.quote(filename)
        return f"inline; filename=\"{quoted}\"; filename*=UTF-8''{quoted}"

    def creation_target(self, query: dict[str, str] | None = None) -> str:
        return self.endpoint + ("?" + urllib.parse.urlencode(query) if query else "")

    async def create(
        self,
        body: bytes | list[bytes] = b"",
        *,
        complete: bool,
        filename: str | None = None,
        length: int | None = None,
        content_type: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Upload creation (draft "Upload Creation"): ``Upload-Complete``, the length when
        known, the name in ``Content-Disposition``, the type in ``Content-Type``."""
        h = {"Upload-Complete": "?1" if complete else "?0"}
        if length is not None:
            h["Upload-Length"] = str(length)
        if filename is not None:
            h["Content-Disposition"] = self.disposition(filename)
        if content_type is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        return await self.request("POST", self.creation_target(query), h, body)

    async def append(
        self,
        url: str,
        offset: int,
        body: bytes | list[bytes],
        *,
        complete: bool,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Upload append (draft "Upload Append")."""
        h = {
            "Content-Type": "application/partial-upload",
            "Upload-Offset": str(offset),
            "Upload-Complete": "?1" if complete else "?0",
            **(headers or {}),
        }
        return await self.request("PATCH", url, h, body)

    async def head(self, url: str, headers: dict[str, str] | None = None) -> Response:
        """Offset retrieval (draft "Offset Retrieval")."""
        return await self.request("HEAD", url, headers)

    async def cancel(self, url: str) -> Response:
        """Upload cancellation (draft "Upload Cancellation")."""
        return await self.request("DELETE", url)

    async def resume(self, url: str, data: bytes, chunk: int | None = None) -> Response:
        """Retrieve the offset, then append the rest of ``data`` from there in pieces of
        at most ``chunk`` bytes, the last with ``Upload-Complete: ?1``."""
        r = await self.head(url)
        assert r.status == 204, (r.status, r.body)
        offset = r.offset
        while True:
            end = len(data) if chunk is None else min(len(data), offset + chunk)
            last = end == len(data)
            r = await self.append(url, offset, data[offset:end], complete=last)
            if r.status != 204 or last:
                return r
            offset = r.offset

    async def upload(
        self, data: bytes, *, filename: str, chunk: int, query: dict[str, str] | None = None
    ) -> Response:
        """A careful upload: an empty creation with the length, then appends."""
        r = await self.create(complete=False, filename=filename, length=len(data), query=query)
        assert r.status == 201, (r.status, r.body)
        return await self.resume(r.location, data, chunk)
