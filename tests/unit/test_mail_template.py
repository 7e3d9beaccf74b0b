"""Per-recipient copies of a composed message (core.mail_template.MessageTemplate): a copy is byte for byte the
message the template came from, except the fields and the body text it was asked to replace."""

from __future__ import annotations

import email
import hashlib
import email.policy
from email.message import EmailMessage

import pytest

from core.mail import InlineImage, SenderIdentity, build_confirmation, build_newsletter
from core.mail_headers import header_fields, header_problems, split_header_section
from core.mail_template import MessageTemplate
from tests.pictures import picture

POLICY = email.policy.SMTP.clone(max_line_length=76)
LINK = "https://news.example.jp/unsubscribe/tok_ABC-123"
VARYING = ("To", "Message-ID", "List-Unsubscribe")


def source(name: str = "山田IT事務所①㈱髙😀ｶﾞ", image: InlineImage | None = None) -> bytes:
    identity = SenderIdentity(name=name, mail_from="news@example.jp", postal_address="東京都千代田区千代田1-1 髙橋ビル",
                              contact="info@example.jp", unsubscribe_mailto="unsubscribe@example.jp")
    return build_newsletter(sender=identity, to="reader@example.com", title="今月のお知らせ ①㈱髙😀ｶﾞ",
                            body_markdown="**大事な**お知らせです。\n\n- 一\n- 二", unsubscribe_url=LINK,
                            privacy_url="https://news.example.jp/privacy", image=image)


def field(raw: bytes, name: str) -> str:
    """The whole field ``name`` of ``raw`` as written (CRLF folds kept, no final CRLF)."""
    (lines,) = [lines for found, lines in header_fields(split_header_section(raw)[0]) if found.lower() == name.lower()]
    return "\r\n".join(lines)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.mark.parametrize("name", ["山田IT事務所①㈱髙😀ｶﾞ", "A" * 70 + " 山田"])
def test_a_copy_with_the_templates_own_values_is_the_same_bytes(name: str) -> None:
    raw = source(name)
    if name.startswith("A"):
        assert raw.startswith(b"From:\r\n ")  # a field whose value starts on its second line is kept as written
    template = MessageTemplate(raw, policy=POLICY, varying=VARYING, placeholder=LINK)
    own = {name_: field(raw, name_) for name_ in VARYING}
    assert template.fill(own, {"plain": LINK, "html": LINK}) == raw


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_issue_copy_is_the_same_bytes_and_carries_the_picture_intact(fmt: str) -> None:
    data = picture(900, 1273, fmt=fmt)
    image = InlineImage(hashlib.sha256(data).hexdigest(), f"image/{fmt.lower()}", data)
    raw = source(image=image)
    template = MessageTemplate(raw, policy=POLICY, varying=VARYING, placeholder=LINK)
    assert template.fill({name: field(raw, name) for name in VARYING}, {"plain": LINK, "html": LINK}) == raw
    other = "https://news.example.jp/unsubscribe/second"
    copy = parse(template.fill({"To": "To: second@example.org", "Message-ID": "Message-ID: <9@example.jp>",
                                "List-Unsubscribe": f"List-Unsubscribe: <{other}>"}, {"plain": other, "html": other}))
    [picture_part] = [part for part in copy.walk() if part.get_content_maintype() == "image"]
    assert picture_part.get_content() == data and picture_part["Content-ID"] == f"<{image.content_id('example.jp')}>"
    assert other in copy.get_body(("html",)).get_content() and other in copy.get_body(("plain",)).get_content()


def test_a_copy_carries_the_new_fields_and_text_and_nothing_else_changes() -> None:
    raw = source()
    template = MessageTemplate(raw, policy=POLICY, varying=VARYING, placeholder=LINK)
    other = "https://news.example.jp/unsubscribe/" + "Zy9-_" * 30
    fields = {
        "To": "To: second@example.org",
        "Message-ID": "Message-ID: <1.2.3@example.jp>",
        "List-Unsubscribe": f"List-Unsubscribe: <{other}>",
    }
    copy = template.fill(fields, {"plain": other, "html": "&lt;x&gt;"})
    assert header_problems(copy) == []
    message, original = parse(copy), parse(raw)
    assert message["To"].addresses[0].addr_spec == "second@example.org"
    assert message["Message-ID"] == "<1.2.3@example.jp>"
    assert message["List-Unsubscribe"] == f"<{other}>"
    assert [(k, str(v)) for k, v in message.items() if k not in VARYING] == [
        (k, str(v)) for k, v in original.items() if k not in VARYING
    ]
    (plain, html), (plain0, html0) = ([p.get_content() for p in m.iter_parts()] for m in (message, original))
    assert plain == plain0.replace(LINK, other) and plain.count(other) == plain0.count(LINK) >= 1
    assert html == html0.replace(LINK, "&lt;x&gt;")
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "base64" and part.get_content_charset() == "utf-8"


def test_a_template_refuses_what_it_cannot_copy_faithfully() -> None:
    raw = source()
    with pytest.raises(ValueError, match="placeholder is in a field"):
        MessageTemplate(raw, policy=POLICY, varying=("To",), placeholder=LINK)  # List-Unsubscribe would keep it
    with pytest.raises(ValueError, match="lacks the placeholder"):
        MessageTemplate(raw, policy=POLICY, varying=VARYING, placeholder="https://elsewhere.example/")
    with pytest.raises(ValueError, match="exactly once"):
        MessageTemplate(raw, policy=POLICY, varying=(*VARYING, "Cc"), placeholder=LINK)
    single = EmailMessage(policy=POLICY)
    single["To"] = "a@example.jp"
    single.set_content(LINK)
    with pytest.raises(ValueError, match="multipart"):
        MessageTemplate(single.as_bytes(), policy=POLICY, varying=("To",), placeholder=LINK)
    template = MessageTemplate(raw, policy=POLICY, varying=VARYING, placeholder=LINK)
    with pytest.raises(ValueError, match="does not start with"):
        template.fill({"To": "Cc: a@example.jp", "Message-ID": field(raw, "Message-ID"),
                       "List-Unsubscribe": field(raw, "List-Unsubscribe")}, {"plain": LINK, "html": LINK})
    confirmation = build_confirmation(
        sender=SenderIdentity(name="山田", mail_from="news@example.jp", postal_address="東京", contact="info@example.jp"),
        to="new@example.com", confirm_url="https://news.example.jp/email/confirm/c1", code="123456", expires_hours=48,
        privacy_url="https://news.example.jp/privacy", purpose_of_use="配信", newsletter_description="月2回")
    with pytest.raises(ValueError, match="lacks the placeholder"):
        MessageTemplate(confirmation, policy=POLICY, varying=("To",), placeholder=LINK)
