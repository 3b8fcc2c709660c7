"""The triggers' HTTP (aiohttp, one session per event loop) against real local servers.

Keep-alive, the in-flight limit and its outer queue, timeouts, cancellation, answer size limits,
TLS checked as on the worker, proxies from the environment, and what the connection settings refuse
before any request.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import ipaddress
import json
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError, AireiterTransientError
from airflow_provider_aireiter.hooks.aireiter import AireiterHook, ConnectionSettings
from airflow_provider_aireiter.hooks.transport import (
    MAX_ANSWER_BYTES,
    Answer,
    LoopTransport,
    TransportError,
    default_ssl_context,
)
from airflow_provider_aireiter.retry import AireiterRetryPolicy
from tests.conftest import API_KEY, conn_json
from tests.raw_server import HANG, RawRequest, RawServer, Step, json_answer
from tests.scripted_server import ScriptedServer, ok

RUNNING = {"ok": True, "statusCode": 200, "message": "", "data": {"out_task_id": "t1", "status": "processing"}}
HEADERS = {"Authorization": "Bearer k", "Content-Type": "application/json"}


def echo(request: RawRequest) -> Sequence[Step]:
    return [json_answer(request.body)]


async def post(transport: LoopTransport, url: str, body: bytes = b'{"n": 1}', timeout: float = 5.0) -> Answer:
    return await transport.post(url, body, HEADERS, timeout)


# ------------------------------------------------------------------ requests and keep-alive


def test_sequential_requests_share_one_connection() -> None:
    async def main(url: str) -> list[Answer]:
        transport = LoopTransport()
        try:
            return [await post(transport, url, json.dumps({"n": i}).encode()) for i in range(10)]
        finally:
            await transport.close()

    with RawServer(echo) as server:
        answers = asyncio.run(main(server.base_url + "/api/openapi/query"))
    assert [a.body for a in answers] == [json.dumps({"n": i}).encode() for i in range(10)]
    assert server.connections == 1
    assert server.requests[0].request_line == "POST /api/openapi/query HTTP/1.1"
    assert server.requests[0].header("Authorization") == "Bearer k"


def test_requests_in_flight_never_exceed_the_limit() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.03, json_answer(request.body)]

    async def main(url: str) -> list[Answer]:
        transport = LoopTransport(max_in_flight=3)
        try:
            return await asyncio.gather(*(post(transport, url, str(i).encode()) for i in range(30)))
        finally:
            await transport.close()

    with RawServer(slow_echo) as server:
        answers = asyncio.run(main(server.base_url + "/q"))
    assert [a.body for a in answers] == [str(i).encode() for i in range(30)]
    assert server.max_in_flight <= 3
    assert server.connections <= 3


def test_waiting_for_a_slot_does_not_count_against_the_timeout() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.5, json_answer(request.body)]

    async def main(url: str) -> list[Answer]:
        transport = LoopTransport(max_in_flight=1)
        try:  # the third request waits about 1 s for its slot, then needs 0.5 s of its 2 s timeout
            return await asyncio.gather(*(post(transport, url, str(i).encode(), timeout=2.0) for i in range(3)))
        finally:
            await transport.close()

    with RawServer(slow_echo) as server:
        answers = asyncio.run(main(server.base_url + "/q"))
    assert [a.body for a in answers] == [b"0", b"1", b"2"]


def test_an_answer_that_never_comes_times_out_and_the_next_request_works() -> None:
    def hang_first(request: RawRequest) -> Sequence[Step]:
        return [HANG] if request.body == b"1" else [json_answer(request.body)]

    async def main(url: str) -> tuple[TransportError, bytes]:
        transport = LoopTransport()
        with pytest.raises(TransportError) as caught:
            await post(transport, url, b"1", timeout=0.5)
        after = await post(transport, url, b"2")
        await transport.close()
        return caught.value, after.body

    with RawServer(hang_first) as server:
        error, after = asyncio.run(main(server.base_url + "/q"))
    assert error.failure.detail == "timed out waiting for the answer" and error.failure.sent
    assert after == b"2"


def test_a_cancelled_request_does_not_leave_its_answer_for_the_next() -> None:
    def slow_echo(request: RawRequest) -> Sequence[Step]:
        return [0.5 if request.body == b"slow" else 0.0, json_answer(request.body)]

    async def main(url: str) -> bytes:
        transport = LoopTransport(max_in_flight=1)
        slow = asyncio.create_task(post(transport, url, b"slow"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        after = await post(transport, url, b"next")
        await transport.close()
        return after.body

    with RawServer(slow_echo) as server:
        assert asyncio.run(main(server.base_url + "/q")) == b"next"


def test_nothing_listening_is_could_not_connect_and_nothing_was_sent() -> None:
    with RawServer(echo) as server:
        url = server.base_url + "/q"

    async def main() -> TransportError:
        transport = LoopTransport()
        with pytest.raises(TransportError) as caught:
            await post(transport, url)
        await transport.close()
        return caught.value

    error = asyncio.run(main())
    assert error.failure.detail == "could not connect" and not error.failure.sent


# ------------------------------------------------------------------ answer size


def test_an_oversize_chunk_is_refused_without_buffering_it() -> None:
    """A chunked answer that declares one 40 MiB chunk: refused once past the limit, never held whole."""
    size = 40 * 1024 * 1024

    def huge_chunk(request: RawRequest) -> Sequence[Step]:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        block = b"x" * (1024 * 1024)
        return [head + hex(size)[2:].encode() + b"\r\n", *([block] * 40), b"\r\n0\r\n\r\n"]

    async def main(url: str) -> TransportError:
        transport = LoopTransport()
        with pytest.raises(TransportError) as caught:
            await post(transport, url)
        await transport.close()
        return caught.value

    import tracemalloc

    with RawServer(huge_chunk) as server:
        tracemalloc.start()
        try:
            error = asyncio.run(main(server.base_url + "/q"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert error.failure.detail == "the answer is larger than allowed"
    assert peak < 3 * MAX_ANSWER_BYTES  # bounded by the limit, not by the 40 MiB declared


def test_an_oversize_declared_length_is_refused_at_once() -> None:
    def declared(request: RawRequest) -> Sequence[Step]:
        return [f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_ANSWER_BYTES + 1}\r\n\r\n".encode(), HANG]

    async def main(url: str) -> TransportError:
        transport = LoopTransport()
        with pytest.raises(TransportError) as caught:
            await post(transport, url, timeout=30)
        await transport.close()
        return caught.value

    with RawServer(declared) as server:
        assert asyncio.run(main(server.base_url + "/q")).failure.detail == "the answer is larger than allowed"


# ------------------------------------------------------------------ what the settings refuse


@pytest.mark.parametrize(
    "key", ["abc\r\nX-Injected: yes", "ключ-api", "has space", "tab\tkey"], ids=["crlf", "cyrillic", "space", "tab"]
)
def test_an_api_key_no_header_can_carry_is_refused_before_any_request(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json(scripted.base_url, api_key=key))
    with pytest.raises(AireiterInvalidRequestError, match="password field") as sync_error:
        AireiterHook().query(out_task_id="t1")
    with pytest.raises(AireiterInvalidRequestError, match="password field") as async_error:
        asyncio.run(AireiterHook().aquery(out_task_id="t1"))
    assert scripted.received == []
    for error in (sync_error.value, async_error.value):
        assert key not in str(error) and "X-Injected" not in str(error)


def test_retry_after_as_an_http_date_is_obeyed() -> None:
    from airflow_provider_aireiter.hooks.transport import parse_retry_after

    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(later, now=now) or 0) <= 31
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None


def test_the_same_fault_gives_the_same_error_on_both_paths(scripted: ScriptedServer) -> None:
    from tests.scripted_server import Answer as ScriptedAnswer

    scripted.default = ScriptedAnswer(503, b"upstream down")
    hook = AireiterHook(retry_policy=AireiterRetryPolicy(max_attempts=1))
    with pytest.raises(AireiterTransientError) as sync_error:
        hook.query(out_task_id="t1")
    with pytest.raises(AireiterTransientError) as async_error:
        asyncio.run(hook.aquery(out_task_id="t1"))
    assert str(sync_error.value) == str(async_error.value)


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
        hook = AireiterHook(retry_policy=AireiterRetryPolicy(max_attempts=1))
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


def test_tls_context_is_built_once_per_bundle_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import certifi

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    certifi_context = default_ssl_context()
    assert default_ssl_context() is certifi_context  # the bundle is read once per process
    one_ca = tmp_path / "one-ca.pem"
    one_ca.write_text(
        Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    monkeypatch.setenv("CURL_CA_BUNDLE", str(one_ca))
    curl_context = default_ssl_context()
    assert curl_context is not certifi_context and curl_context.cert_store_stats()["x509_ca"] == 1
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(one_ca))  # the same file: the same context
    assert default_ssl_context() is curl_context


def test_each_event_loop_gets_its_own_transport_even_after_the_last_one_closed() -> None:
    from airflow_provider_aireiter.hooks.transport import loop_transport

    async def twice() -> tuple[object, object]:
        return loop_transport(), loop_transport()

    seen = []
    for _ in range(3):  # a new loop each time, the one before closed and dropped
        loop = asyncio.new_event_loop()
        try:
            first, again = loop.run_until_complete(twice())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        assert first is again  # one transport per loop
        seen.append(first)
    assert len({id(t) for t in seen}) == 3, "a later loop was handed an earlier loop's transport"


# ------------------------------------------------------------------ through the hook


def test_hook_polls_on_kept_alive_connections(scripted: ScriptedServer) -> None:
    scripted.default = ok({"out_task_id": "t1", "status": "processing"})

    async def main() -> tuple[list[str], int]:
        statuses = []
        for _ in range(5):  # several hooks (one per trigger) share the loop's connections
            hook = AireiterHook()
            statuses += [(await hook.aquery(out_task_id="t1")).status for _ in range(4)]
        return statuses, len({r.client_port for r in scripted.received})

    statuses, connections = asyncio.run(main())
    assert statuses == ["processing"] * 20
    assert connections == 1 and len(scripted.received) == 20
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

    from airflow_provider_aireiter.hooks import transport as async_transport

    monkeypatch.setattr(async_transport, "CONNECTION_REUSE_SECONDS", 0.1)
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
