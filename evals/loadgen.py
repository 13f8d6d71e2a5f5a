"""The load generator of `rag-server bench api`: keep-alive HTTP/1.1 connections on asyncio streams.

A general client (httpx) spends about as long building and parsing each request as the server spends on a
`/healthz` (measured: 2.9 ms against 1.5 ms a request at one client), so a bench driven by it measured the client
too. This one sends prepared bytes and reads a response by its `content-length` (or chunks): what remains
is the server and loopback. It speaks only what the bench needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def post_request(host: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    """The bytes of `POST path` with `body` as JSON: built once, sent as many times as needed."""
    payload = json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", f"content-length: {len(payload)}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "content-length"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reopened = 0
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http to a host: {base_url!r}")
        conn = cls(parts.hostname, parts.port or 80)
        conn._streams = await asyncio.open_connection(conn.host, conn.port)
        return conn

    async def send(self, request: bytes) -> Reply:
        """Send a prepared request and read its whole response. A kept-alive connection the server closed
        while it was idle (uvicorn does after 5 s) is opened again and the request sent on the new one."""
        assert self._streams is not None  # opened by `open`
        reader, writer = self._streams
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as error:
            if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                raise ConnectionError("the server closed the connection mid-response") from None
            writer.close()
            self._streams = reader, writer = await asyncio.open_connection(self.host, self.port)
            self.reopened += 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        return await self._rest(reader, head)

    async def _rest(self, reader: asyncio.StreamReader, head: bytes) -> Reply:
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunked(reader)
        else:
            raise ValueError(f"a response without a length (status {status}): the bench needs keep-alive")
        if headers.get("connection", "").lower() == "close":
            raise ConnectionError(f"the server closed the connection after a {status}")
        return Reply(status, body)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(parts)
