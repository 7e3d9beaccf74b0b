"""What the Telegram emulator does with photos: the checks ``sendPhoto`` makes on an upload, the ``PhotoSize`` list
it answers, and the ``file_id`` s that let a bot send the same photo again without uploading it.

Rules (https://core.telegram.org/bots/api#sendphoto): "The photo must be at most 10 MB in size. The photo's width
and height must not exceed 10000 in total. Width and height ratio must be at most 20." A ``photo`` string is a
``file_id`` of an earlier upload ("recommended") or an HTTP URL Telegram downloads (the emulator downloads nothing: it
records the URL). Error wording as the real server answers where seen (``IMAGE_PROCESS_FAILED``,
``PHOTO_INVALID_DIMENSIONS``, ``wrong file identifier/HTTP URL specified``); the over-10-MB wording is the emulator's
own: branch on the status, never on the text.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, UnidentifiedImageError

from bots.sandbox.telegram_records import UploadedFile
from bots.sandbox.telegram_wire import ApiError

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_SIDES_SUM = 10_000
MAX_SIDE_RATIO = 20
#: Longest sides of the sizes Telegram keeps of a photo (a thumbnail, then the photo scaled to at most 1280 px).
_SIZES = (("s", 90), ("y", 1280))


class PhotoStore:
    """Uploaded photos by ``file_id``, with the sizes each was answered with."""

    def __init__(self) -> None:
        self._by_file_id: dict[str, UploadedFile] = {}
        self._sizes: dict[str, list[dict]] = {}  # sha256 of the upload -> its PhotoSize list

    def accept_upload(self, photo: UploadedFile) -> None:
        """Check an uploaded photo like the Bot API; raise :class:`ApiError` (400) when it would refuse it."""
        if not photo.data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        if len(photo.data) > MAX_PHOTO_BYTES:
            raise ApiError(400, "Bad Request: photo is too big (at most 10 MB)")
        try:
            with Image.open(io.BytesIO(photo.data)) as image:
                image.load()
                width, height = image.size
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        short, long = sorted((width, height))
        if short < 1 or width + height > MAX_SIDES_SUM or long > short * MAX_SIDE_RATIO:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        digest = hashlib.sha256(photo.data).hexdigest()
        sizes = []
        for tag, side in _SIZES:
            scale = min(1.0, side / long)
            sizes.append({"file_id": f"AgAC{digest[:40]}-{tag}", "file_unique_id": f"AQAD{digest[:12]}{tag}",
                          "width": max(1, round(width * scale)), "height": max(1, round(height * scale)),
                          "file_size": len(photo.data) if scale == 1.0 else max(1, round(len(photo.data) * scale))})
            self._by_file_id[sizes[-1]["file_id"]] = photo
        self._sizes[digest] = sizes

    def resolve(self, photo: str) -> UploadedFile | str:
        """A ``photo`` string: the upload a ``file_id`` names, or an http(s) URL as given. Raises
        :class:`ApiError` (400) for anything else."""
        if photo in self._by_file_id:
            return self._by_file_id[photo]
        if photo.startswith(("http://", "https://")):
            return photo
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def sizes(self, photo: UploadedFile | str) -> list[dict]:
        """The ``PhotoSize`` list of a message's photo (for a URL, made-up sizes: nothing was downloaded)."""
        data = photo.data if isinstance(photo, UploadedFile) else photo.encode()
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._sizes:
            return self._sizes[digest]
        return [
            {"file_id": f"AgAC{digest[:40]}-s", "file_unique_id": f"AQAD{digest[:12]}s", "width": 90, "height": 90,
             "file_size": min(len(data), 1_000)},
            {"file_id": f"AgAC{digest[:40]}-m", "file_unique_id": f"AQAD{digest[:12]}m", "width": 800,
             "height": 800, "file_size": len(data)},
        ]
