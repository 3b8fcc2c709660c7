"""The triggers' HTTP: one aiohttp ``ClientSession`` per event loop (a triggerer runs all its triggers in one).

* At most :data:`MAX_IN_FLIGHT` requests at once, and as many kept-alive connections. Requests beyond
  that wait for a slot *before* aiohttp sees them: a waiting request holds no connection and no
  buffer, and the time it waits does not count against its timeout.
* Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``, ...), as ``requests`` reads them, looked
  up once per origin and event loop. Not aiohttp's ``trust_env``: it looks the proxy and ``.netrc`` up
  again on every request, each in a thread of the default executor, which at thousands of polls a
  second cost more CPU than the rest of the request.
* Certificates are checked as on the worker: against ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` when
  set, else certifi's bundle.
* Answers are read up to :data:`MAX_ANSWER_BYTES` (after decompression), chunked or not; a larger
  one is refused, never buffered.

aiohttp is imported here only, and this module only by the hook's async methods: a DAG file never
pays for it. Transport failures become provider errors in :mod:`.transport_errors`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from airflow_provider_aireiter.hooks.transport_errors import TOO_LARGE, TransportFailure, from_aiohttp

#: requests in flight at once per event loop (and connections kept to the service)
MAX_IN_FLIGHT = 32
#: the largest answer read from the API (its answers are a few KiB)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: how long the hooks of one event loop reuse a connection lookup
CONNECTION_REUSE_SECONDS = 60.0


class TransportError(Exception):
    """A request that got no usable answer; :attr:`failure` says what happened."""

    def __init__(self, failure: TransportFailure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, ...), or ``None``."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy or urllib.request.proxy_bypass(parts.netloc.rpartition("@")[2]):
        return None
    return proxy


def default_ssl_context() -> ssl.SSLContext:
    """Certificate checks as on the worker: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi.

    One context per bundle path and process (building one reads the whole bundle: about 20 ms of CPU),
    shared by the sessions of every event loop, as aiohttp shares its own default context.
    """
    return _ssl_context(os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None)


@functools.lru_cache(maxsize=8)
def _ssl_context(bundle: str | None) -> ssl.SSLContext:
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    if not bundle:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)


class LoopTransport:
    """What the triggers of one event loop share: the session, the slots and the connection lookups."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.max_in_flight = max_in_flight
        self.slots = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None
        self._settings: dict[str, tuple[float, asyncio.Future[Any]]] = {}
        self._proxies: dict[str, str | None] = {}
        self.closer: AsyncIterator[None] | None = None
        self.closer_started: asyncio.Future[None] | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, ssl=default_ssl_context())
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def proxy(self, url: str) -> str | None:
        """The environment's proxy for ``url``'s origin, read once per origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = proxy_for(url)
        return self._proxies[origin]

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        """POST ``body``; the answer, or :class:`TransportError`."""
        async with self.slots:
            limits = _timeouts(timeout)
            try:
                proxy = self.proxy(url)
                request = self.session().post(url, data=body, headers=headers, timeout=limits, proxy=proxy)
                async with request as response:
                    data = await _read_limited(response, MAX_ANSWER_BYTES)
                    return Answer(response.status, response.headers, data)
            except TransportError:
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
                raise TransportError(from_aiohttp(exc, connecting=connecting)) from None

    async def connection_settings(self, conn_id: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """``conn_id``'s settings: one ``fetch`` for every caller until the lookup is old; failures are not kept."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry = self._settings.get(conn_id)
        if entry is None or now - entry[0] >= CONNECTION_REUSE_SECONDS:
            lookup = asyncio.ensure_future(fetch())
            lookup.add_done_callback(_retrieve)  # a failure nobody waits for any more is not logged as lost
            entry = self._settings[conn_id] = (now, lookup)
        try:
            # shield: one caller cancelled (its trigger killed) does not cancel the others' lookup
            return await asyncio.shield(entry[1])
        except Exception:
            if self._settings.get(conn_id) is entry:
                del self._settings[conn_id]
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@functools.lru_cache(maxsize=16)
def _timeouts(seconds: float) -> aiohttp.ClientTimeout:
    """A request's limits; ``sock_connect`` tells a timeout while connecting apart (nothing was sent then)."""
    return aiohttp.ClientTimeout(total=seconds, sock_connect=seconds)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise TransportError(TransportFailure(TOO_LARGE))
    if declared is not None and not response.headers.get("Content-Encoding"):
        return await response.read()  # the usual answer: a declared size, within the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TransportError(TransportFailure(TOO_LARGE))
        chunks.append(chunk)
    return b"".join(chunks)


_TRANSPORTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopTransport] = weakref.WeakKeyDictionary()


#: the last loop asked for and its transport: a triggerer has one loop, and a weak-dictionary lookup on
#: every request (a new weakref each time) was a measurable part of a poll's CPU
_last: tuple[weakref.ReferenceType[asyncio.AbstractEventLoop], LoopTransport] | None = None


def loop_transport() -> LoopTransport:
    """The running event loop's transport (created on first use, closed when the loop shuts down)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    transport = _TRANSPORTS.get(loop)
    if transport is None:
        transport = _TRANSPORTS[loop] = LoopTransport()
        # An async generator the loop finalizes in shutdown_asyncgens() (asyncio.run does): it closes
        # the session while the loop still runs, so no "Unclosed client session" is left behind.
        transport.closer = _close_at_shutdown(transport)
        transport.closer_started = asyncio.ensure_future(transport.closer.__anext__())
    _last = (weakref.ref(loop), transport)
    return transport


async def _close_at_shutdown(transport: LoopTransport) -> AsyncIterator[None]:
    try:
        yield  # never resumed: closed by the loop's shutdown_asyncgens()
    finally:
        await transport.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
