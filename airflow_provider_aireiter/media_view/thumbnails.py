"""Small JPEG thumbnails of stored images for the gallery, so a page of 4K images stays light.

Made with Pillow (the ``ui`` extra) on first request and kept in a bounded in-memory cache keyed by
the stored path, its size and the thumbnail width. Without Pillow the gallery gets the original file.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any

#: The widths the gallery may ask for (no other value is accepted: the cache stays bounded).
WIDTHS = (160, 320, 640)
_CACHE_ENTRIES = 512
_cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
_lock = threading.Lock()


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def thumbnail(path: Any, path_text: str, size: int, width: int) -> bytes:
    """JPEG bytes of the image at ``path``, at most ``width`` pixels wide and high."""
    key = (path_text, size, width)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from PIL import Image

    with path.open("rb") as source, Image.open(source) as image:
        image.draft("RGB", (width, width))  # JPEG sources decode at a reduced scale
        image.thumbnail((width, width))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=80)
    data = out.getvalue()
    with _lock:
        _cache[key] = data
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return data
