"""Small JPEG thumbnails of stored images for the gallery, so a page of 4K images stays light.

Made with Pillow (the ``ui`` extra) on first request and kept in a bounded in-memory cache keyed by
the stored path, its size and the thumbnail width. Without Pillow the gallery gets the original file.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import BinaryIO

#: The widths the gallery may ask for (no other value is accepted: the cache stays bounded).
WIDTHS = (160, 320, 640)
#: the largest image a thumbnail is made of (width x height, read from its header before decoding);
#: a 24-bit image of this size takes about 120 MB to decode
MAX_PIXELS = 40_000_000


class NotThumbnailable(ValueError):
    """The file is no image Pillow can read, or a larger one than :data:`MAX_PIXELS`."""


_CACHE_ENTRIES = 512
_cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
_lock = threading.Lock()


def pillow_available() -> bool:
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def thumbnail(source_file: Callable[[], BinaryIO], path_text: str, size: int, width: int) -> bytes:
    """JPEG bytes of the image ``source_file()`` opens, at most ``width`` pixels wide and high.

    :raises NotThumbnailable: for a file that is no readable image, or one over :data:`MAX_PIXELS`
        (refused from its header, before anything is decoded).
    """
    key = (path_text, size, width)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from PIL import Image, UnidentifiedImageError

    try:
        with source_file() as source, Image.open(source) as image:
            pixels = image.size[0] * image.size[1]
            if pixels > MAX_PIXELS:
                raise NotThumbnailable(f"{image.size[0]}x{image.size[1]} pixels is over the limit of {MAX_PIXELS:,}")
            image.draft("RGB", (width, width))  # JPEG sources decode at a reduced scale
            image.thumbnail((width, width))
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=80)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise NotThumbnailable(f"not an image a thumbnail can be made of ({type(error).__name__})") from None
    data = out.getvalue()
    with _lock:
        _cache[key] = data
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return data
