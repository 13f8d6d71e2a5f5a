"""`serve --workers N`: N uvicorn servers in spawned processes sharing one listening socket, balanced.

uvicorn's own workers each accept every connection waiting when the socket turns readable, so a burst of
keep-alive connections (a load balancer's pool, a benchmark's clients) often lands on one worker while the
others idle: one process, one GIL, for all of them. Here each worker accepts one connection at a time and a
busy worker waits a little before taking the next, so the least busy worker takes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import threading
from typing import Any

import uvicorn

log = logging.getLogger("rag_server.workers")

# How long a worker holding n open connections waits before it accepts another (n times this, at most
# MAX_DEFER_S): long enough for an idle worker to take it first, short against a connection's setup.
DEFER_PER_CONNECTION_S = 0.0005
MAX_DEFER_S = 0.005


class BalancedServer(uvicorn.Server):
    """A uvicorn server that accepts from a shared socket one connection at a time, later when busy.

    `ready` gets its pid once the application started; it accepts once `listening` is set."""

    def __init__(self, config: uvicorn.Config, ready: Any, listening: Any) -> None:
        super().__init__(config)
        self._ready = ready
        self._listening = listening
        self._listeners: list[socket.socket] = []
        # Connections accepted, not yet among the server state's.
        self._opening: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # The lifespan and the server state as uvicorn sets them up, with no listener of its own.
        await super().startup(sockets=[])
        self._ready.put(os.getpid())
        while not self._listening.is_set():
            if self.should_exit:
                return
            await asyncio.sleep(0.05)
        self._listeners = list(sockets or [])
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._listeners:
            loop.remove_reader(sock.fileno())
        await super().shutdown(sockets=sockets)

    def _accept(self, sock: socket.socket) -> None:
        busy = len(self.server_state.connections) + len(self._opening)
        if not busy:
            if not self._take(sock):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            return
        # Let the other workers try first: stop watching the socket for a moment.
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.call_later(min(busy * DEFER_PER_CONNECTION_S, MAX_DEFER_S), self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        if self.should_exit or sock.fileno() == -1:
            return
        if self._take(sock):
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def _take(self, sock: socket.socket) -> bool:
        """Accept one waiting connection, if another worker has not taken it; False when the socket should
        not be watched for a moment (out of file descriptors, say: try again shortly rather than spin)."""
        loop = asyncio.get_running_loop()
        try:
            connection, _ = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return True
        except OSError as error:
            log.warning("could not accept a connection: %s", error)
            loop.call_later(0.1, self._resume, sock)
            return False
        connection.setblocking(False)
        # Kept until the connection is among the server state's (its protocol holds the transport then).
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
        self._opening.add(task)
        task.add_done_callback(self._opened)
        return True

    def _opened(self, task: asyncio.Task[Any]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the client left as it connected, say
            log.debug("a connection could not be set up: %s", task.exception())

    def _protocol(self) -> asyncio.Protocol:
        config = self.config
        return config.http_protocol_class(  # type: ignore[call-arg,no-any-return]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )


def run_workers(config: uvicorn.Config) -> None:
    """Serve with `config.workers` processes until SIGINT or SIGTERM, which each worker gets to finish what
    is in flight. Connections are taken once every worker is ready (one ready first would hold them all, kept
    alive); a worker that dies later is started again, one that fails to start stops the server."""
    sock = config.bind_socket()
    context = multiprocessing.get_context("spawn")
    ready: Any = context.Queue()  # the pid of each worker whose application started
    listening = context.Event()
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())

    def start() -> Any:
        process = context.Process(target=_worker, args=(config, sock, ready, listening))
        process.start()
        return process

    processes = [start() for _ in range(config.workers)]
    started: set[int] = set()
    failed = False
    try:
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                started.add(ready.get(timeout=0.5))
            if not listening.is_set() and all(process.pid in started for process in processes):
                sock.listen(config.backlog)
                listening.set()
                log.info("%d workers ready: accepting connections", config.workers)
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.pid not in started:
                    log.error("worker %s failed to start (exit code %s)", process.pid, process.exitcode)
                    failed = True
                    stop.set()
                    break
                log.warning("worker %s exited with %s: starting another", process.pid, process.exitcode)
                processes[index] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker finishes its requests in flight
        for process in processes:
            process.join()
        sock.close()
    if failed:
        raise SystemExit(3)


def _worker(config: uvicorn.Config, sock: socket.socket, ready: Any, listening: Any) -> None:
    config.configure_logging()
    # Ctrl-C reaches every worker too: uvicorn finishes what is in flight, then raises the signal again.
    with contextlib.suppress(KeyboardInterrupt):
        BalancedServer(config, ready, listening).run(sockets=[sock])
