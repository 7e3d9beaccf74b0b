"""Photo issues: the rules a picture must meet to travel on every channel, attaching it to a draft, and the
:class:`ImageRef` the senders get (issue 5 item 2: "a photo with a caption (an event flyer) is an issue too").

One picture per issue. It must suit all three channels at once, because an issue is written once and sent everywhere:

* JPEG or PNG only: LINE image messages accept nothing else (originalContentUrl and previewImageUrl: "JPEG or PNG",
  https://developers.line.biz/en/reference/messaging-api/#image-message);
* at most :data:`MAX_IMAGE_BYTES` (10 MB): LINE's originalContentUrl limit and Telegram's sendPhoto limit ("The photo
  must be at most 10 MB in size", https://core.telegram.org/bots/api#sendphoto);
* width + height at most :data:`MAX_SIDES_SUM` (10,000) and a side ratio at most :data:`MAX_SIDE_RATIO` (20):
  Telegram sendPhoto ("The photo's width and height must not exceed 10000 in total. Width and height ratio must be at
  most 20");
* the preview LINE shows in the chat bubble (previewImageUrl, at most 1 MB) is made here: a JPEG whose longest side
  is :data:`PREVIEW_SIDE` pixels;
* LINE fetches both URLs itself, from ``OTAYORI_PUBLIC_URL`` + ``/media/…``, and only over HTTPS (URLs at most
  2,000 characters). An issue with a picture that names LINE among its channels is therefore refused *before it is
  sent* when the public URL is not ``https://`` (:func:`check_image_channels`): a photo issue that reached LINE
  readers as text only would differ silently from what the author previewed. The author may leave LINE out instead.

The original is published at a public URL, so location metadata (EXIF GPS, XMP) and EXIF rotation are removed before
it is stored (storage.media_files.prepare_image); otherwise its bytes are kept exactly. Files live in
``Settings.media_path()`` named by the SHA-256 of the stored original; ``media_image`` describes them and
``issue.image_sha256`` links an issue to its picture.

Refusals are :class:`MediaError` (a :class:`core.texts.ReasonError`: Japanese for the chat, English for the CLI).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core import admins
from core.admins import Actor
from core.issues import check_transition, load_issue
from core.settings import Settings
from core.texts import ReasonError
from storage.database import Database
from storage.media_files import MediaFiles, PreparedImage, UnreadableImage, inspect_image, prepare_image
from storage.models import Issue, IssueStatus, MediaImage
from storage.types import utcnow

#: Bytes of the original at most: LINE originalContentUrl (10 MB) and Telegram sendPhoto (10 MB).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Bytes of the preview at most: LINE previewImageUrl (1 MB).
MAX_PREVIEW_BYTES = 1024 * 1024
#: Telegram sendPhoto: width + height at most 10,000 pixels, and the longer side at most 20 times the shorter.
MAX_SIDES_SUM = 10_000
MAX_SIDE_RATIO = 20
#: The preview's longest side (pixels) and JPEG quality: sharp in a chat bubble on a phone, far below 1 MB (~50 KB).
PREVIEW_SIDE = 480
PREVIEW_QUALITY = 85
#: LINE: image URLs at most 2,000 characters, HTTPS only.
MAX_URL_LENGTH = 2000
#: MIME type of each stored format (Pillow's format names).
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


class MediaError(ReasonError):
    """A picture that cannot be an issue's, with the reason (keys ``image_unreadable``, ``image_wrong_format``,
    ``image_too_large``, ``image_bad_dimensions``, ``image_line_needs_https``, ``image_url_too_long``)."""


@dataclass(frozen=True)
class ImageRef:
    """An issue's picture as the senders need it (see :class:`core.channels.OutboundMessage`).

    ``sha256``: hex SHA-256 of the original's bytes (also the file name); ``content_type``: ``image/jpeg`` or
    ``image/png``; ``width``/``height``: pixels; ``size``: bytes of the original. ``url`` / ``preview_url``: where
    our web app serves the original and the preview JPEG (``OTAYORI_PUBLIC_URL/media/<sha256>.jpg|.png`` and
    ``…/media/<sha256>-preview.jpg``; LINE fetches them). ``path``: the original's file. :attr:`data` reads it once
    per ImageRef (the dispatcher keeps one ImageRef per issue, so a broadcast reads the file once).
    """

    sha256: str
    content_type: str
    width: int
    height: int
    size: int
    url: str
    preview_url: str
    path: Path

    @functools.cached_property
    def data(self) -> bytes:
        """The original's bytes (read from :attr:`path` on first use; ``OSError`` if the file is gone)."""
        return self.path.read_bytes()

    @property
    def filename(self) -> str:
        """A plain ASCII file name for uploads and MIME parts: ``flyer-<12 hex>.jpg`` / ``.png``."""
        return f"flyer-{self.sha256[:12]}.{'png' if self.content_type == 'image/png' else 'jpg'}"


def media_files(settings: Settings) -> MediaFiles:
    """The media directory of ``settings`` (``OTAYORI_MEDIA_DIR``, default ``media/`` beside the SQLite file)."""
    return MediaFiles(settings.media_path())


def too_large(size: int) -> MediaError:
    """The refusal of a picture of ``size`` bytes (over :data:`MAX_IMAGE_BYTES`), sizes shown in MB."""
    return MediaError("image_too_large", size_mb=f"{size / (1024 * 1024):.1f}",
                      limit_mb=f"{MAX_IMAGE_BYTES / (1024 * 1024):.1f}")


def check_image(data: bytes, content_type: str | None = None) -> PreparedImage:
    """Check ``data`` against the rules of this module and prepare it for storing (original without location
    metadata, preview). CPU work (decoding): call it in a worker thread from async code, as :func:`attach_image` does.

    ``content_type``: the MIME type the sender declared (a chat platform's or a file's), only used in the reason
    when the bytes are not a picture: the bytes decide. Raises :class:`MediaError`.
    """
    if len(data) > MAX_IMAGE_BYTES:
        # Checked before decoding: a file this large is refused without spending time on it.
        raise too_large(len(data))
    try:
        facts = inspect_image(data)
    except UnreadableImage:
        raise MediaError("image_unreadable", declared=content_type or "?") from None
    if facts.format not in CONTENT_TYPES:
        raise MediaError("image_wrong_format", format=facts.format or "?")
    _check_dimensions(facts.width, facts.height)
    try:
        prepared = prepare_image(data, preview_side=PREVIEW_SIDE, preview_quality=PREVIEW_QUALITY)
    except UnreadableImage:
        raise MediaError("image_unreadable", declared=content_type or "?") from None
    if len(prepared.original) > MAX_IMAGE_BYTES:  # re-encoded without its metadata and grew past the limit
        raise too_large(len(prepared.original))
    # A JPEG of PREVIEW_SIDE pixels is far below LINE's 1 MB; a failure here is a bug in the constants, not input.
    assert len(prepared.preview) <= MAX_PREVIEW_BYTES, "preview over LINE's 1 MB"
    return prepared


def _check_dimensions(width: int, height: int) -> None:
    short, long = sorted((width, height))
    if short < 1 or width + height > MAX_SIDES_SUM or long > short * MAX_SIDE_RATIO:
        raise MediaError("image_bad_dimensions", width=width, height=height, max_sum=MAX_SIDES_SUM,
                         max_ratio=MAX_SIDE_RATIO)


async def store_image(db: Database, settings: Settings, data: bytes, content_type: str | None = None) -> MediaImage:
    """Check ``data`` (:func:`check_image`, in a worker thread), write the original and the preview to the media
    directory and record them (``media_image``; the same picture twice is one row and one pair of files).
    Returns the row. Raises :class:`MediaError`, ``OSError`` when the files cannot be written."""
    prepared = await asyncio.to_thread(check_image, data, content_type)
    files = media_files(settings)
    await asyncio.to_thread(files.write, files.original_name(prepared.sha256, prepared.format), prepared.original)
    await asyncio.to_thread(files.write, files.preview_name(prepared.sha256), prepared.preview)
    async with db.write() as session:
        row = await session.get(MediaImage, prepared.sha256)
        if row is None:
            row = MediaImage(sha256=prepared.sha256, content_type=CONTENT_TYPES[prepared.format],
                             width=prepared.width, height=prepared.height, size=len(prepared.original),
                             preview_size=len(prepared.preview), created_at=utcnow())
            session.add(row)
        return row


async def attach_image(
    db: Database, settings: Settings, issue_id: int, data: bytes, content_type: str | None = None, *,
    actor: Actor | None = None, now: datetime | None = None,
) -> ImageRef:
    """Make ``data`` the picture of draft ``issue_id`` (replacing any picture it had): the entry point for the chat
    UI when an admin sends a photo while composing, and for ``otayori broadcast --image``.

    ``data``: the picture's bytes as received (JPEG or PNG); ``content_type``: the MIME type the sender declared
    (only for the reason when the bytes are not a picture). ``actor``: the admin, for the admin log (action
    ``draft.image``; the picture's hash and size, never its contents). The issue's title and body stay as they are:
    the caption is the issue's text.

    Returns the :class:`ImageRef` (URLs under ``OTAYORI_PUBLIC_URL``). Raises :class:`MediaError` (the reason: not a
    picture, not JPEG/PNG, over 10 MB, bad dimensions), :class:`core.issues.IssueNotFound`,
    :class:`core.issues.IssueStateError` when the issue is no longer a draft or scheduled issue, ``OSError`` when the
    media directory cannot be written. Whether LINE can carry it is checked when the issue is sent
    (:func:`check_image_channels`), since the channels may still change.
    """
    async with db.read() as session:
        _editable(await load_issue(session, issue_id))  # refuse before the work of decoding
    row = await store_image(db, settings, data, content_type)
    await set_issue_image(db, issue_id, row, actor=actor, now=now)
    return image_ref(settings, row)


async def set_issue_image(db: Database, issue_id: int, row: MediaImage | None, *, actor: Actor | None = None,
                          now: datetime | None = None) -> None:
    """Link draft (or scheduled issue) ``issue_id`` to a picture stored by :func:`store_image`, or remove its
    picture with ``row`` None (the files stay: other issues may share them). ``actor``: logged as ``draft.image``.
    Raises :class:`core.issues.IssueNotFound`, :class:`core.issues.IssueStateError` (no longer editable)."""
    async with db.write() as session:
        issue = await load_issue(session, issue_id, lock=True)
        _editable(issue)
        issue.image_sha256 = row.sha256 if row is not None else None
        session.add(issue)
        if actor is not None:
            details = {"sha256": row.sha256, "bytes": row.size} if row is not None else {"sha256": None}
            await admins.record(session, actor, "draft.image", issue_id=issue_id, details=details, now=now)


def _editable(issue: Issue) -> None:
    if issue.status not in (IssueStatus.DRAFT.value, IssueStatus.SCHEDULED.value):
        check_transition(issue, IssueStatus.DRAFT.value, "edit")  # raises: not editable any more


def image_ref(settings: Settings, row: MediaImage) -> ImageRef:
    """The :class:`ImageRef` of a stored picture under ``settings`` (public URL and media directory)."""
    files = media_files(settings)
    name = files.original_name(row.sha256, "PNG" if row.content_type == "image/png" else "JPEG")
    base = f"{settings.public_url}/media"
    return ImageRef(sha256=row.sha256, content_type=row.content_type, width=row.width, height=row.height,
                    size=row.size, url=f"{base}/{name}", preview_url=f"{base}/{files.preview_name(row.sha256)}",
                    path=files.directory / name)


async def issue_image(db: Database, settings: Settings, issue: Issue) -> ImageRef | None:
    """The picture of ``issue`` (None for a text-only issue, or when its ``media_image`` row is missing)."""
    if not issue.image_sha256:
        return None
    async with db.read() as session:
        row = await session.get(MediaImage, issue.image_sha256)
    return image_ref(settings, row) if row is not None else None


def line_image_problem(image: ImageRef) -> MediaError | None:
    """Why LINE would refuse ``image``'s URLs (it fetches them itself, over HTTPS only, URLs of at most 2,000
    characters: reference/line.md), or None. The reason names OTAYORI_PUBLIC_URL, where the URLs come from."""
    if not (image.url.startswith("https://") and image.preview_url.startswith("https://")):
        base = image.url.split("/media/", 1)[0]
        return MediaError("image_line_needs_https", public_url=base)
    longest = max(len(image.url), len(image.preview_url))
    if longest > MAX_URL_LENGTH:
        return MediaError("image_url_too_long", length=longest, limit=MAX_URL_LENGTH)
    return None


def check_image_channels(image: ImageRef | None, channels: Iterable[str]) -> None:
    """Refuse to send a picture where it cannot arrive: LINE among ``channels`` needs ``https://`` image URLs
    (:func:`line_image_problem`). Call it before enqueueing (send now, schedule, test send) and in the preview;
    nothing to check without an image. Raises :class:`MediaError` (``image_line_needs_https``,
    ``image_url_too_long``)."""
    if image is None or "line" not in channels:
        return
    problem = line_image_problem(image)
    if problem is not None:
        raise problem
