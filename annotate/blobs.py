"""Image files of the queue: content hashing and storage under <data>/images/<sha[:2]>/.

A file is stored under its own sha256, so storing the same photo twice is a no-op and a stored
file can always be checked against its name. Files are kept as received (the export re-encodes
them without metadata); `model.images.load_image` vets every one before it is kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from annotate.errors import InvalidInput

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_identity(url: str) -> str:
    """Identity of an image known only by its URL (the file was never fetched)."""
    return hashlib.sha256(b"url:" + url.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PreparedImage:
    sha256: str
    data: bytes
    ext: str
    width: int
    height: int


def prepare_image(source, limits=None) -> PreparedImage:
    """Vet an image (PIL image, bytes or path) and compute its identity.

    Bytes and files are hashed as they are; a PIL image is hashed as its metadata-free PNG.
    Raises `model.images.ImageError` (user-facing) for anything that is not a usable image.
    """
    from model.images import ImageLimits, image_to_bytes, load_image

    limits = limits or ImageLimits()
    if isinstance(source, PreparedImage):
        return source
    if isinstance(source, Image.Image):
        data = image_to_bytes(load_image(source, limits), "PNG")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = read_image_file(Path(source), limits.max_bytes)
    else:
        raise InvalidInput(f"cannot queue a {type(source).__name__}: give a photo, bytes or a path")
    img = load_image(data, limits)
    with Image.open(io.BytesIO(data)) as header:  # header only: the format for the extension
        ext = _EXTENSIONS.get(header.format or "", "img")
    return PreparedImage(sha256_bytes(data), data, ext, img.width, img.height)


def read_image_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The file's bytes, refusing missing, folder and oversized paths with the gate's message."""
    from model.images import ImageLimits, load_image

    max_bytes = max_bytes or ImageLimits().max_bytes
    if not path.is_file() or path.stat().st_size > max_bytes:
        load_image(path)  # raises the gate's own clear message (missing, folder, too large)
    return path.read_bytes()


class ImageFiles:
    """Stored image files, addressed by paths relative to the data folder."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def relative_path(self, sha256: str, ext: str) -> str:
        return f"images/{sha256[:2]}/{sha256}.{ext}"

    def absolute(self, relative: str | None) -> Path | None:
        return self.data_dir / relative if relative else None

    def store(self, image: PreparedImage) -> str:
        """Write the file (atomically; skipped when already there) and return its path."""
        relative = self.relative_path(image.sha256, image.ext)
        target = self.data_dir / relative
        if target.exists():
            return relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(image.data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative
