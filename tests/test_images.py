"""Image loading: every bad input is refused with a clear ValueError / TypeError, every good one becomes RGB."""

from __future__ import annotations

import io
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFile

from xcam_widgets import images
from xcam_widgets.images import MAX_PIXELS, MIN_SIDE, SAMPLE_IMAGES, load_image, sample_image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height (8-bit RGB) in its header, with almost no pixel data (a few rows)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def noise_rgb(width: int = 32, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


# --- refused inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [42, 3.5, None, ["a.png"], np.zeros((8, 8, 3), np.uint8)])
def test_wrong_type_is_a_type_error(source):
    with pytest.raises(TypeError, match="source must be a path"):
        load_image(source)


def test_empty_bytes():
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        load_image(b"")


@pytest.mark.parametrize("data", [b"hello, world", b"\x00" * 100, b"%PDF-1.4\n%...", b"<svg></svg>"])
def test_non_image_bytes(data):
    with pytest.raises(ValueError, match="not an image in a supported format"):
        load_image(data)


def test_eps_is_not_decoded():
    """EPS would be rasterised by Ghostscript, so it is outside the allowed formats."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\nshowpage\n%%EOF\n"
    with pytest.raises(ValueError, match="not an image in a supported format"):
        load_image(eps)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="not an image in a supported format"):
        load_image(path)


@pytest.mark.parametrize("name", ["missing.png", ""])
def test_missing_file(tmp_path, name):
    with pytest.raises(ValueError, match="does not exist or is not a file"):
        load_image(tmp_path / name)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(fmt):
    data = encode(noise_rgb(64, 64), fmt)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_file_over_byte_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(encode(noise_rgb()))
    monkeypatch.setattr(images, "MAX_BYTES", path.stat().st_size - 1)
    with pytest.raises(ValueError, match=r"bytes, more than the limit of .*MAX_BYTES"):
        load_image(path)


def test_bytes_over_byte_limit():
    with pytest.raises(ValueError, match=r"bytes, more than the limit of .*MAX_BYTES"):
        load_image(b"\x89PNG" + b"\x00" * images.MAX_BYTES)


@pytest.mark.parametrize("size", [(1, 1), (1, 20000), (MIN_SIDE - 1, 100), (100, MIN_SIDE - 1)])
def test_too_small(size):
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} px"):
        load_image(encode(Image.new("L", size)))


@pytest.mark.parametrize("size", [(8, 401), (1000, 16)])
def test_too_elongated(size):
    with pytest.raises(ValueError, match="aspect ratio beyond 50:1"):
        load_image(encode(Image.new("L", size)))


@pytest.mark.parametrize(
    "size",
    [
        (8000, 5001),  # just over our limit, under PIL's warning threshold
        (10000, 10000),  # over PIL's warning threshold (about 89 Mpx)
        (20000, 20000),  # over PIL's error threshold (about 179 Mpx)
    ],
)
def test_decompression_bomb_refused_from_header(size):
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        with pytest.raises(ValueError, match=r"too many pixels|more than the limit"):
            load_image(png_header_only(*size))
    assert max_pixels_before == Image.MAX_IMAGE_PIXELS


def test_header_just_under_pixel_limit_reaches_the_decoder():
    """A header under MAX_PIXELS passes the size check; the missing pixel data is then reported."""
    assert MAX_PIXELS >= 8000 * 5000
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_image(png_header_only(8000, 5000))


def test_float_image_refused():
    data = encode(Image.fromarray(np.full((16, 16), 0.5, np.float32), "F"), "TIFF")
    with pytest.raises(ValueError, match="floating-point"):
        load_image(data)


def test_pil_global_state_untouched():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for bad in [b"", b"junk", png_header_only(30000, 30000), encode(noise_rgb(64, 64), "JPEG")[:300]]:
        with pytest.raises(ValueError):
            load_image(bad)
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


# --- conversions --------------------------------------------------------------------------------------


def test_rgba_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    out = load_image(encode(rgba))
    assert pixel(out, (0, 0)) == (255, 255, 255)
    assert pixel(out, (1, 0)) == (255, 0, 0)
    assert all(abs(c - 127) <= 1 for c in pixel(out, (2, 0)))  # half black over white


def test_gray_alpha_composited_on_white():
    la = Image.new("LA", (16, 16), (0, 0))
    assert pixel(load_image(encode(la))) == (255, 255, 255)


def test_palette_pixels_take_palette_colours():
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 12, 200, 99] + [0] * (3 * 254))
    image.putpixel((3, 3), 0)
    out = load_image(encode(image))
    assert pixel(out, (0, 0)) == (12, 200, 99)
    assert pixel(out, (3, 3)) == (0, 0, 0)


def test_palette_transparency_becomes_white():
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 12, 200, 99] + [0] * (3 * 254))
    out = load_image(encode(image, transparency=1))
    assert pixel(out) == (255, 255, 255)


def test_gif_first_frame():
    frames = [Image.new("P", (16, 16), i) for i in range(2)]
    for frame in frames:
        frame.putpalette([255, 0, 0, 0, 0, 255] + [0] * (3 * 254))
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert pixel(load_image(data)) == (255, 0, 0)


def test_cmyk():
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    cmyk.putpixel((1, 1), (255, 0, 0, 0))
    out = load_image(encode(cmyk, "TIFF"))
    assert pixel(out, (0, 0)) == (255, 255, 255)
    assert pixel(out, (1, 1)) == (0, 255, 255)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("1", 1, 255), ("1", 0, 0)])
def test_grayscale_to_rgb(mode, value, expected):
    out = load_image(encode(Image.new(mode, (16, 16), value)))
    assert out.size == (16, 16)
    assert pixel(out) == (expected,) * 3


def test_sixteen_bit_grayscale_scaled_to_eight():
    values = np.array([[0, 257, 32896, 65535] * 4] * 16, dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    out = np.asarray(load_image(encode(image)))
    assert out.shape == (16, 16, 3)
    assert out[0, :4, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_large_sixteen_bit_png_converts_in_integers_with_a_small_peak():
    """A 4-Mpx 16-bit PNG (about 50 KB): the conversion used to make float64 copies (8 bytes a pixel
    each, 800 MB for a 6300×6300 upload). Now numpy holds the 8-bit result (1 byte a pixel) and one band
    of rows; PIL's own buffers are not traced. Values are checked against round(v / 257)."""
    side = 2000
    values = (np.arange(side * side, dtype=np.uint32) * 7 % 65536).astype(np.uint16).reshape(side, side)
    data = encode(Image.fromarray(values))
    tracemalloc.start()
    try:
        out = load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * side * side, f"peak {peak / 2**20:.1f} MiB"
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert np.array_equal(np.asarray(out)[..., 1], expected)


def test_thirty_two_bit_integer_image_is_clipped_then_scaled():
    values = np.array([[-5, 0, 128, 129, 65535, 70000, 385, 386] * 2] * 16, dtype=np.int32)
    out = np.asarray(images.to_rgb(Image.fromarray(values, "I")))
    assert out[0, :8, 0].tolist() == [0, 0, 0, 1, 255, 255, 1, 2]


def test_exif_orientation_applied():
    """Orientation 6 (rotate 90 degrees clockwise to display): a 2x3 image becomes 3x2 and its top-left
    pixel moves to the top-right. Scaled up to MIN_SIDE blocks so the image passes the size check."""
    small = Image.new("RGB", (2, 3), (0, 0, 0))
    small.putpixel((0, 0), (255, 0, 0))
    image = small.resize((2 * MIN_SIDE, 3 * MIN_SIDE), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = load_image(encode(image, exif=exif.tobytes()))
    assert out.size == (3 * MIN_SIDE, 2 * MIN_SIDE)
    small_out = out.resize((3, 2), Image.Resampling.NEAREST)
    assert pixel(small_out, (2, 0)) == (255, 0, 0)
    assert pixel(small_out, (0, 0)) == (0, 0, 0)


def test_sources_path_str_bytes_bytearray_memoryview(tmp_path):
    image = noise_rgb()
    data = encode(image)
    path = tmp_path / "noise.png"
    path.write_bytes(data)
    expected = np.asarray(image)
    for source in [path, str(path), data, bytearray(data), memoryview(data)]:
        out = load_image(source)
        assert out.mode == "RGB"
        assert np.array_equal(np.asarray(out), expected)


def test_pil_input_is_not_modified():
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    out = load_image(rgba)
    assert out is not rgba
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (0, 0, 0, 0)
    assert pixel(out) == (255, 255, 255)


def test_pil_input_size_checked():
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} px"):
        load_image(Image.new("RGB", (1, 1)))


# --- samples ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size", [("chelsea", (451, 300)), ("coffee", (600, 400)), ("rocket", (640, 427)), ("astronaut", (512, 512))]
)
def test_sample_images(name, size):
    image = sample_image(name)
    assert image.mode == "RGB" and image.size == size


def test_sample_image_names():
    assert SAMPLE_IMAGES == ("chelsea", "coffee", "rocket", "astronaut")
    with pytest.raises(ValueError, match="unknown sample image 'camera'; choose one of"):
        sample_image("camera")
    with pytest.raises(TypeError, match="name must be a str"):
        sample_image(0)


# --- properties ---------------------------------------------------------------------------------------

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF"]
VALID = [encode(noise_rgb(16, 12), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


def load_or_value_error(data: bytes) -> None:
    try:
        out = load_image(data)
    except ValueError:
        return
    assert out.mode == "RGB" and min(out.size) >= MIN_SIDE


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt EXIF it skips
@settings(max_examples=150, deadline=None)
@given(st.sampled_from(MAGIC), st.binary(max_size=1024))
def test_random_bytes_only_raise_value_error(magic, tail):
    load_or_value_error(magic + tail)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_corrupted_images_only_raise_value_error(valid, data):
    start = data.draw(st.integers(0, len(valid) - 1))
    patch = data.draw(st.binary(min_size=1, max_size=16))
    cut = data.draw(st.integers(start, len(valid)))
    load_or_value_error(valid[:start] + patch + valid[start + len(patch) : cut])


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(MIN_SIDE, 24), st.integers(MIN_SIDE, 24), st.sampled_from([1, 3]))))
def test_valid_images_round_trip_through_png(array):
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    out = np.asarray(load_image(encode(image)))
    assert np.array_equal(out, np.broadcast_to(array, out.shape))
