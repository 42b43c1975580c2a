"""The image gate: every image the product accepts goes through `load_image`.

Uploads, CLI paths and imported queue items are untrusted. `load_image` turns them into a
fresh RGB image with no metadata, or raises `ImageError` with one short sentence a user can
act on (the file name and what is wrong with the file). No raw Pillow error gets through.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import warnings
import os
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Union

from PIL import Image, ImageOps


class ImageError(ValueError):
    """An input that is not a usable image."""

    user_facing = True  # the message is shown to users as is


@dataclass(frozen=True)
class ImageLimits:
    """Size limits for one image; the defaults suit photos from phones and cameras."""

    # Refuse files larger than this many bytes (checked before the file is read).
    max_bytes: int = 50 * 2**20
    # Refuse images with more pixels than this, read from the header before decoding: a few KB
    # of PNG can claim gigabytes of pixels (a decompression bomb). Pillow's own
    # Image.MAX_IMAGE_PIXELS (~89M) caps it as well: above that Pillow only warns, we refuse.
    max_pixels: int = 64_000_000
    # If set, downscale (keeping the aspect ratio) so the longest side is at most this.
    max_side: int | None = None

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, 1 if self.max_side is None else self.max_side) < 1:
            raise ValueError(f"image limits must be positive: {self}")


Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Image.Image]

_UNNAMED = "the file"
_SUPPORTED = "JPEG, PNG, WebP, GIF..."
# Leading bytes of formats Pillow reads: if Pillow cannot identify such a file, it is damaged.
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")


def load_image(source: Source, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Turn an untrusted image into a fresh RGB image, or raise `ImageError` saying why not.

    `source` is a path, the file's bytes, a binary file object or a PIL image (left
    untouched). EXIF orientation is applied, alpha is composited on white, animated images
    give their first frame, and the result carries no metadata (`img.info` is empty).
    """
    if isinstance(source, Image.Image):
        name = _basename(getattr(source, "filename", None)) or "the image"
        return _clean(source, name, limits)
    name, data = _read(source, limits)
    with _decoding(name, limits):
        try:
            opened = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, MemoryError):
            raise
        except Exception as exc:  # not even the header could be read: say what the file is
            raise ImageError(_why_unreadable(name, data)) from exc
    with opened:
        _check_pixels(name, opened.size, limits)
        if limits.max_side:  # JPEG can decode at 1/2..1/8 scale; thumbnail() finishes the job
            opened.draft(None, (limits.max_side, limits.max_side))
        return _clean(opened, name, limits, owned=True)


def image_to_bytes(img: Image.Image, format: str = "PNG", quality: int = 95) -> bytes:
    """Encode `img` as PNG, JPEG or WebP with no metadata at all (no EXIF, GPS, ICC, text)."""
    fmt = {"JPG": "JPEG"}.get(format.upper(), format.upper())
    if fmt not in ("PNG", "JPEG", "WEBP"):
        raise ValueError(f"cannot encode images as {format!r}; use PNG, JPEG or WEBP")
    # Re-clean even an already clean image: it is cheap next to encoding, and it makes
    # "metadata-free" true for any image passed in (orientation is applied, not dropped).
    clean = _clean(img, "the image", ImageLimits(max_pixels=2**62))
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    clean.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _read(source: Source, limits: ImageLimits) -> tuple[str, bytes]:
    """The file's name for messages and its bytes, refusing empty and oversized files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = _UNNAMED, bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        name = _basename(source) or _UNNAMED
        data = _read_path(source, name, limits)
    elif hasattr(source, "read"):
        name = _basename(getattr(source, "name", None)) or _UNNAMED
        data = source.read(limits.max_bytes + 1)  # +1: tells "at the limit" from "over it"
        if not isinstance(data, bytes):
            raise TypeError("load_image needs a file opened in binary mode ('rb')")
    else:
        raise TypeError(f"load_image cannot read a {type(source).__name__}")
    _check_bytes(name, len(data), limits)
    return name, data


def _read_path(path: str | os.PathLike[str], name: str, limits: ImageLimits) -> bytes:
    try:
        with open(path, "rb") as file:
            # Check the size on disk first, so a huge file is never read into memory.
            _check_bytes(name, os.fstat(file.fileno()).st_size, limits)
            return file.read(limits.max_bytes + 1)
    except FileNotFoundError as exc:
        raise ImageError(f"{name} does not exist") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name} is a folder, not an image") from exc
    except OSError as exc:
        raise ImageError(f"{name} cannot be read ({exc.strerror or exc})") from exc


def _clean(img: Image.Image, name: str, limits: ImageLimits, owned: bool = False) -> Image.Image:
    """Decode, orient, convert to RGB on a fresh image, and downscale if asked.

    `owned`: `img` was opened here, so it may be rotated in place (saves a full copy).
    """
    _check_pixels(name, img.size, limits)
    with _decoding(name, limits):
        img.load()  # the first frame only: Image.open leaves an animation at frame 0
        _check_pixels(name, img.size, limits)  # ICO and GIF learn their size while decoding
        if owned:
            ImageOps.exif_transpose(img, in_place=True)
        else:  # a transposed copy: the caller's image is left as it was
            img = ImageOps.exif_transpose(img)
    try:
        out = _to_rgb(img)
    except ValueError as exc:  # e.g. LAB, which Pillow cannot convert without a profile
        raise ImageError(f"{name} uses a colour mode ({img.mode}) that is not supported") from exc
    if limits.max_side:
        out.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return out


def _to_rgb(img: Image.Image) -> Image.Image:
    """A new RGB image (empty `info`: no EXIF, GPS, ICC or comments); alpha goes on white."""
    if img.mode == "I" or img.mode.startswith("I;16"):
        # 16-bit greyscale: scale 0..65535 to 0..255 (a plain convert would clip it to white).
        img = img.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    alpha = None
    if img.has_transparency_data:  # RGBA, LA, palette or greyscale with a transparent colour
        img = img.convert("RGBA")
        alpha = img.getchannel("A")
    out = Image.new("RGB", img.size, "white")
    out.paste(img if img.mode == "RGB" else img.convert("RGB"), mask=alpha)
    return out


@contextlib.contextmanager
def _decoding(name: str, limits: ImageLimits) -> Iterator[None]:
    """Turn whatever Pillow raises on a malformed file into one clear `ImageError`."""
    try:
        yield
    except (ImageError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:  # far above our limit: Pillow refused first
        raise ImageError(
            f"{name} is larger than the {_pixel_limit(limits):,}-pixel limit"
        ) from exc
    except Exception as exc:  # plugins raise OSError, SyntaxError, struct.error, IndexError...
        raise ImageError(f"{name} is truncated or corrupt") from exc


# Pillow warns (DecompressionBombWarning) when a header claims more than MAX_IMAGE_PIXELS; the
# gate refuses such images itself with a clear message (below), so the warning would only leak
# into logs and the CLI's output. One filter, set once for the process (per-call
# `catch_warnings` is not thread-safe).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _pixel_limit(limits: ImageLimits) -> int:
    # Above Pillow's MAX_IMAGE_PIXELS it only warns (DecompressionBombWarning); treat that as
    # an error, without changing the global setting or the process's warning filters (which
    # are shared by every thread, so a per-call `catch_warnings` would not be thread-safe).
    return min(limits.max_pixels, Image.MAX_IMAGE_PIXELS or limits.max_pixels)


def _check_pixels(name: str, size: tuple[int, int], limits: ImageLimits) -> None:
    limit = _pixel_limit(limits)
    width, height = size
    if width * height > limit:
        raise ImageError(f"{name} is {width}x{height} pixels, more than the {limit:,}-pixel limit")


def _check_bytes(name: str, size: int, limits: ImageLimits) -> None:
    if size == 0:
        raise ImageError(f"{name} is empty")
    if size > limits.max_bytes:
        raise ImageError(f"{name} is larger than the {_size_text(limits.max_bytes)} limit")


def _why_unreadable(name: str, data: bytes) -> str:
    """Why Pillow could not identify `data`, in words a user understands."""
    head = data[:4096]
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return f"{name} is a HEIC photo, which cannot be read here; convert it to JPEG or PNG"
    if _looks_like_text(head):
        lower = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if b"<svg" in lower:
            return f"{name} is an SVG drawing; upload a photo ({_SUPPORTED})"
        if lower.startswith((b"<!doctype html", b"<html")):
            return f"{name} is not an image (it looks like a web page)"
        return f"{name} is not an image (it looks like text)"
    if head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return f"{name} is truncated or corrupt"
    return f"{name} is not an image in a supported format ({_SUPPORTED})"


def _looks_like_text(head: bytes) -> bool:
    try:  # an incremental decoder accepts a character cut in half at the end of `head`
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        return False
    return not any(char < " " and char not in "\t\n\r\f" for char in text)


def _basename(path: object) -> str:
    if isinstance(path, (str, bytes, os.PathLike)) and os.fspath(path):
        return os.path.basename(os.fsdecode(path)) or os.fsdecode(path)
    return ""


def _size_text(size: int) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
