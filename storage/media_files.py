"""Issue pictures on disk: decoding with Pillow, the published original without location metadata, a small preview,
and files named by content hash under the media directory.

The rules (which formats, what sizes, what each platform accepts) are :mod:`core.media`'s; this module only does the
pixel and file work it asks for, and imports neither core nor bots.

Files: ``<sha256>.jpg`` or ``<sha256>.png`` (the original, as published) and ``<sha256>-preview.jpg`` (the preview),
flat in one directory; ``sha256`` is the hex SHA-256 of the original's bytes as stored, so a name never changes
meaning and two issues with the same picture share its files. Writes go to a temporary file that is renamed into
place (``os.replace``), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

#: Pillow format names of the pictures an issue may carry, and the file suffix each is stored under.
SUFFIXES = {"JPEG": "jpg", "PNG": "png"}
PREVIEW_SUFFIX = "-preview.jpg"
#: What a stored file name looks like: the hash, then the original's suffix or the preview's.
FILE_NAME = re.compile(r"(?P<sha256>[0-9a-f]{64})(?P<kind>\.jpg|\.png|-preview\.jpg)")
# Metadata keys (Pillow's ``Image.info``) that can say where and when a photo was taken: EXIF (GPS, camera, time),
# XMP. The original is published at a public URL, so they are removed before it is stored.
_PRIVATE_INFO = ("exif", "xmp", "XML:com.adobe.xmp")
_ORIENTATION_TAG = 0x0112


class UnreadableImage(ValueError):
    """The bytes are not a picture Pillow can read (not an image, truncated, or a decompression bomb)."""


@dataclass(frozen=True)
class ImageFacts:
    """What the header of a picture says: Pillow's ``format`` name (``JPEG``, ``PNG``, ``GIF`` …) and the size in
    pixels. Read without decoding the pixels."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class PreparedImage:
    """A picture ready to store: ``original`` (the bytes to publish; the input itself unless it carried location
    metadata or an EXIF rotation, then re-encoded without them), its ``sha256`` (hex), ``format``, size in pixels
    as shown (rotation applied), and ``preview`` (a JPEG)."""

    original: bytes
    sha256: str
    format: str
    width: int
    height: int
    preview: bytes


def inspect_image(data: bytes) -> ImageFacts:
    """The format and size of ``data`` from its header (the pixels are not decoded). Raises
    :class:`UnreadableImage` when Pillow does not recognise it."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only: no pixels decoded, no bomb set off
            return ImageFacts(image.format or "", image.width, image.height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"not a readable image: {type(exc).__name__}") from exc


def prepare_image(data: bytes, *, preview_side: int, preview_quality: int) -> PreparedImage:
    """Decode ``data`` fully (a truncated or corrupt file fails here), drop location metadata, make the preview.

    The original is kept byte for byte unless it carries EXIF or XMP metadata (GPS position, camera, time) or an
    EXIF orientation: then it is re-encoded in its own format with the rotation applied and without that metadata
    (JPEG at quality 95; the colour profile is kept). ``preview_side``: the preview's longest side in pixels (it is
    never enlarged); ``preview_quality``: its JPEG quality (1-95). Transparent areas of the preview become white.
    Raises :class:`UnreadableImage`.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            source_format = image.format or ""
            private = any(key in image.info for key in _PRIVATE_INFO)
            rotated = image.getexif().get(_ORIENTATION_TAG, 1) not in (None, 1)
            shown = ImageOps.exif_transpose(image) if rotated else image.copy()
            icc_profile = image.info.get("icc_profile")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"not a readable image: {type(exc).__name__}") from exc
    original = _encode(shown, source_format, icc_profile) if (private or rotated) else data
    return PreparedImage(
        original=original,
        sha256=hashlib.sha256(original).hexdigest(),
        format=source_format,
        width=shown.width,
        height=shown.height,
        preview=_preview(shown, preview_side, preview_quality),
    )


def _encode(image: Image.Image, image_format: str, icc_profile: bytes | None) -> bytes:
    out = io.BytesIO()
    options: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if image_format == "JPEG":
        image.convert("RGB" if image.mode not in ("RGB", "L", "CMYK") else image.mode).save(
            out, "JPEG", quality=95, **options)
    else:
        image.save(out, image_format, **options)
    return out.getvalue()


def _preview(image: Image.Image, side: int, quality: int) -> bytes:
    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    if small.mode in ("RGBA", "LA", "P"):
        rgba = small.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        small = background
    elif small.mode != "RGB":
        small = small.convert("RGB")
    out = io.BytesIO()
    small.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


class MediaFiles:
    """The media directory: stored pictures by name (see the module docstring). ``directory`` is created on the first
    write; reading never creates it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def original_name(sha256: str, image_format: str) -> str:
        """``<sha256>.jpg`` / ``<sha256>.png`` for a ``JPEG`` / ``PNG`` original (``KeyError`` for other formats)."""
        return f"{sha256}.{SUFFIXES[image_format]}"

    @staticmethod
    def preview_name(sha256: str) -> str:
        return f"{sha256}{PREVIEW_SUFFIX}"

    def path(self, name: str) -> Path | None:
        """The file for a stored ``name``, or None when ``name`` is not a media file name (so ``../x``, ``a/b`` or
        any other text can never reach outside the directory) or no such file exists."""
        if not FILE_NAME.fullmatch(name):
            return None
        candidate = self.directory / name
        return candidate if candidate.is_file() else None

    def write(self, name: str, data: bytes) -> Path:
        """Store ``data`` as ``name`` (atomically; an existing file of that name is left alone: same name, same
        bytes). Raises ``ValueError`` for a name that is not a media file name, ``OSError`` from the file system."""
        if not FILE_NAME.fullmatch(name):
            raise ValueError(f"not a media file name: {name!r}")
        target = self.directory / name
        if target.is_file() and target.stat().st_size == len(data):
            return target
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return target

