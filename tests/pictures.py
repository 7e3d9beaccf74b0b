"""Pictures made for tests (Pillow): a flyer-like JPEG or PNG of a chosen size, optionally with EXIF metadata."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def picture(width: int = 600, height: int = 848, *, fmt: str = "JPEG", exif: Image.Exif | None = None,
            transparent: bool = False) -> bytes:
    """A ``width`` × ``height`` picture in ``fmt`` (Pillow format name) with coloured bands (so resizing and
    re-encoding show), an ``exif`` block when given, an alpha channel when ``transparent`` (PNG)."""
    mode = "RGBA" if transparent else "RGB"
    image = Image.new(mode, (width, height), (250, 245, 230, 0) if transparent else (250, 245, 230))
    draw = ImageDraw.Draw(image)
    for band in range(0, height, max(1, height // 8)):
        draw.rectangle((0, band, width, band + max(1, height // 16)), fill=(200, 40 + band % 200, 60, 255))
    out = io.BytesIO()
    options: dict[str, object] = {"exif": exif} if exif is not None else {}
    image.save(out, fmt, **options)
    return out.getvalue()


def gps_exif(orientation: int = 1) -> Image.Exif:
    """EXIF with a GPS position (Tokyo Station) and a camera model, and ``orientation`` (1 = upright, 6 = rotated)."""
    exif = Image.Exif()
    exif[0x0110] = "otayori-test-camera"  # Model
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (35.0, 40.0, 52.0)
    gps[3], gps[4] = "E", (139.0, 46.0, 1.0)
    return exif


def size_of(data: bytes) -> tuple[str, int, int]:
    """Format, width and height of a picture."""
    with Image.open(io.BytesIO(data)) as image:
        return image.format or "", image.width, image.height


def exif_of(data: bytes) -> dict[int, object]:
    """The EXIF tags of a picture (empty when it has none), GPS directory included under 0x8825."""
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        tags = dict(exif)
        gps = exif.get_ifd(0x8825)
        if gps:
            tags[0x8825] = dict(gps)
        return tags
