"""The bench's load generator against a raw loopback server: lengths, chunks, keep-alive and its refusals."""

from __future__ import annotations

import asyncio

import pytest

from evals.loadgen import Connection, post_request

REPLIES = [
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"cache": 1}',
    b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
]


async def exchange() -> tuple[list[bytes], list[object]]:
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in REPLIES:  # one connection, kept alive across the three
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            received.append(head + await reader.readexactly(length))
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await Connection.open(f"http://127.0.0.1:{port}")
    request = post_request(f"127.0.0.1:{port}", "/v1/ask", {"question": "q"}, {"authorization": "Bearer k"})
    results: list[object] = [await conn.send(request), await conn.send(request)]
    with pytest.raises(ConnectionError, match="after a 500"):
        await conn.send(request)
    await conn.close()
    server.close()
    return received, results


def test_load_generator_reads_lengths_and_chunks_on_one_connection() -> None:
    received, (first, second) = asyncio.run(exchange())
    assert received[0].startswith(b"POST /v1/ask HTTP/1.1\r\n") and received[0].endswith(b'{"question": "q"}')
    assert b"authorization: Bearer k\r\n" in received[0] and len(received) == 3
    assert first.status == 200 and first.json() == {"cache": 1}  # type: ignore[attr-defined]
    assert second.status == 201 and second.body == b"abcde"  # type: ignore[attr-defined]


def test_load_generator_speaks_plain_http_only() -> None:
    with pytest.raises(ValueError, match="plain http"):
        asyncio.run(Connection.open("https://example.com"))


async def reopened_exchange() -> tuple[int, list[int], int]:
    """A server that closes each connection after one reply, as uvicorn closes an idle kept-alive one."""
    opened = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal opened
        opened += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(REPLIES[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = await Connection.open(f"http://127.0.0.1:{port}")
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    statuses = [(await conn.send(request)).status for _ in range(3)]
    await conn.close()
    server.close()
    return opened, statuses, conn.reopened


def test_load_generator_opens_a_connection_the_server_closed_while_idle_again() -> None:
    opened, statuses, reopened = asyncio.run(reopened_exchange())
    assert statuses == [200, 200, 200] and opened == 3 and reopened == 2
