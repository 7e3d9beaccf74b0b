"""A photo issue (an event flyer with its caption) end to end (issue 5 item 2): Telegram ``sendPhoto`` with the caption
cut at 1,024 characters and the rest following in order, a LINE image message whose URLs our web app serves, and an
email whose HTML part shows the picture inline (``multipart/related``, ``cid:``) — through python-telegram-bot and
line-bot-sdk against the emulators and aiosmtpd, with the received bytes parsed back. Also the ``/media`` route and the
command line (``otayori broadcast --image``) refusing what cannot be sent, with the reason.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlmodel import select

from bots.app import open_runtime
from bots.broadcasting import Picture, broadcast_with
from bots.sandbox.stack import running_stack, sandbox_settings
from bots.web import create_app
from core.admins import Actor
from core.broadcast import IssueDraft, create_issue
from core.media import MediaError, attach_image
from storage.migrate import upgrade
from storage.models import Issue
from tests.conftest import make_settings
from tests.integration.test_cli import (
    count_rows,
    env_from,
    line_subscribe,
    otayori,
    telegram_subscribe,
)
from tests.pictures import picture, size_of

PUBLIC = "https://otayori.example.jp"
TITLE = "12月5日(金) オンライン勉強会のご案内"
# Long enough that Telegram's caption (1,024 characters) cannot hold it: the rest must follow, in order.
PARAGRAPHS = [f"【第{n}部】" + "パスワード管理と２段階認証、バックアップの３-２-１ルールを実演します😀。" * 9 for n in range(1, 5)]
BODY = "**参加無料**・事前登録制です。\n\n" + "\n\n".join(PARAGRAPHS)


async def confirmed_email(stack, address: str) -> None:
    """Subscribe ``address`` through the web form and the mailed link (double opt-in)."""
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        assert (await client.post("/join", data={"address": address})).status_code == 200
        [mail] = [m for m in stack.smtp.messages if address in m.rcpt_tos]
        text = mail.parsed().get_body(("plain",)).get_content()
        path = re.search(r"/email/confirm/[A-Za-z0-9._-]+", text).group(0)
        assert (await client.post(path)).status_code == 200


def visible_texts(messages) -> str:
    """What a Telegram reader sees of the issue: the caption, then each message's text, one block each."""
    return "\n\n".join(m.caption if m.method == "sendPhoto" else m.text for m in messages)


async def test_photo_issue_reaches_telegram_line_and_email(tmp_path: Path):
    flyer = picture(1200, 1697)
    digest = hashlib.sha256(flyer).hexdigest()
    async with running_stack(sandbox_settings(tmp_path, public_url=PUBLIC)) as stack:
        tg, line = stack.telegram, stack.line
        tg_users = [tg.add_user(first_name=f"参加者{i}").id for i in range(2)]
        for user in tg_users:
            await telegram_subscribe(stack, user)
        line_user = await line.add_user(display_name="花子")
        await line_subscribe(stack, line_user)
        await confirmed_email(stack, "hanako@example.jp")
        before = {user: len(tg.messages_to(user)) for user in tg_users}

        result = await broadcast_with(stack.runtime, IssueDraft(TITLE, BODY), picture=Picture(flyer, "image/jpeg"))
        assert result.report.by_status() == {"sent": 4}

        # Telegram: the photo with the start of the text as its caption, then the rest, in order.
        uploads = []
        for user in tg_users:
            issue = tg.messages_to(user)[before[user]:]
            assert [m.method for m in issue] == ["sendPhoto", "sendMessage"]
            photo = issue[0]
            assert photo.photo.data == flyer  # the bytes Telegram got are the flyer's
            assert photo.caption.startswith(TITLE) and len(photo.caption) <= 1024
            assert len(photo.caption) + sum(len(m.text) for m in issue[1:]) > 1024
            shown = visible_texts(issue)
            positions = [shown.index(paragraph[:20]) for paragraph in PARAGRAPHS]
            assert positions == sorted(positions)  # every paragraph arrived, in order
            assert "参加無料" in photo.caption and photo.entities and "解除" in shown.splitlines()[-1]
            uploads.append(photo.params["photo"])
        # Uploaded once; the other chat got Telegram's file_id of that upload.
        kinds = sorted("upload" if u.startswith("<upload 'flyer-") else "file_id" if u.startswith("AgAC") else u
                       for u in uploads)
        assert kinds == ["file_id", "upload"]

        # LINE: one request, the image message first (https URLs under OTAYORI_PUBLIC_URL), then the text.
        image, text = line.messages_to(line_user)[-2:]
        assert image == {"type": "image", "originalContentUrl": f"{PUBLIC}/media/{digest}.jpg",
                         "previewImageUrl": f"{PUBLIC}/media/{digest}-preview.jpg"}
        assert text["type"] == "text" and f"【{TITLE}】" in text["text"] and "第4部" in text["text"]
        assert len([r for r in line.requests if r.path.endswith("/multicast")]) == 1
        # ...and our web app serves what those URLs name (LINE fetches them through the TLS proxy).
        async with httpx.AsyncClient(base_url=stack.web_url) as client:
            original = await client.get(image["originalContentUrl"].removeprefix(PUBLIC))
            preview = await client.get(image["previewImageUrl"].removeprefix(PUBLIC))
        assert original.status_code == 200 and original.content == flyer
        assert original.headers["content-type"] == "image/jpeg"
        assert preview.status_code == 200 and len(preview.content) <= 1024 * 1024
        assert size_of(preview.content) == ("JPEG", 339, 480)

        # Email: multipart/alternative [text/plain, multipart/related [text/html, image/jpeg]].
        [newsletter] = [m for m in stack.smtp.messages if "hanako@example.jp" in m.rcpt_tos][1:]
        message = newsletter.parsed()
        assert message.get_content_type() == "multipart/alternative"
        plain_part, related = message.get_payload()
        assert plain_part.get_content_type() == "text/plain" and related.get_content_type() == "multipart/related"
        html_part, image_part = related.get_payload()
        assert image_part.get_content_type() == "image/jpeg" and image_part.get_content() == flyer
        cid = image_part["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html_part.get_content()
        assert "第4部" in html_part.get_content() and "配信を停止する" in html_part.get_content()
        plain = plain_part.get_content()
        assert TITLE in plain and "第4部" in plain and "cid:" not in plain and "/unsubscribe/" in plain

        # The same flyer again: no new upload to Telegram.
        again = await broadcast_with(stack.runtime, IssueDraft("再掲: " + TITLE, "お席に余裕があります。"),
                                     picture=Picture(flyer, "image/jpeg"), channels=["telegram"])
        assert again.report.by_status() == {"sent": 2}
        assert all(tg.messages_to(u)[-1].params["photo"].startswith("AgAC") for u in tg_users)


async def test_line_image_needs_https_so_the_broadcast_is_refused_before_sending(tmp_path: Path):
    async with running_stack(sandbox_settings(tmp_path)) as stack:  # public URL http://127.0.0.1:…
        line_user = await stack.line.add_user()
        await line_subscribe(stack, line_user)
        reader = stack.telegram.add_user().id
        await telegram_subscribe(stack, reader)
        with pytest.raises(MediaError) as refused:
            await broadcast_with(stack.runtime, IssueDraft(TITLE, BODY), picture=Picture(picture(), "image/jpeg"))
        assert refused.value.key == "image_line_needs_https" and "OTAYORI_PUBLIC_URL" in str(refused.value)
        assert count_rows(stack.settings.sqlite_path(), "issue") == 0 and count_rows(
            stack.settings.sqlite_path(), "delivery") == 0
        assert [m["type"] for m in stack.line.messages_to(line_user)].count("image") == 0
        # Telegram and email need no public URL for the picture: without LINE it goes.
        sent = await broadcast_with(stack.runtime, IssueDraft(TITLE, "本文"),
                                    picture=Picture(picture(), "image/jpeg"), channels=["telegram", "email"])
        assert sent.report.by_status() == {"sent": 1}
        assert [m.method for m in stack.telegram.messages_to(reader)][-1] == "sendPhoto"


async def test_media_route_serves_stored_pictures_only(tmp_path: Path):
    settings = make_settings(tmp_path)
    upgrade(settings.database_url)
    (tmp_path / "secret.txt").write_text("秘密", encoding="utf-8")
    async with open_runtime(settings) as runtime:
        issue = await create_issue(runtime.db, IssueDraft("号", "本文"))
        png = picture(300, 200, fmt="PNG")
        ref = await attach_image(runtime.db, settings, issue.id, png, "image/png")
        (settings.media_path() / "notes.txt").write_text("not media", encoding="utf-8")
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            got = await client.get(f"/media/{ref.sha256}.png")
            assert got.status_code == 200 and got.content == png
            assert got.headers["content-type"] == "image/png"
            assert "immutable" in got.headers["cache-control"] and got.headers["x-content-type-options"] == "nosniff"
            head = await client.head(f"/media/{ref.sha256}-preview.jpg")
            assert head.status_code == 200 and head.headers["content-type"] == "image/jpeg" and head.content == b""
            preview = await client.get(f"/media/{ref.sha256}-preview.jpg")
            assert Image.open(io.BytesIO(preview.content)).format == "JPEG"
            for path in (f"/media/{ref.sha256}.jpg",  # stored as PNG: no JPEG of that name
                         f"/media/{'0' * 64}.jpg", "/media/notes.txt", "/media/../secret.txt",
                         "/media/..%2Fsecret.txt", "/media/%2e%2e%2f%2e%2e%2fsecret.txt",
                         f"/media/{ref.sha256.upper()}.png", f"/media/{ref.sha256}.png%00.txt",
                         "/media/..%2F..%2Fotayori.sqlite3"):
                answer = await client.get(path)
                assert answer.status_code == 404, path
                assert "秘密".encode() not in answer.content and b"SQLite" not in answer.content
            assert (await client.post(f"/media/{ref.sha256}.png")).status_code == 405


async def test_cli_broadcast_with_image_and_refusals(tmp_path: Path):
    issue_file = tmp_path / "flyer.md"
    issue_file.write_text(f"# {TITLE}\n\n{BODY}\n", encoding="utf-8")
    flyer = tmp_path / "flyer.jpg"
    flyer.write_bytes(picture(800, 1131))
    async with running_stack(sandbox_settings(tmp_path / "stack", public_url=PUBLIC)) as stack:
        tg, line = stack.telegram, stack.line
        user = tg.add_user().id
        await telegram_subscribe(stack, user)
        line_user = await line.add_user()
        await line_subscribe(stack, line_user)
        env = env_from(stack.settings)
        database = stack.settings.sqlite_path()

        not_image = tmp_path / "notes.txt"
        not_image.write_text("これは写真ではありません", encoding="utf-8")
        gif = tmp_path / "flyer.gif"
        gif.write_bytes(picture(64, 64, fmt="GIF"))
        huge = tmp_path / "huge.jpg"
        huge.write_bytes(picture(64, 64) + b"\0" * (11 * 1024 * 1024))
        for bad, reason in ((not_image, "not a picture"), (gif, "GIF pictures cannot be sent"),
                            (huge, "too large (11.0 MB)")):
            refused = await otayori("broadcast", str(issue_file), "--image", str(bad), "--yes", cwd=tmp_path, env=env)
            assert refused.code == 2, refused
            assert len(refused.err_lines) == 1 and reason in refused.err and "--image" in refused.err, refused.err
        assert count_rows(database, "issue") == 0

        sent = await otayori("broadcast", str(issue_file), "--image", str(flyer), "--yes", cwd=tmp_path, env=env)
        assert sent.code == 0, sent
        issue_id = int(sent.out.strip().splitlines()[-1])
        photo = [m for m in tg.messages_to(user) if m.method == "sendPhoto"][-1]
        assert photo.photo.data == flyer.read_bytes() and photo.caption.startswith(TITLE)
        assert line.messages_to(line_user)[-2]["type"] == "image"
        async with stack.runtime.db.read() as session:
            stored = (await session.exec(select(Issue).where(Issue.id == issue_id))).one()
        assert stored.image_sha256 == hashlib.sha256(flyer.read_bytes()).hexdigest()


async def test_test_send_of_a_photo_draft_carries_the_picture(tmp_path: Path):
    admin = 5550001
    settings = sandbox_settings(tmp_path, public_url=PUBLIC, telegram_admin_ids=[admin])
    async with running_stack(settings) as stack:
        stack.telegram.add_user(user_id=admin)
        await telegram_subscribe(stack, admin)
        from bots.broadcasting import send_test_with

        draft_id, result = await send_test_with(stack.runtime, IssueDraft(TITLE, "テスト"),
                                                actor=Actor("cli", "yamada"), picture=Picture(picture(), None))
        assert result.report.by_status() == {"sent": 1}
        assert stack.telegram.messages_to(admin)[-1].method == "sendPhoto"
        async with stack.runtime.db.read() as session:
            draft = await session.get(Issue, draft_id)
            copy = await session.get(Issue, result.issue_id)
        assert draft.status == "draft" and copy.test_of == draft_id
        assert draft.image_sha256 and copy.image_sha256 == draft.image_sha256
