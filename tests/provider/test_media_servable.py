"""What the media view may serve (``media_view/records.servable``), attacked on a real file system.

Two actors: a UI user who may edit an XCom (the result dict) but not write to the media storage, and
a DAG author, whose code can write files anywhere a worker can, but whose files must stay inside the
media roots the administrator allowed. The end-to-end versions, on a real API server with XComs
edited through the REST API, are in ``tests/e2e/test_media_view.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_aireiter.hooks.aireiter import output_record, record_name
from airflow_provider_aireiter.media_view.records import MediaEntry, MediaFile, servable

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64


def entry(**overrides: object) -> MediaEntry:
    values: dict[str, object] = {
        "dag_id": "d",
        "run_id": "r",
        "task_id": "t",
        "map_index": -1,
        "out_task_id": "af-x",
        "model": "seedream_v5_lite",
        "status": "completed",
        "credits_used": 1,
        "prompt": None,
    }
    values.update(overrides)
    return MediaEntry(**values)  # type: ignore[arg-type]


def store(folder: Path, name: str, data: bytes, record_for: MediaEntry | None = None, index: int = 0) -> Path:
    """Write a file as the provider does: the file, then its record naming the task instance."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    owner = record_for or entry()
    record = output_record(owner.dag_id, owner.run_id, owner.task_id, owner.map_index, index, len(data))
    (folder / record_name(name)).write_text(json.dumps(record))
    return path


def media_file(path: Path | str, index: int = 0, content_type: str | None = "image/png") -> MediaFile:
    return MediaFile(index=index, url=None, path=f"file://{path}", content_type=content_type, size=None)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "media"


def roots(root: Path) -> list[str]:
    return [f"file://{root}"]


def test_a_file_the_provider_stored_for_this_task_instance_is_served(root: Path) -> None:
    path = store(root / "2026-01-01", "af-x_0.png", PNG)
    found = servable(entry(), media_file(path), roots(root))
    assert found is not None and found.media_type == "image/png" and found.size == len(PNG)
    video = store(root / "v", "af-x_1.mp4", MP4, index=1)
    assert servable(entry(), media_file(video, 1, "video/mp4"), roots(root)) is not None


def test_nothing_is_served_without_media_roots(root: Path) -> None:
    path = store(root, "af-x_0.png", PNG)
    assert servable(entry(), media_file(path), []) is None


def test_a_path_outside_every_root_is_refused(tmp_path: Path, root: Path) -> None:
    root.mkdir()
    outside = store(tmp_path / "elsewhere", "af-x_0.png", PNG)  # a perfect file, in the wrong place
    assert servable(entry(), media_file(outside), roots(root)) is None
    sibling = store(tmp_path / "media-other", "af-x_0.png", PNG)  # a prefix of the root's name is not inside
    assert servable(entry(), media_file(sibling), roots(root)) is None


def test_a_symlinked_file_or_folder_leading_out_is_refused(tmp_path: Path, root: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    store(root, "af-x_0.png", PNG)
    (root / "af-x_0.png").unlink()
    (root / "af-x_0.png").symlink_to(secret)
    assert servable(entry(), media_file(root / "af-x_0.png"), roots(root)) is None
    store(tmp_path / "outside", "af-x_0.png", PNG)
    (root / "linked").symlink_to(tmp_path / "outside")
    assert servable(entry(), media_file(root / "linked" / "af-x_0.png"), roots(root)) is None
    etc = root / "etc"
    etc.symlink_to("/etc")
    assert servable(entry(out_task_id="hostname"), media_file(etc / "hostname"), roots(root)) is None


def test_a_hard_link_is_refused(tmp_path: Path, root: Path) -> None:
    path = store(root, "af-x_0.png", PNG)
    os.link(path, tmp_path / "another-name.png")
    assert servable(entry(), media_file(path), roots(root)) is None


@pytest.mark.parametrize(
    "who",
    [
        {"dag_id": "other_dag"},
        {"run_id": "another_run"},
        {"task_id": "another_task"},
        {"map_index": 3},
    ],
    ids=["another DAG", "another run", "another task", "another map index"],
)
def test_a_file_stored_for_another_task_instance_is_refused(root: Path, who: dict[str, object]) -> None:
    path = store(root, "af-x_0.png", PNG, record_for=entry(**who))
    assert servable(entry(), media_file(path), roots(root)) is None


def test_a_file_without_a_record_or_changed_since_is_refused(root: Path) -> None:
    path = store(root, "af-x_0.png", PNG)
    (root / record_name("af-x_0.png")).unlink()
    assert servable(entry(), media_file(path), roots(root)) is None
    path = store(root, "af-x_0.png", PNG)
    path.write_bytes(PNG + b"appended after it was recorded")
    assert servable(entry(), media_file(path), roots(root)) is None
    (root / record_name("af-x_0.png")).write_text("not json")
    assert servable(entry(), media_file(path), roots(root)) is None


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("af-x_0.html", b"<html><script>fetch('/api/v2/connections')</script>"),
        ("af-x_0.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
        ("af-x_0.png", b"<html><script>alert(1)</script></html>"),  # a .png that is not one
        ("af-x_0.mp4", PNG),  # an image named as a video
    ],
)
def test_anything_but_a_media_file_of_its_type_is_refused(root: Path, name: str, data: bytes) -> None:
    path = store(root, name, data)
    assert servable(entry(), media_file(path, content_type="text/html"), roots(root)) is None


def test_the_type_served_is_the_files_not_the_one_recorded(root: Path) -> None:
    path = store(root, "af-x_0.png", PNG)
    found = servable(entry(), media_file(path, content_type="text/html; charset=utf-8"), roots(root))
    assert found is not None and found.media_type == "image/png"


@pytest.mark.parametrize(
    "path",
    ["file:///etc/passwd", "/etc/hostname", "file://{root}/../af-x_0.png", "file://{root}/af-x_0.png?x=1", ""],
)
def test_odd_recorded_paths_are_refused(root: Path, path: str) -> None:
    store(root, "af-x_0.png", PNG)
    recorded = path.format(root=root)
    assert servable(entry(), media_file(recorded) if recorded else media_file(""), roots(root)) is None


def _declared_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("data", "says"),
    [(_declared_png(12000, 12000), "over the limit"), (b"<html>not an image</html>", "UnidentifiedImageError")],
    ids=["12000x12000", "not an image"],
)
def test_a_thumbnail_is_refused_before_decoding_what_it_cannot_afford(data: bytes, says: str) -> None:
    import io
    import tracemalloc

    from airflow_provider_aireiter.media_view import thumbnails

    tracemalloc.start()
    try:
        with pytest.raises(thumbnails.NotThumbnailable, match=says):
            thumbnails.thumbnail(lambda: io.BytesIO(data), f"bomb-{says}", len(data), 160)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # decoding 12000x12000 RGB would take 432 MB


def test_a_fifo_swapped_in_is_refused_without_waiting(root: Path) -> None:
    path = store(root, "af-x_0.png", PNG)
    path.unlink()
    os.mkfifo(path)  # opening a FIFO for reading would block a request thread until a writer comes
    assert servable(entry(), media_file(path), roots(root)) is None


def test_unparsable_values_of_an_edited_result_are_refused_not_raised(root: Path) -> None:
    from airflow_provider_aireiter.media_view.pages import _service_link

    odd = MediaFile(index=0, url="http://[", path="s3://[bucket/af-x_0.png", content_type=None, size=None)
    assert MediaFile(index=0, url="http://[/x.png", path=None, content_type=None, size=None).kind == "other"
    assert servable(entry(), odd, [*roots(root), "s3://bucket"]) is None
    assert _service_link("http://[") is None and _service_link("javascript:alert(1)") is None


def test_a_bucket_without_a_path_is_a_root() -> None:
    from airflow_provider_aireiter.media_view.records import _location, _under_a_root

    stored = _location("s3://bucket/media/af-x_0.png")
    assert stored is not None and _under_a_root(stored, ["s3://bucket"])
    assert not _under_a_root(stored, ["s3://other-bucket"])
