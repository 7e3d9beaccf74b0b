"""Photo issues below the chat UI (issue 5 item 2): the picture rules of core.media, location metadata removed,
the preview LINE shows, attaching to a draft (real SQLite file, real media directory), the media files' names,
the LINE https rule, and a caption cut at Telegram's 1,024 characters."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlmodel import select

from core import render
from core.admins import Actor
from core.broadcast import IssueDraft, create_issue
from core.issues import IssueStateError, cancel_issue
from core.media import (
    MAX_IMAGE_BYTES,
    PREVIEW_SIDE,
    MediaError,
    attach_image,
    check_image,
    check_image_channels,
    issue_image,
    media_files,
)
from storage.media_files import MediaFiles
from storage.models import AdminAction, Issue, MediaImage
from tests.conftest import make_settings
from tests.pictures import exif_of, gps_exif, picture, size_of

ADMIN = Actor("telegram", "5550001")


def test_jpeg_without_metadata_is_kept_byte_for_byte_and_gets_a_small_preview():
    flyer = picture(1200, 1697)
    prepared = check_image(flyer, "image/jpeg")
    assert prepared.original == flyer and prepared.sha256 == hashlib.sha256(flyer).hexdigest()
    assert (prepared.format, prepared.width, prepared.height) == ("JPEG", 1200, 1697)
    fmt, width, height = size_of(prepared.preview)
    assert fmt == "JPEG" and max(width, height) == PREVIEW_SIDE and len(prepared.preview) < 1024 * 1024
    assert abs(width / height - 1200 / 1697) < 0.01  # the shape is kept


def test_transparent_png_is_kept_and_its_preview_is_an_opaque_jpeg():
    flyer = picture(800, 600, fmt="PNG", transparent=True)
    prepared = check_image(flyer, "image/png")
    assert prepared.original == flyer and prepared.format == "PNG"
    assert size_of(prepared.preview) == ("JPEG", 480, 360)


def test_location_metadata_and_rotation_are_removed_before_publishing():
    photo = picture(640, 480, exif=gps_exif(orientation=6))  # a phone photo taken sideways, with GPS
    assert 0x8825 in exif_of(photo)
    prepared = check_image(photo, "image/jpeg")
    assert prepared.original != photo and prepared.sha256 == hashlib.sha256(prepared.original).hexdigest()
    tags = exif_of(prepared.original)
    assert 0x8825 not in tags and 0x0110 not in tags and tags.get(0x0112, 1) == 1
    # Orientation 6 means "rotate 90° clockwise to show": the stored picture is upright, 480 wide and 640 high.
    assert size_of(prepared.original) == ("JPEG", 480, 640) and (prepared.width, prepared.height) == (480, 640)


@pytest.mark.parametrize(("data", "key", "shown"), [
    ("これは画像ではありません。チラシのつもり😀".encode(), "image_unreadable", "JPEG"),
    (picture(10, 10)[:200], "image_unreadable", "JPEG"),  # a truncated JPEG
    (picture(64, 64, fmt="GIF"), "image_wrong_format", "GIF"),
    (picture(64, 64, fmt="WEBP"), "image_wrong_format", "WEBP"),
    (picture(9000, 1100), "image_bad_dimensions", "9000×1100"),  # 10,100 > 10,000 in total
    (picture(2100, 100), "image_bad_dimensions", "20"),  # ratio 21 > 20
])
def test_pictures_that_cannot_travel_everywhere_are_refused_with_the_reason(data, key, shown):
    with pytest.raises(MediaError) as refused:
        check_image(data, "image/jpeg")
    assert refused.value.key == key
    assert shown in refused.value.message("ja") and shown in str(refused.value)


def test_a_picture_over_10_mb_is_refused_before_decoding():
    data = picture(64, 64) + os.urandom(MAX_IMAGE_BYTES)  # a valid header, then more than the limit
    with pytest.raises(MediaError) as refused:
        check_image(data, "image/jpeg")
    assert refused.value.key == "image_too_large"
    assert "10.0 MB" in str(refused.value) and "大きすぎます" in refused.value.message("ja")


async def test_attach_to_a_draft_stores_files_and_links_the_issue(tmp_path, db):
    settings = make_settings(tmp_path, public_url="https://news.example.jp")
    issue = await create_issue(db, IssueDraft("12月のイベント", "チラシをご覧ください。"))
    flyer = picture(900, 1273)
    ref = await attach_image(db, settings, issue.id, flyer, "image/jpeg", actor=ADMIN)
    digest = hashlib.sha256(flyer).hexdigest()
    assert ref.sha256 == digest and ref.content_type == "image/jpeg" and (ref.width, ref.height) == (900, 1273)
    assert ref.url == f"https://news.example.jp/media/{digest}.jpg"
    assert ref.preview_url == f"https://news.example.jp/media/{digest}-preview.jpg"
    assert ref.path == tmp_path / "media" / f"{digest}.jpg"  # media/ beside the SQLite file
    assert ref.data == flyer and ref.path.read_bytes() == flyer
    assert size_of((tmp_path / "media" / f"{digest}-preview.jpg").read_bytes())[0] == "JPEG"
    async with db.read() as session:
        stored = await session.get(Issue, issue.id)
        row = await session.get(MediaImage, digest)
        log = (await session.exec(select(AdminAction).where(AdminAction.action == "draft.image"))).one()
    assert stored.image_sha256 == digest and row.size == len(flyer)
    assert log.details == {"sha256": digest, "bytes": len(flyer)} and log.actor == "5550001"
    again = await issue_image(db, settings, stored)
    assert again is not None and again.url == ref.url

    # The same picture on another draft shares the row and the files.
    other = await create_issue(db, IssueDraft("再掲", "同じチラシ"))
    await attach_image(db, settings, other.id, flyer, "image/jpeg")
    async with db.read() as session:
        assert len((await session.exec(select(MediaImage))).all()) == 1
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == [f"{digest}-preview.jpg", f"{digest}.jpg"]


async def test_attach_refuses_a_finished_issue_and_a_bad_picture_changes_nothing(tmp_path, db):
    settings = make_settings(tmp_path)
    issue = await create_issue(db, IssueDraft("号", "本文"))
    with pytest.raises(MediaError):
        await attach_image(db, settings, issue.id, b"%PDF-1.7 not a picture", "application/pdf")
    async with db.read() as session:
        assert (await session.get(Issue, issue.id)).image_sha256 is None
    assert not (tmp_path / "media").exists()
    await cancel_issue(db, issue.id, actor=ADMIN)
    with pytest.raises(IssueStateError) as refused:
        await attach_image(db, settings, issue.id, picture(), "image/jpeg")
    assert refused.value.key == "issue_wrong_state"
    assert not (tmp_path / "media").exists()  # refused before any file was written


async def test_line_needs_https_image_urls(tmp_path, db):
    issue = await create_issue(db, IssueDraft("号", "本文"))
    plain = await attach_image(db, make_settings(tmp_path), issue.id, picture(), "image/jpeg")
    with pytest.raises(MediaError) as refused:
        check_image_channels(plain, ["telegram", "line", "email"])
    assert refused.value.key == "image_line_needs_https" and "OTAYORI_PUBLIC_URL" in str(refused.value)
    assert "http://127.0.0.1:8000" in refused.value.message("ja")
    check_image_channels(plain, ["telegram", "email"])  # LINE left out: fine
    check_image_channels(None, ["line"])  # no picture: nothing to check
    secure = await attach_image(db, make_settings(tmp_path, public_url="https://news.example.jp"), issue.id,
                                picture(), "image/jpeg")
    check_image_channels(secure, ["line"])
    long = await attach_image(db, make_settings(tmp_path, public_url="https://news.example.jp/" + "a" * 1990),
                              issue.id, picture(), "image/jpeg")
    with pytest.raises(MediaError) as refused:
        check_image_channels(long, ["line"])
    assert refused.value.key == "image_url_too_long"


@pytest.mark.parametrize("name", [
    "../otayori.sqlite3", "..%2Fotayori.sqlite3", "a" * 64 + ".jpg/../../otayori.sqlite3", "A" * 64 + ".jpg",
    "a" * 63 + ".jpg", "a" * 64 + ".gif", "a" * 64 + ".jpg\x00", "", ".", "media", "a" * 64 + "-preview.png",
])
def test_media_file_names_are_only_hashes(tmp_path, name):
    files = MediaFiles(tmp_path / "media")
    files.write("a" * 64 + ".jpg", b"x")
    assert files.path(name) is None
    with pytest.raises(ValueError):
        files.write(name, b"x")
    assert files.path("a" * 64 + ".jpg") == tmp_path / "media" / ("a" * 64 + ".jpg")


def test_media_directory_setting(tmp_path):
    assert media_files(make_settings(tmp_path)).directory == tmp_path / "media"
    assert media_files(make_settings(tmp_path, media_dir=str(tmp_path / "pics"))).directory == tmp_path / "pics"


def test_caption_split_keeps_the_text_whole_and_in_order():
    paragraphs = [f"第{i}段落: 12月5日(金)19時〜 **オンライン勉強会**のお知らせ。" + "詳細" * 60 for i in range(1, 8)]
    parts = render.issue_parts("telegram", "12月のイベント", "\n\n".join(paragraphs), "配信停止は「解除」と送ってください。")
    caption, *rest = render.split_telegram_html(parts[0], first_limit=render.TELEGRAM_CAPTION_LIMIT)
    visible = render._visible_telegram_text
    assert 0 < len(visible(caption)) <= render.TELEGRAM_CAPTION_LIMIT < len(visible(parts[0]))
    assert all(len(visible(part)) <= render.TELEGRAM_TEXT_LIMIT for part in rest)
    assert all(part.count("<b>") == part.count("</b>") for part in [caption, *rest])  # each part balanced
    # Cut at a paragraph boundary: nothing lost, nothing reordered.
    joined = "\n\n".join(visible(part) for part in [caption, *rest])
    assert joined == visible(parts[0])
    plain = render.split_line_text("あ" * 3000, 4096, first_limit=1024)
    assert [len(p) for p in plain] == [1024, 1976]
