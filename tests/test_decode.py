import io

import numpy as np
import pytest
from PIL import Image

from cifake.data import BadImage, decode_image
from cifake.data.decode import MAX_PIXELS
from conftest import jpeg_bytes, synthetic_image, write_zip


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


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16", "1"])
def test_any_mode_becomes_rgb_with_the_right_pixels(mode):
    rgb = Image.fromarray(synthetic_image(0, 1))
    grey = np.repeat(np.asarray(rgb.convert("L"))[..., None], 3, axis=2)
    if mode == "I;16":  # 16-bit values are scaled to 8 bits, not clipped to white
        data, expected, tolerance = _encode(Image.fromarray(np.asarray(grey[..., 0], np.uint16) * 257), "PNG"), grey, 1
    elif mode == "CMYK":  # lossy JPEG: close to the original colours (inverted CMYK would be far off)
        data, expected, tolerance = _encode(rgb.convert("CMYK"), "JPEG", quality=95), np.asarray(rgb), 12
    else:
        image = rgb.convert(mode)
        expected = {"L": grey, "LA": grey, "RGBA": np.asarray(rgb)}.get(mode, np.asarray(image.convert("RGB")))
        data, tolerance = _encode(image, "PNG"), 0
    pixels, converted = decode_image(data)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8 and converted
    difference = np.abs(pixels.astype(int) - expected.astype(int))
    assert (difference.mean() if mode == "CMYK" else difference.max()) <= tolerance, mode
    if mode == "1":
        assert set(np.unique(pixels)) == {0, 255}


def test_transparency_is_laid_on_white():
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    pixels, _ = decode_image(_encode(image, "PNG"))
    assert (pixels == 255).all()


@pytest.mark.parametrize("mode", ["RGB", "L", "P"])
def test_a_colour_key_marks_pixels_laid_on_white(mode):
    """A PNG's transparent colour (tRNS), in a true-colour, grey or palette image: those pixels white, the rest
    as they are."""
    stored = Image.fromarray(synthetic_image(0, 4)).convert(mode)
    key = stored.getpixel((5, 5))
    keyed = np.asarray(stored) == np.asarray(key)
    keyed = keyed.all(axis=2) if keyed.ndim == 3 else keyed
    assert 0 < keyed.sum() < keyed.size
    pixels, _ = decode_image(_encode(stored, "PNG", transparency=key))
    assert np.array_equal(pixels[keyed], np.full((keyed.sum(), 3), 255, np.uint8))
    assert np.array_equal(pixels[~keyed], np.asarray(stored.convert("RGB"))[~keyed])


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
    [(b"", r"^empty file \(0 bytes\)$"), (b"just some text, named .jpg", "not an image"),
     (jpeg_bytes(synthetic_image(1, 2))[:300], "truncated or corrupt")],
)
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_image(data)


def test_too_many_pixels_is_refused():
    data = _encode(Image.new("RGB", (400, 300)), "PNG")
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_image(data, max_pixels=100_000)
    assert decode_image(data, max_pixels=120_000)[0].shape == (32, 32, 3)  # at the limit: accepted


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_default_pixel_limit_is_ours_not_only_pillows():
    """100 megapixels: over cifake's default limit but under the one at which Pillow itself refuses (twice its
    MAX_IMAGE_PIXELS), so only cifake's own check stands between it and a 300 MB decode."""
    from bad_inputs import huge_png

    assert MAX_PIXELS <= 100_000_000 < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImage, match=f"over the limit of {MAX_PIXELS:,} pixels"):
        decode_image(huge_png(10_000))


def test_small_jpegs_take_the_fast_path_and_others_say_they_were_converted():
    grey = _encode(Image.fromarray(synthetic_image(1, 4)).convert("L"), "JPEG")  # 32 x 32 but one channel
    pixels, converted = decode_image(grey)
    assert converted and np.array_equal(pixels[..., 0], pixels[..., 2])
    exif = Image.Exif()
    exif[0x0112] = 1  # upright: EXIF present, nothing to turn
    tagged = _encode(Image.fromarray(synthetic_image(1, 4)), "JPEG", exif=exif.tobytes())
    pixels, converted = decode_image(tagged)
    assert not converted and np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(tagged)).convert("RGB")))
    big = _encode(Image.fromarray(synthetic_image(1, 4, size=64)), "JPEG")
    assert decode_image(big)[1] and decode_image(big)[0].shape == (32, 32, 3)


def test_wide_integer_images_keep_their_range():
    values = np.arange(32 * 32, dtype=np.int32).reshape(32, 32) % 256  # 32-bit integers that fit in 8 bits
    pixels, _ = decode_image(_encode(Image.fromarray(values, "I"), "TIFF"))
    assert np.array_equal(pixels[..., 0], values.astype(np.uint8))  # not divided by 256
    wide = (values * 256).astype(np.uint16)
    pixels, _ = decode_image(_encode(Image.fromarray(wide), "PNG"))
    assert np.array_equal(pixels[..., 1], values.astype(np.uint8))


def test_palette_transparency_and_exif_on_png_are_honoured():
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1  # the whole image is the transparent index: white
    assert (decode_image(_encode(palette, "PNG", transparency=1))[0] == 255).all()
    opaque = Image.new("P", (32, 32), 1)
    opaque.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    assert (decode_image(_encode(opaque, "PNG"))[0] == [200, 0, 0]).all()
    half = np.zeros((32, 32, 2), np.uint8)
    half[..., 1] = 128  # grey level 0 at half opacity over white: 127 or 128
    assert np.abs(decode_image(_encode(Image.fromarray(half, "LA"), "PNG"))[0].astype(int) - 127).max() <= 1
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    out, _ = decode_image(_encode(Image.fromarray(pixels), "PNG", exif=exif.tobytes()))
    assert out[:8].mean() > 200 and out[-8:].mean() < 50  # turned, as for a JPEG


def test_decode_files_reads_folders_and_zips_and_reports_each_bad_member(tmp_path):
    import hashlib
    import zipfile

    from cifake.data.decode import decode_files

    good = [jpeg_bytes(synthetic_image(1, n)) for n in range(3)]
    files = {"a.jpg": good[0], "bad.jpg": b"nope", "b.jpg": good[1], "c.jpg": good[2]}
    names = list(files)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    folder = decode_files("", names + ["missing.jpg"], str(tmp_path))
    assert folder.index.tolist() == [0, 2, 3] and folder.converted == 0
    assert [i for i, _ in folder.errors] == [1, 4] and folder.errors[0][1].startswith("not an image")
    assert folder.errors[1][1].startswith("unreadable file")
    assert [bytes(d) for d in folder.sha256] == [hashlib.sha256(g).digest() for g in good]
    assert all(np.array_equal(a, decode_image(g)[0]) for a, g in zip(folder.images, good))
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        path = tmp_path / f"m{method}.zip"
        with zipfile.ZipFile(path, "w", method) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        with zipfile.ZipFile(path) as archive:
            entries = [(i.header_offset, i.compress_size, i.compress_type) for i in archive.infolist()]
        for listed in (entries, None):  # read at known offsets, or through zipfile
            zipped = decode_files(str(path), names, "", listed)
            assert zipped.index.tolist() == [0, 2, 3] and np.array_equal(zipped.images, folder.images), method
            assert np.array_equal(zipped.sha256, folder.sha256)
    wrong = [(e[0] + 1, e[1], zipfile.ZIP_DEFLATED) for e in entries]  # offsets that miss the local headers
    broken = decode_files(str(tmp_path / "m8.zip"), names, "", wrong)
    assert len(broken.index) == 0 and all("bad local header" in reason for _, reason in broken.errors)


def test_decode_files_goes_on_after_each_kind_of_bad_file_counts_every_conversion_and_keeps_its_dtypes(tmp_path):
    from cifake.data.decode import decode_files

    files = {"big1.png": _encode(Image.fromarray(synthetic_image(1, 1, size=64)), "PNG"), "bad.jpg": b"nope",
             "small.jpg": jpeg_bytes(synthetic_image(0, 2)),
             "big2.png": _encode(Image.fromarray(synthetic_image(0, 3, size=48)), "PNG")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    names = ["big1.png", "bad.jpg", "big2.png", "missing.jpg", "small.jpg"]  # each failure followed by a good file
    chunk = decode_files("", names, str(tmp_path))
    assert chunk.index.tolist() == [0, 2, 4] and [i for i, _ in chunk.errors] == [1, 3]
    assert chunk.converted == 2  # both PNGs resized, the 32 px JPEG not
    assert (chunk.index.dtype, chunk.images.dtype, chunk.extents.dtype) == (np.int64, np.uint8, np.int16)
    assert chunk.images.shape == (3, 32, 32, 3) and chunk.extents.tolist() == [32, 32, 32]
    expected = [decode_image(files[names[i]])[0] for i in (0, 2, 4)]
    assert all(np.array_equal(a, b) for a, b in zip(chunk.images, expected))


def test_members_whose_local_headers_carry_extra_fields_are_read_at_their_offsets(tmp_path):
    """`zip` and most archivers add an extra field (here a Unix timestamp block) to each local header; the data
    starts after it."""
    import struct
    import zipfile

    from cifake.data.decode import decode_files

    images = {f"{n}.jpg": jpeg_bytes(synthetic_image(n % 2, n)) for n in range(3)}
    path = tmp_path / "extra.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for method, (name, data) in zip((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED),
                                        images.items()):
            info = zipfile.ZipInfo(name)
            info.compress_type, info.extra = method, b"UT" + struct.pack("<HBI", 5, 1, 1_700_000_000)
            archive.writestr(info, data)
    with zipfile.ZipFile(path) as archive:
        entries = [(i.header_offset, i.compress_size, i.compress_type) for i in archive.infolist()]
    chunk = decode_files(str(path), list(images), "", entries)
    assert chunk.index.tolist() == [0, 1, 2] and not chunk.errors
    assert all(np.array_equal(a, decode_image(b)[0]) for a, b in zip(chunk.images, images.values()))


def test_member_bytes_reads_each_zip_once_at_its_offsets_and_names_a_member_it_cannot_find(tmp_path):
    import zipfile

    from cifake.data.decode import member_bytes
    from cifake.data.sources import Member

    files = {"a.jpg": b"first", "b.jpg": b"second"}
    path = write_zip(tmp_path / "m.zip", files)
    with zipfile.ZipFile(path) as archive:
        entries = {i.filename: (i.header_offset, i.compress_size, i.compress_type) for i in archive.infolist()}
    (tmp_path / "c.jpg").write_bytes(b"loose")
    members = [Member(name, "train", 1, str(path), entries[name]) for name in files] + [
        Member("c.jpg", "train", 1, "")]
    assert [(m.name, data) for m, data in member_bytes(members, tmp_path)] == [
        ("c.jpg", b"loose"), ("a.jpg", b"first"), ("b.jpg", b"second")]
    moved = [Member("b.jpg", "train", 1, str(path), (entries["b.jpg"][0] + 1, *entries["b.jpg"][1:]))]
    with pytest.raises(zipfile.BadZipFile, match="bad local header for b.jpg"):
        list(member_bytes(moved, tmp_path))


def test_big_jpegs_are_scaled_by_the_decoder_then_resized_and_float_images_decode():
    big = _encode(Image.fromarray(synthetic_image(0, 9, size=256)), "JPEG", quality=90)
    expected = Image.open(io.BytesIO(big))
    expected.draft("RGB", (32, 32))  # libjpeg's DCT scaling, then bilinear to 32 x 32
    expected = np.asarray(expected.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(decode_image(big)[0], expected)
    values = (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.float32)
    pixels, converted = decode_image(_encode(Image.fromarray(values, "F"), "TIFF"))
    assert converted and np.array_equal(pixels[..., 0], values.astype(np.uint8))
    for mode, kind in (("F", np.float32), ("I", np.int32)):  # values past 255: scaled by 1/256, not clipped
        wide = (np.arange(32 * 32).reshape(32, 32) % 200 * 256).astype(kind)
        pixels, _ = decode_image(_encode(Image.fromarray(wide, mode), "TIFF"))
        assert np.array_equal(pixels[..., 2], (wide // 256).astype(np.uint8)), mode
    wide = (np.arange(32 * 32).reshape(32, 32) % 200 * 256).astype(">u2")  # 16-bit big-endian, as TIFFs hold it
    pixels, _ = decode_image(_encode(Image.frombytes("I;16B", (32, 32), wide.tobytes()), "TIFF"))
    assert np.array_equal(pixels[..., 2], (wide // 256).astype(np.uint8))


# EXIF orientation -> how the stored pixels are turned for display, written out with NumPy (TIFF/EXIF 2.3)
ORIENTED = {
    2: np.fliplr, 3: lambda p: np.rot90(p, 2), 4: np.flipud, 5: lambda p: p.transpose(1, 0, 2),
    6: lambda p: np.rot90(p, -1), 7: lambda p: np.rot90(p, 2).transpose(1, 0, 2), 8: lambda p: np.rot90(p, 1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_a_32px_jpeg_with_an_exif_orientation_is_turned_like_any_other_image(orientation):
    """CIFAKE-sized JPEGs take a fast decoder; one that carries an orientation must still be turned upright."""
    stored = synthetic_image(1, 7)
    stored[:12, :6] = (255, 0, 0)  # an asymmetric mark, so every turn and mirror gives other pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    plain = _encode(Image.fromarray(stored), "JPEG", quality=90)
    tagged = _encode(Image.fromarray(stored), "JPEG", quality=90, exif=exif.tobytes())
    as_stored, _ = decode_image(plain)
    turned, _ = decode_image(tagged)
    assert np.array_equal(turned, ORIENTED[orientation](as_stored))
    assert not np.array_equal(turned, as_stored)


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16N", "I;16B"])
def test_a_16_bit_pillow_image_of_any_byte_order_keeps_its_top_8_bits(mode):
    from cifake.data.decode import image_to_pixels

    values = (np.arange(64).reshape(8, 8) * 1000).astype(">u2" if mode == "I;16B" else "<u2")
    pixels, converted = image_to_pixels(Image.frombytes(mode, (8, 8), values.tobytes()), 8)
    assert converted and np.array_equal(pixels[..., 1], (values // 256).astype(np.uint8))


@pytest.mark.parametrize(("top", "scaled"), [(255, False), (256, True)])
def test_a_wide_image_is_scaled_only_when_a_value_is_over_255(top, scaled):
    from cifake.data.decode import image_to_pixels

    values = np.linspace(0, top, 64).round().astype(np.int32).reshape(8, 8)
    expected = values // 256 if scaled else values
    pixels, _ = image_to_pixels(Image.fromarray(values, "I"), 8)
    assert np.array_equal(pixels[..., 0], expected.astype(np.uint8))


def test_a_wide_images_values_outside_the_8_bit_range_are_clipped_not_wrapped():
    """A 32-bit image with values under 0 and over 65,535: each scaled by 1/256, then held to 0..255."""
    from cifake.data.decode import image_to_pixels

    values = np.array([-1000, 0, 200 * 256, 70_000, 2**24, 255 * 256, 256 * 256 - 1, 1] * 8, np.int32).reshape(8, 8)
    pixels, _ = image_to_pixels(Image.fromarray(values, "I"), 8)
    expected = np.array([0, 0, 200, 255, 255, 255, 255, 0] * 8, np.uint8).reshape(8, 8)
    assert np.array_equal(pixels[..., 2], expected)


def test_a_palette_image_with_alpha_is_laid_on_white_and_one_without_pixels_is_refused():
    from cifake.data.decode import image_to_pixels, image_to_window

    clear = Image.new("PA", (8, 8), (3, 0))  # palette index 3, fully transparent
    assert (image_to_pixels(clear, 8)[0] == 255).all()
    for decode in (image_to_pixels, image_to_window):
        for size in ((0, 0), (0, 8), (8, 0)):
            with pytest.raises(BadImage, match=rf"^no pixels \({size[0]}x{size[1]}\)$"):
                decode(Image.new("RGB", size), 8)


XMP_TURNED = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF>'
              b'</x:xmpmeta>')


def test_a_png_with_its_orientation_in_xmp_is_turned():
    """PNGs (and other formats) are turned by whatever orientation Pillow reads, here an XMP packet alone."""
    from PIL import PngImagePlugin

    stored = synthetic_image(0, 3)
    stored[:12, :6] = (255, 0, 0)
    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP_TURNED.decode())
    turned, _ = decode_image(_encode(Image.fromarray(stored), "PNG", pnginfo=text))
    assert np.array_equal(turned, ORIENTED[6](stored))


@pytest.mark.parametrize("side", [32, 48])  # the fast path, then Pillow's (48 is not N, 2N, 4N or 8N)
def test_a_jpegs_orientation_comes_from_its_exif_alone_on_either_path(side):
    """A JPEG with an orientation only in XMP is shown as stored, as browsers show it, by both JPEG paths."""
    image = Image.fromarray(synthetic_image(1, 5, size=side))
    plain = _encode(image, "JPEG", quality=90)
    with_xmp = _encode(image, "JPEG", quality=90, xmp=XMP_TURNED)
    assert Image.open(io.BytesIO(with_xmp)).getexif().get(0x0112) == 6  # Pillow reads it: the file says "turn"
    assert np.array_equal(decode_image(with_xmp)[0], decode_image(plain)[0])


def _jpeg_variants() -> dict[str, bytes]:
    image = Image.fromarray(synthetic_image(0, 9))
    exif = Image.Exif()
    exif[0x0112] = 1
    return {"baseline": _encode(image, "JPEG"), "4:4:4 q95": _encode(image, "JPEG", quality=95, subsampling=0),
            "progressive": _encode(image, "JPEG", progressive=True), "optimised": _encode(image, "JPEG", optimize=True),
            "grey": _encode(image.convert("L"), "JPEG"), "cmyk": _encode(image.convert("CMYK"), "JPEG"),
            "upright exif": _encode(image, "JPEG", exif=exif.tobytes()),
            "icc profile": _encode(image, "JPEG", icc_profile=b"\0" * 128)}


@pytest.mark.parametrize("variant", sorted(_jpeg_variants()))
def test_the_fast_path_gives_exactly_what_the_general_path_gives(variant):
    from cifake.data.decode import image_to_pixels

    data = _jpeg_variants()[variant]
    fast, converted = decode_image(data)
    general, general_converted = image_to_pixels(Image.open(io.BytesIO(data)))
    assert np.array_equal(fast, general) and converted == general_converted


@pytest.mark.parametrize("side", [32, 64])
def test_a_jpeg_missing_only_its_last_bytes_is_refused_on_the_fast_path_too(side):
    """libjpeg decodes such a file without complaint unless asked to be strict (the 32 px and the scaled fast
    paths both ask); Pillow, which then reads it, names the problem."""
    data = jpeg_bytes(synthetic_image(1, 2, size=side))
    assert decode_image(data)[0].shape == (32, 32, 3)
    with pytest.raises(BadImage, match="truncated or corrupt"):
        decode_image(data[:-10])


def test_a_jpeg_as_tall_as_the_size_but_wider_is_resized_like_any_other():
    """Not square, so not the fast path's: 64 x 32 becomes 32 x 32, as Pillow resizes it."""
    data = jpeg_bytes(synthetic_image(1, 3, size=64)[:32])
    pixels, converted = decode_image(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert converted and pixels.shape == (32, 32, 3) and np.array_equal(pixels, expected)


@pytest.mark.parametrize(("side", "fast"), [(32, True), (64, True), (128, True), (256, True), (96, False),
                                            (48, False)])
def test_square_jpegs_of_n_2n_4n_and_8n_take_the_fast_path_with_pillows_pixels(side, fast, monkeypatch):
    """simplejpeg decodes them (a fifth of Pillow's time at 32 px, benchmarks/bench_data.py), to the pixels that
    Pillow's own path gives (draft, then bilinear); other sides are Pillow's alone."""
    import cifake.data.decode as decode

    calls, opened, decode_jpeg, pillow_open = [], [], decode.simplejpeg.decode_jpeg, decode.Image.open
    monkeypatch.setattr(decode.simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(k) or decode_jpeg(*a, **k))
    monkeypatch.setattr(decode.Image, "open", lambda *a, **k: opened.append(a) or pillow_open(*a, **k))
    data = jpeg_bytes(synthetic_image(0, 4, size=side))
    pixels, converted = decode_image(data)
    monkeypatch.undo()
    assert bool(calls) is fast and bool(opened) is not fast and converted is (side != 32)
    reference = Image.open(io.BytesIO(data))
    reference.draft("RGB", (32, 32))
    reference = reference.convert("RGB")
    expected = np.asarray(reference if reference.size == (32, 32) else
                          reference.resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(pixels, expected)
