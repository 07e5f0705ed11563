"""A corpus of awkward inputs the tests make themselves, with what each must give."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from conftest import jpeg_bytes, synthetic_image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int = 20000) -> bytes:
    """A valid 1-bit side x side PNG (400 megapixels when side is 20000) in about 50 KB, built row by row."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((side + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def corpus() -> dict[str, tuple[bytes, str | None]]:
    """name -> (bytes, None when it must be scored, or a phrase its error must contain)."""
    rgb = Image.fromarray(synthetic_image(0, 3, size=48))
    frames = [Image.new("RGB", (40, 40), c) for c in ((200, 30, 30), (30, 30, 200))]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100)
    sixteen = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
    return {
        "good.jpg": (jpeg_bytes(synthetic_image(1, 1)), None),
        "truncated.jpg": (jpeg_bytes(synthetic_image(1, 2))[:300], "truncated or corrupt"),
        "zero.jpg": (b"", "empty file"),
        "text.jpg": (b"this is not a picture at all\n", "not an image"),
        "huge.png": (huge_png(), "decompression bomb"),
        "cmyk.jpg": (_save(rgb.convert("CMYK"), "JPEG"), None),
        "sixteen-bit.png": (_save(sixteen, "PNG"), None),
        "animated.gif": (animated.getvalue(), None),
    }
