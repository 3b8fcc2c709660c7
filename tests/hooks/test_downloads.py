"""Downloading outputs: streamed, atomic, checked against Content-Length, never twice, http(s) only."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aireiter.exceptions import AireiterInvalidRequestError, AireiterTransientError
from airflow_provider_aireiter.hooks.aireiter import AireiterHook, extension_for
from airflow_provider_aireiter.testing.emulator import Emulator
from tests.conftest import FAST_RETRIES


def storage(path: Path) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"file://{path}/")


def finished_task(emu: Emulator, hook: AireiterHook, out_task_id: str) -> str:
    hook.submit("seedream_v5_lite", {"prompt": out_task_id, "aspect_ratio": "3:2"}, out_task_id)
    emu.complete_task(out_task_id)
    (url,) = hook.query(out_task_id=out_task_id).output_urls
    return url


def media_requests(emu: Emulator) -> int:
    return sum(1 for r in emu.requests() if r["path"].startswith("/media/"))


def test_truncated_download_is_retried_and_never_visible(aireiter_connection: Emulator, tmp_path: Path) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    url = finished_task(aireiter_connection, hook, "cut-short")
    aireiter_connection.faults.script("media", ["truncated_download"])
    got = hook.download(url, storage(tmp_path), "cut-short_0")
    final = tmp_path / "cut-short_0.png"
    assert got.path == f"file://{final}" and got.content_type == "image/png"
    assert final.stat().st_size == got.size and final.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert media_requests(aireiter_connection) == 2  # the cut one and the retry
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut-short_0.png"]  # no partial file left


def test_always_truncated_download_fails_without_leaving_a_file(aireiter_connection: Emulator, tmp_path: Path) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    url = finished_task(aireiter_connection, hook, "always-cut")
    aireiter_connection.faults.rate("media", "truncated_download", 1.0)
    with pytest.raises(AireiterTransientError, match=r"cut short|connection broke"):
        hook.download(url, storage(tmp_path), "always-cut_0")
    assert list(tmp_path.iterdir()) == []


def test_a_complete_file_is_not_downloaded_again(aireiter_connection: Emulator, tmp_path: Path) -> None:
    hook = AireiterHook(retry_policy=FAST_RETRIES)
    url = finished_task(aireiter_connection, hook, "once")
    first = hook.download(url, storage(tmp_path), "once_0")
    again = hook.download(url, storage(tmp_path), "once_0")
    assert (first.reused, again.reused) == (False, True)
    assert again.size == first.size and again.path == first.path
    assert media_requests(aireiter_connection) == 1


def test_only_http_urls_are_fetched(aireiter_connection: Emulator, tmp_path: Path) -> None:
    with pytest.raises(AireiterInvalidRequestError, match="only http and https"):
        AireiterHook().download("file:///etc/passwd", storage(tmp_path), "x_0")
    assert list(tmp_path.iterdir()) == []


def test_extension_follows_the_content_type() -> None:
    assert extension_for("image/png", "https://cdn/x") == ".png"
    assert extension_for("video/mp4; charset=binary", "https://cdn/x.bin") == ".mp4"
    assert extension_for(None, "https://cdn/a/b/clip.webm?sig=1") == ".webm"
    assert extension_for("application/octet-stream", "https://cdn/noext") in (".bin",)


class _Zeros(BaseHTTPRequestHandler):
    """Streams SIZE bytes of zeros in 64 KiB writes, never holding the file in memory."""

    SIZE = 64 * 1024 * 1024

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(self.SIZE))
        self.end_headers()
        block = bytes(64 * 1024)
        for _ in range(self.SIZE // len(block)):
            self.wfile.write(block)


@pytest.fixture
def zeros_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Zeros)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/big.mp4"
    server.shutdown()
    server.server_close()


def test_memory_does_not_grow_with_file_size(
    zeros_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import conn_json

    monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://127.0.0.1:9"))
    hook = AireiterHook()
    tracemalloc.start()
    try:
        got = hook.download(zeros_server, storage(tmp_path), "big_0")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.size == _Zeros.SIZE == (tmp_path / "big_0.mp4").stat().st_size
    assert peak < 8 * 1024 * 1024, f"peak Python allocations {peak / 1e6:.1f} MB for a 64 MB file"


class _Shapes(BaseHTTPRequestHandler):
    """Serves a few bytes under any path with the content type of ``TYPES``; 410 once ``expired``."""

    TYPES = {"/out.jpg": "image/jpeg", "/signed": "image/png", "/clip.MP4": "video/mp4", "/x.bin": "image/webp"}
    expired = False
    gets: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        type(self).gets.append(path)
        if type(self).expired:
            self.send_response(410)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = path.encode() * 10
        self.send_response(200)
        self.send_header("Content-Type", self.TYPES[path])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("path", ["/out.jpg", "/signed?sig=abc&exp=1", "/clip.MP4?x=1", "/x.bin"])
def test_a_retry_finds_the_complete_file_whatever_the_url_shape(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first try saved the file under the served content type's extension; the second try finds it,
    although the URL's own suffix says otherwise and the URL has expired meanwhile."""
    from tests.conftest import conn_json

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Shapes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Shapes.expired, _Shapes.gets = False, []
    try:
        monkeypatch.setenv("AIRFLOW_CONN_AIREITER_DEFAULT", conn_json("http://127.0.0.1:9"))
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        first = AireiterHook().download(url, storage(tmp_path), "task_0")
        assert not first.reused
        _Shapes.expired = True
        second = AireiterHook().download(url, storage(tmp_path), "task_0")
        assert second.reused and second.path == first.path and second.size == first.size
        assert len(_Shapes.gets) == 1  # the retry did not fetch it again
        assert [p.name for p in tmp_path.iterdir()] == [first.path.rsplit("/", 1)[1]]
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_of_another_index_is_not_taken_for_this_one(tmp_path: Path) -> None:
    from airflow_provider_aireiter.hooks.aireiter import existing_output

    (tmp_path / "task_10.png").write_bytes(b"x")
    (tmp_path / ".task_1.abcd1234.part").write_bytes(b"x")
    assert existing_output(storage(tmp_path), "task_1", "https://cdn/a.png") is None
    assert existing_output(storage(tmp_path), "task_10", "https://cdn/a.png") is not None
