"""Bytes to RGB uint8 pixels at a model's input size, the way the study fed images to its CNN.

One function serves the dataset loader and prediction alike, so a file scores the same whichever way it
comes in. Any size and mode Pillow reads is accepted: EXIF orientation is applied, animations give their
first frame, transparency is laid on white, 16-bit images are scaled to 8 bits. Under `resize` (the study's
way) anything not N x N is resized with bilinear interpolation, a large JPEG decoded at a reduced scale by
libjpeg first; under `crop` the native pixels of the image's central window are kept (cifake.data.preprocess).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from cifake.data.preprocess import CROP_WINDOW, STUDY_INPUT, Preprocess
from cifake.data.sources import Member

IMAGE_SIZE = 32  # the study's size, and every model's default
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # larger images are refused as possible decompression bombs
DECODER_VERSION = 2  # bump when decoding changes, so that caches are rebuilt


class BadImage(ValueError):
    """A file that is not a usable image; the message says why."""


def decode_image(data: bytes, size: int = IMAGE_SIZE, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """Decode image bytes to (size x size x 3 uint8 array, whether it had to be converted or resized)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    fast = _decode_small_jpeg(data, size)
    if fast is not None:
        return fast
    return _with_reasons(lambda: image_to_pixels(Image.open(io.BytesIO(data)), size, max_pixels))


def decode_window(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int, bool]:
    """Decode image bytes for a `crop` model of input size N: (its 2N x 2N window array, the side of the native
    pixels in it, whether the image was under N and enlarged)."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    return _with_reasons(lambda: image_to_window(Image.open(io.BytesIO(data)), size, max_pixels))


def decode_for(data: bytes, preprocess: Preprocess, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int, bool]:
    """(stored pixels, extent, converted or upscaled) of image bytes as `preprocess` keeps them: a resized N x N
    image with extent N, or a crop model's window."""
    if preprocess.crops:
        return decode_window(data, preprocess.size, max_pixels)
    pixels, converted = decode_image(data, preprocess.size, max_pixels)
    return pixels, preprocess.size, converted


def _with_reasons(decode):
    """Run a Pillow decode, turning each way it fails into a BadImage that says why."""
    try:
        return decode()
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"too many pixels, refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"truncated or corrupt image data ({exc})") from None


def _refuse_bombs(image: Image.Image, max_pixels: int) -> None:
    """Refuse what no decode should try: too many pixels (a possible decompression bomb), or none at all."""
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"too many pixels, refused as a possible decompression bomb "
                       f"({width}x{height} is over the limit of {max_pixels:,} pixels)")
    if not width or not height:  # a Pillow image can be made so; resized, it would score as a black one
        raise BadImage(f"no pixels ({width}x{height})")


def image_to_pixels(image: Image.Image, size: int = IMAGE_SIZE,
                    max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """A Pillow image (any mode and size) to (size x size x 3 uint8 array, whether it was converted)."""
    _refuse_bombs(image, max_pixels)
    converted = image.size != (size, size) or image.mode != "RGB"
    if image.format == "JPEG":
        image.draft("RGB", (size, size))  # let libjpeg scale big photos down while decoding
    image = _upright_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8), converted


def image_to_window(image: Image.Image, size: int, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int, bool]:
    """A Pillow image as a `crop` model keeps it: (2N x 2N window, extent, upscaled); see cifake.data.preprocess."""
    _refuse_bombs(image, max_pixels)
    image = _upright_rgb(image)
    width, height = image.size
    upscaled = min(width, height) < size
    if upscaled:  # the one rule for small images: enlarge until the short side is N
        scale = size / min(width, height)
        width, height = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    extent = min(width, height, size * CROP_WINDOW)
    left, top = (width - extent) // 2, (height - extent) // 2
    window = np.zeros((size * CROP_WINDOW, size * CROP_WINDOW, 3), np.uint8)
    window[:extent, :extent] = np.asarray(image.crop((left, top, left + extent, top + extent)), np.uint8)
    return window, extent, upscaled


def _decode_small_jpeg(data: bytes, size: int) -> tuple[np.ndarray, bool] | None:
    """Fast path for square colour JPEGs without EXIF whose side is N, 2N, 4N or 8N: (pixels, converted), or None
    to use Pillow.

    simplejpeg (libjpeg-turbo, accurate DCT and upsampling, as Pillow uses) gives bit-identical pixels in a fifth
    of Pillow's time for CIFAKE's 32 px files, and decodes a 512 px face at 1/4 scale to 128 px in 0.8 of Pillow's
    time, again bit-identical to Pillow's draft mode (benchmarks/bench_data.py). Other scales are left to Pillow,
    whose draft mode scales by powers of two only. Anything unusual, corrupt data included, goes to Pillow, which
    also names the problem.
    """
    if data[:2] != b"\xff\xd8" or b"Exif\x00\x00" in data:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace not in ("YCbCr", "RGB"):
            return None
        if height != width or height % size or height // size not in (1, 2, 4, 8):
            return None
        if height == size:  # CIFAKE's own files: no scaling to ask for
            return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True), False
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, min_height=size, min_width=size)
        return (pixels, True) if pixels.shape[:2] == (size, size) else None
    except ValueError:
        return None


def _upright_rgb(image: Image.Image) -> Image.Image:
    if image.format != "JPEG" or "exif" in image.info:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and integer images: keep the top 8 bits instead of clipping everything above 255 to white
        wide = np.asarray(image, dtype=np.float64)
        scale = 256.0 if wide.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(wide / scale, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # a palette's or a colour key's
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.load()
    return image


@dataclass
class DecodedChunk:
    """Result of decoding a list of members: pixels and hashes of the good ones, reasons for the bad."""

    index: np.ndarray  # positions (in the chunk's input list) of the images that decoded
    images: np.ndarray  # (n, S, S, 3) uint8: N x N images, or a crop model's windows
    extents: np.ndarray  # (n,) int16: side of the native pixels in each window (N under resize)
    sha256: np.ndarray  # (n, 32) uint8 digests of the original bytes, for duplicate audits
    converted: int = 0  # resized or converted (resize), enlarged because under N (crop)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


def decode_files(
    container: str,
    names: list[str],
    root: str,
    zip_entries: list[tuple[int, int, int]] | None = None,
    preprocess: Preprocess = STUDY_INPUT,
) -> DecodedChunk:
    """Decode members of one zip (`container`) or files under `root`; bad files are reported, not raised.

    `zip_entries` (header offset, compressed size, method) of each member, as listed by the caller, let the
    members be read directly, without parsing the zip's directory again.
    """
    reader = ZipMemberReader(container, names, zip_entries) if container else None
    side = preprocess.stored_size
    images = np.empty((len(names), side, side, 3), np.uint8)
    extents = np.empty(len(names), np.int16)
    digests = np.empty((len(names), 32), np.uint8)
    good: list[int] = []
    errors: list[tuple[int, str]] = []
    converted = 0
    for i, name in enumerate(names):
        try:
            data = reader.read(i) if reader else Path(root, name).read_bytes()
            pixels, extent, was_converted = decode_for(data, preprocess)
        except BadImage as exc:
            errors.append((i, str(exc)))
            continue
        except (OSError, zipfile.BadZipFile, zlib.error) as exc:
            errors.append((i, f"unreadable file ({exc})"))
            continue
        images[len(good)] = pixels
        extents[len(good)] = extent
        digests[len(good)] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        converted += was_converted
        good.append(i)
    if reader:
        reader.close()
    n = len(good)
    return DecodedChunk(np.asarray(good, np.int64), images[:n], extents[:n], digests[:n], converted, errors)


class ZipMemberReader:
    """Reads stored or deflated zip members straight from their offsets.

    zipfile.ZipFile.read costs ~50 us a member for CIFAKE's 1 KB images (a third of the decode time) and every
    worker would first parse the 100k-entry directory again; reading at known offsets costs a few us.
    Other compression methods fall back to zipfile.
    """

    _LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then the name and extra-field lengths at byte 26

    def __init__(self, path: str, names: list[str], entries: list[tuple[int, int, int]] | None):
        self.path, self.names, self.entries = path, names, entries
        self.file = open(path, "rb")
        self.archive: zipfile.ZipFile | None = None

    def read(self, i: int) -> bytes:
        if self.entries is None or self.entries[i][2] not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self.archive = self.archive or zipfile.ZipFile(self.path)
            return self.archive.read(self.names[i])
        offset, size, method = self.entries[i]
        self.file.seek(offset)
        signature, name_length, extra_length = self._LOCAL_HEADER.unpack(self.file.read(30))
        if signature != b"PK\x03\x04":
            raise zipfile.BadZipFile(f"bad local header for {self.names[i]}")
        self.file.seek(offset + 30 + name_length + extra_length)
        data = self.file.read(size)
        return zlib.decompress(data, -15) if method == zipfile.ZIP_DEFLATED else data

    def close(self) -> None:
        self.file.close()
        if self.archive:
            self.archive.close()


def member_bytes(members: list[Member], root: str | os.PathLike) -> Iterator[tuple[Member, bytes]]:
    """(member, its bytes) of members under `root`, a zip at a time, each zip opened once."""
    for container in sorted({m.container for m in members}):
        group = [m for m in members if m.container == container]
        reader = ZipMemberReader(container, [m.name for m in group], [m.zip_entry for m in group]) \
            if container else None
        for i, member in enumerate(group):
            yield member, reader.read(i) if reader else Path(root, member.name).read_bytes()
        if reader:
            reader.close()
