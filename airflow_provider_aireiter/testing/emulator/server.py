"""Threaded HTTP/1.1 server that tracks its keep-alive connections.

One daemon thread serves each connection, as in
:class:`http.server.ThreadingHTTPServer`; the server also remembers every
open connection so :meth:`EmulatorHTTPServer.close_connections` can wake and
join the threads of idle keep-alive clients when the emulator stops.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import FaultInjector
from .notify import CallbackSender
from .state import EmulatorState

log = logging.getLogger("airflow_provider_aireiter.testing.emulator")


@dataclass
class ServerContext:
    """Everything a request handler needs, shared by all connections."""

    state: EmulatorState
    faults: FaultInjector
    callbacks: CallbackSender
    api_key: str
    reset: Callable[[], None]
    stopping: threading.Event = field(default_factory=threading.Event)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """:class:`ThreadingHTTPServer` with a deep backlog and connection tracking.

    :param address: ``(host, port)`` to bind; port 0 picks a free port.
    :param handler: request handler class.
    :param context: shared :class:`ServerContext`.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ServerContext,
    ) -> None:
        self.context = context
        self._connections: dict[threading.Thread, socket.socket] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve ``request`` in a new daemon thread and remember it."""
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True)
        with self._connections_lock:
            self._connections[thread] = request
        try:
            thread.start()
        except RuntimeError:
            with self._connections_lock:
                self._connections.pop(thread, None)
            log.warning("cannot start a thread for a new connection; closing it")
            self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log connection errors quietly (clients vanish; faults reset sockets)."""
        log.debug("connection error from %s", client_address, exc_info=True)

    def open_connections(self) -> int:
        """Number of connections currently served."""
        with self._connections_lock:
            return len(self._connections)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut every open connection down and join the serving threads."""
        with self._connections_lock:
            items = list(self._connections.items())
        for _, sock in items:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in items:
            thread.join(max(0.0, deadline - time.monotonic()))
        still = self.open_connections()
        if still:
            log.warning("%d connection thread(s) did not stop in time", still)
