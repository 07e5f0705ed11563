import io

import numpy as np
import pytest
from PIL import Image

from cifake.data import BadImage, decode_image
from conftest import jpeg_bytes, synthetic_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_cifake_jpeg_fast_path_matches_pillow():
    data = jpeg_bytes(synthetic_image(1, 3))
    pixels, converted = decode_image(data)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8 and not converted
    assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_large_image_is_resized_bilinear():
    big = Image.fromarray(synthetic_image(1, 0, size=96))
    pixels, converted = decode_image(_encode(big, "PNG"))
    assert converted and pixels.shape == (32, 32, 3)
    expected = np.asarray(big.resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(pixels, expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_any_mode_becomes_rgb(mode):
    rgb = Image.fromarray(synthetic_image(0, 1))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)
        data = _encode(image, "PNG")
    else:
        image = rgb.convert(mode)
        data = _encode(image, "JPEG" if mode == "CMYK" else "PNG")
    pixels, converted = decode_image(data)
    assert pixels.shape == (32, 32, 3) and converted
    if mode == "I;16":  # 16-bit values are scaled to 8 bits, not clipped to white
        assert np.abs(pixels[..., 0].astype(int) - np.asarray(rgb.convert("L"))).max() <= 1


def test_transparency_is_laid_on_white():
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    pixels, _ = decode_image(_encode(image, "PNG"))
    assert (pixels == 255).all()


def test_exif_orientation_is_applied():
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    data = _encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    out, _ = decode_image(data)
    assert out[:8].mean() > 200 and out[-8:].mean() < 50  # white on top after rotation


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 255, 255), (0, 0, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    pixels, _ = decode_image(buffer.getvalue())
    assert pixels.mean() > 250


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", "empty file"), (b"just some text, named .jpg", "not an image"),
     (jpeg_bytes(synthetic_image(1, 2))[:300], "truncated or corrupt")],
)
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data)


def test_too_many_pixels_is_refused():
    data = _encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(data, max_pixels=100_000)
