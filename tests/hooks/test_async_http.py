"""The triggers' async HTTP client against real local servers: framing, keep-alive, limits, TLS, proxies."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_provider_aireiter.connection import ConnectionSettings
from airflow_provider_aireiter.exceptions import AireiterTransientError
from airflow_provider_aireiter.hooks.aireiter import AireiterHook, _loop_pool
from airflow_provider_aireiter.hooks.async_http import (
    MAX_HEAD_BYTES,
    ConnectionPool,
    HttpClientError,
    HttpResponse,
    default_ssl_context,
)
from airflow_provider_aireiter.retry import RetryPolicy
from tests.conftest import API_KEY, conn_json
from tests.raw_server import CLOSE, HANG, RawRequest, RawServer, Step, json_answer
from tests.scripted_server import ScriptedServer, ok

RUNNING = {"ok": True, "statusCode": 200, "message": "", "data": {"out_task_id": "t1", "status": "processing"}}


def echo(request: RawRequest) -> Sequence[Step]:
    return [json_answer(request.body)]


async def post(pool: ConnectionPool, url: str, body: bytes = b'{"n": 1}', timeout: float = 5.0) -> HttpResponse:
    return await pool.post(url, body, {"Authorization": "Bearer k", "Content-Type": "application/json"}, timeout)


def run_posts(url: str, bodies: list[bytes], *, max_connections: int = 32) -> list[HttpResponse]:
    async def main() -> list[HttpResponse]:
        pool = ConnectionPool(max_connections)
        try:
            return [await post(pool, url, body) for body in bodies]
        finally:
            pool.close()

    return asyncio.run(main())


# ------------------------------------------------------------------ requests and keep-alive


def test_sequential_requests_share_one_connection_and_are_sent_whole() -> None:
    with RawServer(echo) as server:
        bodies = [json.dumps({"n": i}).encode() for i in range(10)]
        answers = run_posts(server.base_url + "/api/openapi/query?x=1", bodies)
    assert [answer.body for answer in answers] == bodies
    assert {answer.status for answer in answers} == {200}
    assert answers[0].headers["content-type"] == "application/json"
    assert server.connections == 1
    first = server.requests[0]
    assert first.request_line == "POST /api/openapi/query?x=1 HTTP/1.1"
    assert first.header("Host") == f"127.0.0.1:{server.port}"
    assert first.header("Authorization") == "Bearer k"
    assert first.header("Content-Length") == str(len(bodies[0]))


def test_requests_in_flight_never_exceed_the_limit() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.03, json_answer(request.body)]

    async def main(url: str) -> list[HttpResponse]:
        pool = ConnectionPool(max_connections=3)
        try:
            return await asyncio.gather(*(post(pool, url, str(i).encode()) for i in range(30)))
        finally:
            pool.close()

    with RawServer(slow_echo) as server:
        answers = asyncio.run(main(server.base_url + "/q"))
    assert [answer.body for answer in answers] == [str(i).encode() for i in range(30)]
    assert server.max_in_flight <= 3
    assert server.connections == 3  # all three slots used, each connection kept and reused


def test_waiting_for_a_slot_does_not_count_against_the_timeout() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.2, json_answer(request.body)]

    async def main(url: str) -> list[HttpResponse]:
        pool = ConnectionPool(max_connections=1)
        try:  # the third request waits 0.4 s for its slot, then needs 0.2 s of its 0.3 s timeout
            return await asyncio.gather(*(post(pool, url, str(i).encode(), timeout=0.3) for i in range(3)))
        finally:
            pool.close()

    with RawServer(slow_echo) as server:
        answers = asyncio.run(main(server.base_url + "/q"))
    assert [answer.body for answer in answers] == [b"0", b"1", b"2"]


# ------------------------------------------------------------------ framing


def test_chunked_answer_arriving_byte_by_byte() -> None:
    payload = b'{"ok": true, "data": "chunked"}'
    chunks = b"5;ext=1\r\n" + payload[:5] + b"\r\n" + hex(len(payload) - 5)[2:].encode() + b"\r\n"
    chunks += payload[5:] + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"

    def dribble(request: RawRequest) -> Sequence[Step]:
        steps: list[Step] = [head]
        for byte in chunks:
            steps += [bytes([byte]), 0.0005]
        return steps

    with RawServer(dribble) as server:
        answers = run_posts(server.base_url + "/q", [b"a", b"b"])
    assert [answer.body for answer in answers] == [payload, payload]
    assert server.connections == 1  # a complete chunked answer leaves the connection usable


def test_answer_framed_by_the_end_of_the_connection() -> None:
    def until_close(request: RawRequest) -> Sequence[Step]:
        return [
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n",
            b'{"part": 1, ',
            0.01,
            b'"part2": 2}',
            CLOSE,
        ]

    with RawServer(until_close) as server:
        answers = run_posts(server.base_url + "/q", [b"a", b"b"])
    assert [json.loads(answer.body) for answer in answers] == [{"part": 1, "part2": 2}] * 2
    assert server.connections == 2  # no reuse after an answer that ends with the connection


@pytest.mark.parametrize(
    ("answer", "status", "connections"),
    [
        (json_answer(extra="Connection: close\r\n"), 200, 2),
        (json_answer(extra="Connection: keep-alive\r\n"), 200, 1),
        (json_answer().replace(b"HTTP/1.1", b"HTTP/1.0"), 200, 2),
        (json_answer(extra="Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"), 200, 1),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + json_answer(), 200, 1),
        (b"HTTP/1.1 204 No Content\r\n\r\n", 204, 1),
    ],
)
def test_connection_reuse_follows_the_answer(answer: bytes, status: int, connections: int) -> None:
    # The server leaves every connection open: only the client's reading of the answer decides.
    with RawServer(lambda request: [answer]) as server:
        answers = run_posts(server.base_url + "/q", [b"a", b"b"])
    assert [answer.status for answer in answers] == [status, status]
    assert server.connections == connections
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([b"hello there\r\n\r\n"], "not HTTP/1.x"),
        ([b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"], "malformed header"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"], "Content-Length is not a number"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", CLOSE], "closed in the middle"),
        ([b"HTTP/1.1 200 OK\r\nContent-Len", CLOSE], "closed before the answer was complete"),
        ([CLOSE], "closed without an answer"),
        ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "chunked body is malformed"),
        ([b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10)], "head is larger"),
        ([b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"], "larger than"),
    ],
)
def test_bad_answers_are_clear_errors(steps: list[Step], message: str) -> None:
    with RawServer(lambda request: steps) as server, pytest.raises(HttpClientError, match=message) as caught:
        run_posts(server.base_url + "/q", [b"a"])
    assert not caught.value.timeout
    assert len(server.requests) == 1  # a fresh connection that failed is not tried again


# ------------------------------------------------------------------ connections that end


def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    def answer_then_drop(request: RawRequest) -> Sequence[Step]:
        return [json_answer(request.body), 0.02, CLOSE]  # an idle timeout, as servers have

    async def main(url: str) -> list[bytes]:
        pool = ConnectionPool()
        first = await post(pool, url, b"1")
        await asyncio.sleep(0.3)
        second = await post(pool, url, b"2")
        pool.close()
        return [first.body, second.body]

    with RawServer(answer_then_drop) as server:
        assert asyncio.run(main(server.base_url + "/q")) == [b"1", b"2"]
    assert server.connections == 2
    assert [request.body for request in server.requests] == [b"1", b"2"]  # nothing sent into the closed one


def test_reused_connection_dropped_before_answering_is_sent_once_more() -> None:
    def drop_second(request: RawRequest) -> Sequence[Step]:
        if request.connection == 1 and request.body == b"2":
            return [CLOSE]  # the server closed its idle side just as the request arrived
        return [json_answer(request.body)]

    with RawServer(drop_second) as server:
        answers = run_posts(server.base_url + "/q", [b"1", b"2", b"3"])
    assert [answer.body for answer in answers] == [b"1", b"2", b"3"]
    assert [(r.connection, r.body) for r in server.requests] == [(1, b"1"), (1, b"2"), (2, b"2"), (2, b"3")]


def test_answer_that_never_comes_times_out_and_the_connection_is_dropped() -> None:
    def hang_first(request: RawRequest) -> Sequence[Step]:
        return [HANG] if request.body == b"1" else [json_answer(request.body)]

    async def main(url: str) -> tuple[float, HttpClientError, bytes]:
        pool = ConnectionPool()
        started = time.monotonic()
        with pytest.raises(HttpClientError) as caught:
            await post(pool, url, b"1", timeout=0.3)
        waited = time.monotonic() - started
        after = await post(pool, url, b"2")
        pool.close()
        return waited, caught.value, after.body

    with RawServer(hang_first) as server:
        waited, error, after = asyncio.run(main(server.base_url + "/q"))
    assert error.timeout and "timed out" in error.detail
    assert 0.25 <= waited < 3
    assert after == b"2" and server.connections == 2


def test_cancelled_request_does_not_leave_its_answer_for_the_next() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.3 if request.body == b"slow" else 0.0, json_answer(request.body)]

    async def main(url: str) -> bytes:
        pool = ConnectionPool(max_connections=1)
        slow = asyncio.create_task(post(pool, url, b"slow"))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        after = await post(pool, url, b"next")
        pool.close()
        return after.body

    with RawServer(slow_echo) as server:
        assert asyncio.run(main(server.base_url + "/q")) == b"next"
    assert server.connections == 2


def test_nothing_listening_is_a_connect_error() -> None:
    with RawServer(echo) as server:
        url = server.base_url + "/q"
    with pytest.raises(HttpClientError, match="could not connect") as caught:
        run_posts(url, [b"a"])
    assert caught.value.connect


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/q", "/relative", "http://127.0.0.1:port/q"])
def test_unusable_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(HttpClientError, match=r"only http|port"):
        run_posts(url, [b"a"])


# ------------------------------------------------------------------ TLS


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aireiter test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> tuple[RawServer, Path]:
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def running(request: RawRequest) -> Sequence[Step]:
        return [json_answer(json.dumps(RUNNING).encode())]

    return RawServer(running, ssl_context=context), cert_file


def test_https_is_verified_like_the_sync_path(
    tls_server: tuple[RawServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert_file = tls_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with server:
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(server.base_url, timeout=5))
        hook = AireiterHook(retry_policy=RetryPolicy(max_attempts=1))
        # Unknown CA: both paths refuse, with a clear reason and no traceback from the transport.
        with pytest.raises(AireiterTransientError, match="TLS certificate check failed") as refused:
            asyncio.run(hook.aquery(out_task_id="t1"))
        assert API_KEY not in str(refused.value)
        with pytest.raises(AireiterTransientError, match="TLS certificate check failed"):
            hook.query(out_task_id="t1")
        assert server.requests == []  # no request was sent over an unverified connection
        # The CA named the way requests reads it: both paths accept it.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
        hook = AireiterHook()
        assert asyncio.run(hook.aquery(out_task_id="t1")).status == "processing"
        assert hook.query(out_task_id="t1").status == "processing"
    assert len(server.requests) == 2
    assert server.requests[0].header("Authorization") == f"Bearer {API_KEY}"


def test_default_tls_context_checks_hostnames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    context = default_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 10  # certifi's bundle was loaded


# ------------------------------------------------------------------ through the hook


def test_hook_polls_on_kept_alive_connections(scripted: ScriptedServer) -> None:
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})

    async def main() -> tuple[list[str], int]:
        statuses = []
        for _ in range(5):  # several hooks (one per trigger) share the loop's connections
            hook = AireiterHook()
            statuses += [(await hook.aquery(out_task_id="t1")).status for _ in range(4)]
        return statuses, _loop_pool().http.opened

    statuses, opened = asyncio.run(main())
    assert statuses == ["processing"] * 20
    assert opened == 1 and len(scripted.received) == 20
    assert all(r.path == "/api/openapi/query" for r in scripted.received)
    assert scripted.received[0].headers["Content-Type"] == "application/json"
    assert scripted.received[0].json() == {"out_task_id": "t1"}


def test_hook_goes_through_the_proxy_the_environment_names(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scripted server plays the proxy: a proxied request names the whole URL in its request line.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted.base_url)
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://aireiter.invalid", timeout=5))
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})
    assert asyncio.run(AireiterHook().aquery(out_task_id="t1")).status == "processing"
    assert scripted.received[0].path == "http://aireiter.invalid/api/openapi/query"
    assert scripted.received[0].headers["Authorization"] == f"Bearer {API_KEY}"


def test_hooks_of_one_loop_share_one_connection_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://first.invalid"))

    async def main() -> tuple[list[ConnectionSettings], ConnectionSettings]:
        together = await asyncio.gather(*(AireiterHook().aget_settings() for _ in range(50)))
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://second.invalid"))
        later = await AireiterHook().aget_settings()
        return together, later

    together, later = asyncio.run(main())
    assert all(settings is together[0] for settings in together)  # fifty triggers starting together: one lookup
    assert later is together[0]  # reused within the loop ...
    assert asyncio.run(AireiterHook().aget_settings()).base_url == "http://second.invalid"  # ... not across loops


def test_connection_lookup_is_read_again_when_old_and_failures_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.exceptions import AirflowNotFoundException

    from airflow_provider_aireiter.hooks import aireiter

    monkeypatch.setattr(aireiter, "CONNECTION_REUSE_SECONDS", 0.1)
    monkeypatch.delenv("AIRFLOW_CONN_AIREITER_DEFAULT", raising=False)

    async def main() -> tuple[str, str]:
        with pytest.raises(AirflowNotFoundException):
            await AireiterHook().aget_settings()
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://first.invalid"))
        first = (await AireiterHook().aget_settings()).base_url  # the failure was not remembered
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://second.invalid"))
        await asyncio.sleep(0.2)
        return first, (await AireiterHook().aget_settings()).base_url

    assert asyncio.run(main()) == ("http://first.invalid", "http://second.invalid")
