"""A small async HTTP/1.1 client for the triggers' polls: keep-alive connections shared per event loop.

Why not httpx here: a triggerer polls thousands of tasks, and httpx's layers (httpcore's pool,
anyio, h11) cost about 1.7 ms of CPU per poll on our benchmark machine, three times what the
request itself needs (``benchmarks/triggerer_capacity.py``). This client does only what a poll
needs, on an :class:`asyncio.Protocol`:

* HTTP and HTTPS (verified against ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` when set, as the
  ``requests`` path does, else certifi's bundle), one request per connection at a time;
* at most ``max_connections`` requests in flight per pool; idle connections are kept and reused,
  and dropped as soon as the server closes them;
* answers framed by ``Content-Length``, chunked transfer coding, or the end of the connection;
  interim ``1xx`` answers are skipped; heads over 64 KiB or bodies over 8 MiB are refused.

Not handled, so the hook keeps httpx for them: proxies (see :func:`proxy_for`). Never used for
requests that must not be sent twice: a request that found its reused connection closed by the
server before any answer byte is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
#: an idle connection older than this is closed instead of reused (servers drop idle ones too)
IDLE_EXPIRY_SECONDS = 30.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpClientError(Exception):
    """No complete answer. ``connect``: the connection could not be opened; ``timeout``: time ran out."""

    def __init__(self, detail: str, *, connect: bool = False, timeout: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.connect = connect
        self.timeout = timeout


class _StaleConnection(HttpClientError):
    """A reused connection closed before any byte of the answer: safe to send once more."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    #: header names in lower case; repeated headers joined with ", "
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL goes: the connection key, and what the request line and ``Host`` header say."""

    scheme: str
    host: str
    port: int
    host_header: str
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise HttpClientError(f"cannot request {scheme or 'a relative'} URL (only http:// and https://)")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise HttpClientError("the URL's port is not a number") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, parts.hostname, port, parts.netloc.rpartition("@")[2], path)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, ...), or ``None``."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return None
    return proxy


def default_ssl_context() -> ssl.SSLContext:
    """Certificate checks as on the worker: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and os.path.isdir(bundle):
        context = ssl.create_default_context(capath=bundle)
    else:
        if not bundle:
            try:
                import certifi

                bundle = certifi.where()
            except ImportError:  # pragma: no cover - requests installs certifi
                bundle = None
        context = ssl.create_default_context(cafile=bundle)
    context.set_alpn_protocols(["http/1.1"])
    return context


# ---------------------------------------------------------------------------------------- answers


class _AnswerReader:
    """Reads one answer from the bytes of a connection, fed as they arrive."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.body_start = -1  # set once the head is read
        self.length = -1  # Content-Length framing
        self.chunked = False
        self.chunks = bytearray()
        self.chunk_pos = 0  # next unread chunk-size line, for chunked framing
        self.until_close = False

    def feed(self, data: bytes, *, eof: bool = False) -> HttpResponse | None:
        """The complete answer, or ``None`` while more bytes are needed; raises on a bad answer."""
        self.buffer += data
        if self.body_start < 0 and not self._read_head(eof):
            return None
        if self.length >= 0:
            end = self.body_start + self.length
            if len(self.buffer) < end:
                if eof:
                    raise HttpClientError("the connection closed in the middle of the answer")
                return None
            if len(self.buffer) > end:
                self.keep_alive = False  # bytes nobody asked for: do not trust this connection again
            return HttpResponse(self.status, self.headers, bytes(self.buffer[self.body_start : end]))
        if self.chunked:
            return self._read_chunks(eof)
        if len(self.buffer) - self.body_start > MAX_BODY_BYTES:
            raise HttpClientError(f"the answer is larger than {MAX_BODY_BYTES} bytes")
        if not eof:
            return None
        return HttpResponse(self.status, self.headers, bytes(self.buffer[self.body_start :]))

    def _read_head(self, eof: bool) -> bool:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise HttpClientError(f"the answer's head is larger than {MAX_HEAD_BYTES} bytes")
                if eof:
                    raise HttpClientError(
                        "the connection closed before the answer was complete"
                        if self.buffer
                        else "the connection closed without an answer"
                    )
                return False
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise HttpClientError("the answer is not HTTP/1.x")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, colon, value = line.partition(":")
                if not colon or not name.strip():
                    raise HttpClientError("the answer has a malformed header line")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            status = int(code)
            if status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
                del self.buffer[: end + 4]
                continue
            break
        self.status, self.headers, self.body_start = status, headers, end + 4
        tokens = {token.strip() for token in headers.get("connection", "").lower().split(",")}
        self.keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        coding = headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            self.length = 0
        elif coding:
            self.chunked = coding.rsplit(",", 1)[-1].strip() == "chunked"
            self.chunk_pos = self.body_start
        elif "content-length" in headers:
            text = headers["content-length"].split(",")[0].strip()
            if not text.isdigit():
                raise HttpClientError("the answer's Content-Length is not a number")
            self.length = int(text)
            if self.length > MAX_BODY_BYTES:
                raise HttpClientError(f"the answer is larger than {MAX_BODY_BYTES} bytes")
        if not self.chunked and self.length < 0:
            self.until_close = True
            self.keep_alive = False
        return True

    def _read_chunks(self, eof: bool) -> HttpResponse | None:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", self.chunk_pos)
            if line_end < 0:
                break
            size_text = bytes(buffer[self.chunk_pos : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpClientError("the answer's chunked body is malformed") from None
            if size == 0:
                trailers_end = buffer.find(b"\r\n\r\n", line_end)
                if trailers_end < 0:
                    break
                if len(buffer) > trailers_end + 4:
                    self.keep_alive = False
                return HttpResponse(self.status, self.headers, bytes(self.chunks))
            data_start = line_end + 2
            if len(buffer) < data_start + size + 2:
                break
            if buffer[data_start + size : data_start + size + 2] != b"\r\n":
                raise HttpClientError("the answer's chunked body is malformed")
            self.chunks += buffer[data_start : data_start + size]
            if len(self.chunks) > MAX_BODY_BYTES:
                raise HttpClientError(f"the answer is larger than {MAX_BODY_BYTES} bytes")
            self.chunk_pos = data_start + size + 2
        if eof:
            raise HttpClientError("the connection closed in the middle of the answer")
        return None


# ---------------------------------------------------------------------------------------- connections


class _Connection(asyncio.Protocol):
    """One connection; at most one request on it at a time."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._reader: _AnswerReader | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None

    # -- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter, reader = self._waiter, self._reader
        if waiter is None or reader is None or waiter.done():
            self.abort()  # bytes while idle: the connection is out of step
            return
        try:
            response = reader.feed(data)
        except HttpClientError as error:
            waiter.set_exception(error)
            self.abort()
            return
        if response is not None:
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self.closed = True
        self._finish_at_close()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish_at_close()

    def _finish_at_close(self) -> None:
        waiter, reader = self._waiter, self._reader
        if waiter is None or reader is None or waiter.done():
            return
        if not reader.buffer and self.reused:
            waiter.set_exception(_StaleConnection("the server closed the kept-alive connection"))
            return
        try:
            response = reader.feed(b"", eof=True)
        except HttpClientError as error:
            waiter.set_exception(error)
            return
        if response is not None:
            waiter.set_result(response)

    # -- use

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, deadline: float) -> tuple[HttpResponse, bool]:
        """Send ``request`` and read the answer; whether the connection can carry another request."""
        loop = asyncio.get_running_loop()
        reader = self._reader = _AnswerReader()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(deadline, self._expire, waiter)
        try:
            assert self.transport is not None
            self.transport.write(request)
            response = await waiter
        except BaseException:
            self.abort()  # cancelled or failed mid-request: the connection's state is unknown
            raise
        finally:
            timer.cancel()
            self._waiter = self._reader = None
        return response, reader.keep_alive and not self.closed

    def _expire(self, waiter: asyncio.Future[HttpResponse]) -> None:
        if not waiter.done():
            waiter.set_exception(HttpClientError("timed out waiting for the answer", timeout=True))
            self.abort()


class ConnectionPool:
    """Keep-alive connections for one event loop; at most ``max_connections`` requests in flight.

    Requests beyond the limit wait in FIFO order for a free slot; time spent waiting does not count
    against the request's timeout.
    """

    def __init__(self, max_connections: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl_context = ssl_context
        self._targets: dict[str, Target] = {}
        self.opened = 0  # connections opened so far (for tests and benchmarks)
        self.closed = False

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            found = parse_url(url)
            if len(self._targets) < 256:  # a hook asks for a handful of URLs
                self._targets[url] = found
        return found

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> HttpResponse:
        """POST ``body``; raises :class:`HttpClientError` when no complete answer arrives."""
        target = self.target(url)
        head = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            connection = self._take_idle(target.origin, loop.time())
            if connection is not None:
                try:
                    return await self._exchange(connection, request, deadline)
                except _StaleConnection:
                    pass  # the server had closed it just now: once more, on a new connection
            connection = await self._open(target, deadline)
            return await self._exchange(connection, request, deadline)

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> HttpResponse:
        response, reusable = await connection.exchange(request, deadline)
        if reusable and not self.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            connection.reused = True
            self._idle.setdefault(connection.origin, deque()).append(connection)
        else:
            connection.close()
        return response

    def _take_idle(self, origin: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used is the least likely to be dropped
            if not connection.closed and now - connection.idle_since < IDLE_EXPIRY_SECONDS:
                return connection
            connection.close()
        return None

    async def _open(self, target: Target, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if target.scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = default_ssl_context()
            context = self._ssl_context
        connection = _Connection(target.origin)
        opening = loop.create_connection(
            lambda: connection,
            target.host,
            target.port,
            ssl=context,
            server_hostname=target.host if context is not None else None,
        )
        try:
            await asyncio.wait_for(opening, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            connection.abort()
            raise HttpClientError("timed out connecting", connect=True, timeout=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise HttpClientError(f"TLS certificate check failed: {exc.verify_message}", connect=True) from None
        except (OSError, ssl.SSLError) as exc:
            detail = exc.strerror or type(exc).__name__
            raise HttpClientError(f"could not connect ({detail})", connect=True) from None
        self.opened += 1
        return connection

    def close(self) -> None:
        """Close every idle connection; requests in flight finish on theirs, which are then closed."""
        self.closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
