"""Loading and checking images (paths, uploaded bytes, PIL images) and the bundled sample photos.

Every image comes back as an 8-bit RGB `PIL.Image.Image`, upright (EXIF orientation applied), with
transparency composited on white. Untrusted input is checked before it is decoded: the byte size, the
format (a short list of common raster formats; no EPS, which would run Ghostscript) and the pixel count
from the header. PIL's global settings are never changed.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_BYTES = 20 * 1024 * 1024  # an upload larger than this is refused unread
MAX_PIXELS = 40_000_000  # width * height from the header; refused before decoding (decompression bombs)
MIN_SIDE = 8  # px; smaller images carry no content a 224-px CNN can explain
MAX_ASPECT = 50  # long side / short side; beyond this, resizing the short side to 256 px explodes the long one
FORMATS = ("BMP", "GIF", "JPEG", "PNG", "PPM", "TIFF", "WEBP")  # JPEG includes multi-picture (MPO)
SAMPLE_IMAGES = ("chelsea", "coffee", "rocket", "astronaut")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

_WHITE = (255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_BAND_PIXELS = 1 << 18  # 16-bit images are converted a band of rows of about this many pixels at a time


def sample_image(name: str) -> Image.Image:
    """One of `SAMPLE_IMAGES`, the photos bundled with scikit-image (`skimage.data`), as RGB."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {SAMPLE_IMAGES}; got {type(name).__name__}")
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; choose one of {SAMPLE_IMAGES}")
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def load_image(source: ImageSource) -> Image.Image:
    """Load `source` (a file path, encoded image bytes, or a PIL image) as an upright 8-bit RGB image.

    Raises TypeError for another type, ValueError for anything that is not a usable image: empty, too many
    bytes or pixels, truncated or corrupt, an unsupported format or mode, too small or too elongated.
    """
    if isinstance(source, Image.Image):
        check_size(source.size)
        return _load_rgb(source, "image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), "image data")
    if isinstance(source, (str, os.PathLike)):
        return _decode(_read_file(Path(source)), f"image file {str(source)!r}")
    raise TypeError(
        f"source must be a path (str or pathlib.Path), encoded image bytes, or a PIL image; got {type(source).__name__}"
    )


def check_size(size: tuple[int, int], what: str = "image") -> None:
    """Refuse a (width, height) outside `MIN_SIDE`, `MAX_ASPECT` and `MAX_PIXELS`."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{MAX_PIXELS:,} (xcam_widgets.images.MAX_PIXELS); downscale it first"
        )
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"{what} is {width}x{height}; each side must be at least {MIN_SIDE} px")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ValueError(f"{what} is {width}x{height}, an aspect ratio beyond {MAX_ASPECT}:1; crop it first")


def to_rgb(image: Image.Image) -> Image.Image:
    """A new upright 8-bit RGB copy of a decoded image (the current frame): EXIF orientation applied,
    16-bit (and 32-bit integer, assumed 16-bit) scaled by v / 257 (65535 -> 255), transparency composited
    on white, palette / CMYK / grayscale / bilevel converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in _SIXTEEN_BIT:
        image = _sixteen_to_eight(image)
    elif image.mode == "F":
        raise ValueError("floating-point (mode 'F') images are not supported; convert to 8 or 16 bit first")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ValueError(f"cannot convert an image of mode {image.mode!r} to RGB: {err}") from err


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """Mode "L" with round(v / 257) of each value v clipped to [0, 65535], computed exactly in integers
    as (v + 128) // 257 (v / 257 is never a tie). Bands of rows keep the memory beyond the 8-bit
    result to about 16 bytes × `_BAND_PIXELS` (a float64 copy of a 40-Mpx upload was 320 MB)."""
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        band = np.asarray(image.crop((0, top, width, bottom))).astype(np.int32)
        out[top:bottom] = (band.clip(0, 65535) + 128) // 257
    return Image.fromarray(out)


def _read_file(path: Path) -> bytes:
    """The file's bytes, after checking that it exists and is at most `MAX_BYTES` long."""
    if not path.is_file():
        raise ValueError(f"image file {str(path)!r} does not exist or is not a file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(_too_many_bytes(size, f"image file {str(path)!r}"))
    return path.read_bytes()


def _too_many_bytes(size: int, what: str) -> str:
    return f"{what} is {size:,} bytes, more than the limit of {MAX_BYTES:,} (xcam_widgets.images.MAX_BYTES)"


def _decode(data: bytes, what: str) -> Image.Image:
    """Decode untrusted bytes. Only the header is read before `check_size`; the pixels after it."""
    if not data:
        raise ValueError(f"{what} is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ValueError(_too_many_bytes(len(data), what))
    with warnings.catch_warnings():
        # PIL warns above its own limit (about 89 Mpx); ours is lower and is checked just below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as err:
            raise ValueError(f"{what} has too many pixels: {err}") from err
        except Image.UnidentifiedImageError as err:
            raise ValueError(f"{what} is not an image in a supported format {FORMATS}") from err
        except Exception as err:  # a malformed header can raise almost anything inside PIL's plugins
            raise ValueError(f"{what} has a corrupt header: {err}") from err
    with image:
        check_size(image.size, what)
        return _load_rgb(image, what)


def _load_rgb(image: Image.Image, what: str) -> Image.Image:
    """Decode the pixels (PIL opens lazily) and convert them with `to_rgb`."""
    try:
        image.load()
    except Exception as err:  # truncated or corrupt pixel data, whichever plugin raises it
        raise ValueError(f"{what} is truncated or corrupt ({image.format or image.mode}): {err}") from err
    try:
        return to_rgb(image)
    except ValueError:
        raise
    except Exception as err:  # e.g. a corrupt EXIF block read by exif_transpose
        raise ValueError(f"{what} has corrupt metadata: {err}") from err
