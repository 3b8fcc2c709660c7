"""Result files: real PNGs sized by aspect ratio and resolution, real MP4s."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import time
import zlib

import pytest
import requests

from airflow_provider_aireiter.testing.emulator.media import make_png


def _media(api, emu, out_task_id, model="seedream_v5_lite", params=None):
    api.submit(out_task_id, model=model, params=params or {"prompt": "p"})
    emu.complete_task(out_task_id)
    url = api.query(out_task_id).json()["data"]["output"][0]["url"]
    response = requests.get(url, timeout=10)  # no Authorization header: media is public
    assert response.status_code == 200
    return url, response


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        chunks.append((kind, payload))
        offset += 12 + length
    return chunks


def _png_size(data: bytes) -> tuple[int, int]:
    chunks = _png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    return width, height


@pytest.mark.parametrize(
    ("model", "params", "size"),
    [
        ("seedream_v5_lite", {}, (2048, 2048)),
        ("seedream_v5_lite", {"aspect_ratio": "16:9"}, (2048, 1152)),
        ("seedream_v5_lite", {"aspect_ratio": "16:9", "resolution": "3K"}, (3072, 1728)),
        ("seedream_v5_lite", {"aspect_ratio": "9:16", "resolution": "3K"}, (1728, 3072)),
        ("seedream_v5_lite", {"aspect_ratio": "21:9", "resolution": "2K"}, (2048, 880)),
        ("seedream_v5_lite", {"aspect_ratio": "3:2", "resolution": "2K"}, (2048, 1368)),
        ("seedream_v5_lite", {"aspect_ratio": "3:4", "resolution": "3K"}, (2304, 3072)),
        ("gpt_image_2_official", {"aspect_ratio": "16:9"}, (1024, 576)),
        ("nano_banana_pro", {}, (1024, 1024)),
        ("nano_banana_pro", {"aspect_ratio": "auto"}, (1024, 1024)),
    ],
)
def test_png_pixel_size(api, aireiter_emulator, model, params, size):
    url, response = _media(api, aireiter_emulator, "img", model=model, params={"prompt": "a cat", **params})
    assert url.endswith("/img_0.png")
    assert response.headers["Content-Type"] == "image/png"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert _png_size(response.content) == size


def test_png_depends_on_prompt(api, aireiter_emulator):
    _, one = _media(api, aireiter_emulator, "p1", params={"prompt": "a red fox"})
    _, two = _media(api, aireiter_emulator, "p2", params={"prompt": "a blue whale"})
    _, three = _media(api, aireiter_emulator, "p3", params={"prompt": "a red fox"})
    assert one.content != two.content
    assert one.content == three.content


def test_large_png_is_fast():
    started = time.perf_counter()
    data = make_png(3072, 1728, hashlib.sha256(b"x").digest())
    assert time.perf_counter() - started < 1.0
    assert _png_size(data) == (3072, 1728)


def _mp4_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    boxes, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack(">I", data[offset : offset + 4])
        assert size >= 8
        boxes.append((data[offset + 4 : offset + 8], data[offset + 8 : offset + size]))
        offset += size
    assert offset == len(data)
    return boxes


@pytest.mark.parametrize("model", ["seedance_1_5_pro", "veo3_1", "sora2_pro"])
def test_mp4_is_valid_and_prompt_dependent(api, aireiter_emulator, model, tmp_path):
    url, one = _media(api, aireiter_emulator, "v1", model=model, params={"prompt": "a kitten"})
    _, two = _media(api, aireiter_emulator, "v2", model=model, params={"prompt": "a puppy"})
    assert url.endswith("/v1_0.mp4")
    assert one.headers["Content-Type"] == "video/mp4"
    assert int(one.headers["Content-Length"]) == len(one.content)
    boxes = _mp4_boxes(one.content)
    assert boxes[0][0] == b"ftyp"
    kinds = [kind for kind, _ in boxes]
    assert b"moov" in kinds and b"mdat" in kinds
    assert kinds[-1] == b"free"
    assert hashlib.sha256(b"a kitten").hexdigest().encode() in boxes[-1][1]
    assert one.content != two.content
    if shutil.which("ffprobe"):
        path = tmp_path / "v.mp4"
        path.write_bytes(one.content)
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0 and "video" in probe.stdout


def test_media_not_served_before_completion_or_for_unknown(api, aireiter_emulator):
    api.submit("early", params={"prompt": "p"})
    task_id = api.query("early").json()["data"]["task_id"]
    base = aireiter_emulator.base_url
    assert requests.get(f"{base}/media/{task_id}/early_0.png", timeout=5).status_code == 404
    assert requests.get(f"{base}/media/order_nope/x_0.png", timeout=5).status_code == 404
    aireiter_emulator.complete_task("early")
    assert requests.get(f"{base}/media/{task_id}/early_1.png", timeout=5).status_code == 404
    assert requests.get(f"{base}/media/{task_id}/early_0.png", timeout=5).status_code == 200


def test_media_head_and_failed_task(api, aireiter_emulator):
    url, full = _media(api, aireiter_emulator, "h1")
    head = requests.head(url, timeout=5)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(full.content))
    assert head.content == b""
    api.submit("f1")
    aireiter_emulator.complete_task("f1", status="failed")
    task_id = api.query("f1").json()["data"]["task_id"]
    assert requests.get(f"{aireiter_emulator.base_url}/media/{task_id}/f1_0.png", timeout=5).status_code == 404
