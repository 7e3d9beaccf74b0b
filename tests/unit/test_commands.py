"""The chat grammar (DESIGN.md "Chat grammar") as core.commands implements it."""

from __future__ import annotations

import time

import pytest

from core.commands import (
    CAMPAIGN_CODE_RE,
    Intent,
    IntentKind,
    is_confirmation_code,
    is_valid_campaign_code,
    normalise_keyword,
    parse,
)

K = IntentKind


# --- normalise_keyword ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("解除", "解除"),
        ("  解除  ", "解除"),
        ("\u3000解除\u3000", "解除"),
        ("解除\n", "解除"),
        ("\t解除\r\n", "解除"),
        ("解\u200b除", "解除"),  # ZERO WIDTH SPACE
        ("\ufeff解除", "解除"),  # BOM
        ("解\u200d除", "解除"),  # ZWJ
        ("解\u200c除", "解除"),  # ZWNJ
        ("解\u2060除", "解除"),  # WORD JOINER
        ("\u200e解除\u200f", "解除"),  # LRM / RLM
        ("\u202a解除\u202c", "解除"),  # bidi embedding
        ("解除\ufe0f", "解除"),  # variation selector 16
        ("解除\U000e0100", "解除"),  # variation selector 17
        ("ｓｔｏｐ", "stop"),
        ("ＳＴＯＰ", "stop"),
        ("StOp", "stop"),
        ("トウロク", "とうろく"),
        ("ﾄｳﾛｸ", "とうろく"),  # half-width katakana
        ("ｶｲｼﾞｮ", "かいじょ"),  # half-width with a separate voicing mark, composed by NFKC
        ("ｶｲｼ\u200bﾞｮ", "かいじょ"),  # composed even across a removed ZWSP
        ("メール", "めーる"),  # ー (U+30FC) kept
        ("ヘルプ", "へるぷ"),
        ("ヴ", "ゔ"),  # U+30F4 -> U+3094, inside the mapped range
        ("ヷ", "ヷ"),  # U+30F7 has no hiragana form: kept
        ("登録　\u3000  seminar", "登録 seminar"),
        ("a \n\n b", "a b"),
        ("？", "?"),
        ("", ""),
        ("\u200b\ufeff \u3000", ""),
        ("Straße", "strasse"),  # full case folding
    ],
)
def test_normalise_keyword(raw: str, expected: str) -> None:
    assert normalise_keyword(raw) == expected


def test_normalise_keyword_is_idempotent() -> None:
    for raw in ["ＳＴＯＰ", "ｶｲｼﾞｮ", "登録　ＳＥＭＩＮＡＲ", "メール ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", "解\u200b除"]:
        once = normalise_keyword(raw)
        assert normalise_keyword(once) == once


# --- parse: the table ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "argument", "language"),
    [
        # subscribe
        ("登録", K.SUBSCRIBE, None, "ja"),
        ("とうろく", K.SUBSCRIBE, None, "ja"),
        ("トウロク", K.SUBSCRIBE, None, "ja"),
        ("ﾄｳﾛｸ", K.SUBSCRIBE, None, "ja"),
        ("subscribe", K.SUBSCRIBE, None, "en"),
        ("Subscribe", K.SUBSCRIBE, None, "en"),
        ("ＳＵＢＳＣＲＩＢＥ", K.SUBSCRIBE, None, "en"),
        ("登録 seminar-12", K.SUBSCRIBE, "seminar-12", "ja"),
        ("登録\u3000seminar-12", K.SUBSCRIBE, "seminar-12", "ja"),
        ("登録　ＳＥＭＩＮＡＲ", K.SUBSCRIBE, "SEMINAR", "ja"),
        ("登録 ｓｅｍｉｎａｒ１", K.SUBSCRIBE, "seminar1", "ja"),
        ("  登録   Seminar_2026-12  ", K.SUBSCRIBE, "Seminar_2026-12", "ja"),
        ("登録\nseminar", K.SUBSCRIBE, "seminar", "ja"),
        ("とうろく abc", K.SUBSCRIBE, "abc", "ja"),
        ("subscribe Seminar1", K.SUBSCRIBE, "Seminar1", "en"),
        ("登録 セミナー", K.SUBSCRIBE, "セミナー", "ja"),  # kept as typed; the use case records it as unknown
        ("登録 sem\u200binar", K.SUBSCRIBE, "seminar", "ja"),  # invisible characters dropped from arguments too
        # consent
        ("同意", K.CONSENT, None, "ja"),
        (" 同意\u3000", K.CONSENT, None, "ja"),
        ("agree", K.CONSENT, None, "en"),
        ("AGREE", K.CONSENT, None, "en"),
        # withdraw
        ("解除", K.WITHDRAW, None, "ja"),
        ("解除  ", K.WITHDRAW, None, "ja"),
        ("\u3000解除\u3000", K.WITHDRAW, None, "ja"),
        ("解\u200b除", K.WITHDRAW, None, "ja"),
        ("\ufeff解除", K.WITHDRAW, None, "ja"),
        ("解除\ufe0f", K.WITHDRAW, None, "ja"),
        ("かいじょ", K.WITHDRAW, None, "ja"),
        ("カイジョ", K.WITHDRAW, None, "ja"),
        ("ｶｲｼﾞｮ", K.WITHDRAW, None, "ja"),
        ("配信停止", K.WITHDRAW, None, "ja"),
        ("stop", K.WITHDRAW, None, "en"),
        ("ｓｔｏｐ", K.WITHDRAW, None, "en"),
        ("ＳＴＯＰ", K.WITHDRAW, None, "en"),
        ("Stop\n", K.WITHDRAW, None, "en"),
        ("unsubscribe", K.WITHDRAW, None, "en"),
        ("UNSUBSCRIBE", K.WITHDRAW, None, "en"),
        # withdraw all
        ("全解除", K.WITHDRAW_ALL, None, "ja"),
        ("全\u200b解除 ", K.WITHDRAW_ALL, None, "ja"),
        # email
        ("メール taro@example.jp", K.EMAIL, "taro@example.jp", "ja"),
        ("メール ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", K.EMAIL, "taro@example.jp", "ja"),
        ("メール　Taro.Yamada@Example.JP", K.EMAIL, "Taro.Yamada@Example.JP", "ja"),
        ("ﾒｰﾙ taro@example.jp", K.EMAIL, "taro@example.jp", "ja"),
        ("めーる taro@example.jp", K.EMAIL, "taro@example.jp", "ja"),
        ("email taro@example.jp", K.EMAIL, "taro@example.jp", "en"),
        ("EMAIL taro@example.jp", K.EMAIL, "taro@example.jp", "en"),
        ("メール", K.EMAIL, None, "ja"),
        ("email", K.EMAIL, None, "en"),
        ("メール not an address", K.EMAIL, "not an address", "ja"),  # the caller validates and explains
        # status
        ("状態", K.STATUS, None, "ja"),
        ("status", K.STATUS, None, "en"),
        ("Status", K.STATUS, None, "en"),
        # topics (issue 5 item 7)
        ("トピック", K.TOPICS, None, "ja"),
        ("とぴっく", K.TOPICS, None, "ja"),
        ("ﾄﾋﾟｯｸ", K.TOPICS, None, "ja"),
        ("\u3000トピック\u200b ", K.TOPICS, None, "ja"),
        ("topics", K.TOPICS, None, "en"),
        ("Topic", K.TOPICS, None, "en"),
        ("ＴＯＰＩＣＳ", K.TOPICS, None, "en"),
        ("トピック IT", K.TEXT, "トピック IT", "ja"),  # takes no argument: free text
        # help
        ("ヘルプ", K.HELP, None, "ja"),
        ("へるぷ", K.HELP, None, "ja"),
        ("help", K.HELP, None, "en"),
        ("HELP", K.HELP, None, "en"),
        ("?", K.HELP, None, "ja"),
        ("？", K.HELP, None, "ja"),
        (" ？ ", K.HELP, None, "ja"),
    ],
)
def test_parse_keywords(text: str, kind: IntentKind, argument: str | None, language: str) -> None:
    assert parse(text) == Intent(kind, argument, language)


@pytest.mark.parametrize(
    ("text", "kind", "argument"),
    [
        ("/start", K.SUBSCRIBE, None),
        ("/start seminar_2026-12", K.SUBSCRIBE, "seminar_2026-12"),
        ("/start Seminar_2026-12", K.SUBSCRIBE, "Seminar_2026-12"),  # payload case kept
        ("/start@otayori_bot abc", K.SUBSCRIBE, "abc"),
        ("/start@Otayori_Bot", K.SUBSCRIBE, None),
        ("／ｓｔａｒｔ　ａｂｃ", K.SUBSCRIBE, "abc"),
        ("/START", K.SUBSCRIBE, None),
        ("/stop", K.WITHDRAW, None),
        ("/stop@otayori_bot", K.WITHDRAW, None),
        ("/stop now please", K.WITHDRAW, None),  # a command is its first word; arguments of /stop are ignored
        ("/status", K.STATUS, None),
        ("/status@otayori_bot", K.STATUS, None),
        ("/topics", K.TOPICS, None),
        ("/topics@otayori_bot please", K.TOPICS, None),
        ("/help", K.HELP, None),
        ("/help me", K.HELP, None),
    ],
)
def test_parse_slash_commands(text: str, kind: IntentKind, argument: str | None) -> None:
    assert parse(text) == Intent(kind, argument, "ja")


@pytest.mark.parametrize(
    "text",
    [
        "/foo",
        "/settings",
        "/",
        "/ start",
        "/start-now",  # not a command name: '-' is outside [a-z0-9_]
        "/stopp",
        "/登録",
        "//start",
    ],
)
def test_other_slash_words_are_text(text: str) -> None:
    intent = parse(text)
    assert intent.kind is K.TEXT
    assert intent.argument == text


def test_slash_command_for_another_bot_is_text_when_our_name_is_known() -> None:
    assert parse("/stop@other_bot", bot_username="otayori_bot").kind is K.TEXT
    assert parse("/stop@Otayori_Bot", bot_username="otayori_bot") == Intent(K.WITHDRAW, None, "ja")
    assert parse("/start@otayori_bot x", bot_username="@Otayori_bot") == Intent(K.SUBSCRIBE, "x", "ja")
    assert parse("/stop", bot_username="otayori_bot") == Intent(K.WITHDRAW, None, "ja")


@pytest.mark.parametrize(
    "text",
    [
        "解除してください",
        "解除して",
        "配信を解除したい",
        "解除 お願いします",
        "解除 お願いします!",  # only the ends of the whole message are ignored, not what is inside
        "解除して!",
        "「解除」して",
        "解除。お願いします",
        "解、除",
        "stop it",
        "please stop",
        "stopping",
        "全解除して",
        "全 解除",
        "同意します",
        "I agree",
        "メールアドレスを変えたい",
        "メールで送って",
        "emails",
        "状態は?",
        "help me",
        "??",
        "？！",
        "🙏",
        "。",
        "登録seminar",  # no space: the first word is not the keyword
        "登録ｓｅｍｉｎａｒ",
        "subscribeseminar",
        "ありがとうございます!",
        "Thanks for the newsletter",
        "🎉",
    ],
)
def test_sentences_are_text(text: str) -> None:
    intent = parse(text)
    assert intent.kind is K.TEXT
    assert intent.argument == text  # the original text, unmodified


@pytest.mark.parametrize(
    ("text", "kind", "language"),
    [
        ("解除。", K.WITHDRAW, "ja"),
        ("解除!", K.WITHDRAW, "ja"),
        ("解除！", K.WITHDRAW, "ja"),
        ("解除！！", K.WITHDRAW, "ja"),
        ("🙅解除", K.WITHDRAW, "ja"),
        ("🙅‍♀️解除", K.WITHDRAW, "ja"),  # ZWJ sequence with a variation selector
        ("解除🙏", K.WITHDRAW, "ja"),
        ("解除🙏🏻", K.WITHDRAW, "ja"),  # skin-tone modifier (Sk)
        ("解除 🙏", K.WITHDRAW, "ja"),
        ("　解除。　", K.WITHDRAW, "ja"),
        ("「解除」", K.WITHDRAW, "ja"),
        ("解除♪", K.WITHDRAW, "ja"),
        ("配信停止します。", K.TEXT, "ja"),  # します is a word, not decoration
        ("全解除！", K.WITHDRAW_ALL, "ja"),
        ("登録。", K.SUBSCRIBE, "ja"),
        ("状態？", K.STATUS, "ja"),
        ("状態?", K.STATUS, "ja"),
        ("ＳＴＯＰ！", K.WITHDRAW, "en"),
        ("stop.", K.WITHDRAW, "en"),
        ("...unsubscribe!", K.WITHDRAW, "en"),
        ("同意します", K.TEXT, "ja"),
        ("同意！", K.CONSENT, "ja"),
        ("ヘルプ?", K.HELP, "ja"),
        ("トピック☆", K.TOPICS, "ja"),
        ("/stop!", K.WITHDRAW, "ja"),
    ],
)
def test_punctuation_and_symbols_at_the_ends_are_ignored(text: str, kind: IntentKind, language: str) -> None:
    intent = parse(text)
    assert (intent.kind, intent.language) == (kind, language)
    assert intent.argument == (text if kind is K.TEXT else None)


def test_arguments_keep_their_ends_and_leading_decoration_is_ignored() -> None:
    assert parse("登録 seminar-12!") == Intent(K.SUBSCRIBE, "seminar-12!", "ja")  # recorded as typed (unknown)
    assert parse("🙏 登録 seminar-12") == Intent(K.SUBSCRIBE, "seminar-12", "ja")
    assert parse("📧メール taro@example.jp") == Intent(K.EMAIL, "taro@example.jp", "ja")
    assert parse("メール 🙏") == Intent(K.EMAIL, "🙏", "ja")  # an argument as typed: the caller explains addresses


@pytest.mark.parametrize("text", ["/登録", "/解除。", "!/stop"])
def test_a_leading_slash_is_not_decoration(text: str) -> None:
    # "/" makes a Telegram command; /登録 is not a command name, so it is not 登録 either. "!/stop" keeps its "/".
    intent = parse(text)
    assert intent.kind is (K.WITHDRAW if text == "!/stop" else K.TEXT)


@pytest.mark.parametrize("text", ["/broadcast", "/send", "/stats", "/cancel", "/cancel 3", "/foo bar",
                                  "/send@otayori_bot"])
def test_unknown_slash_commands_are_text_in_japanese(text: str) -> None:
    # A command carries no language: a reader typing an admin's /broadcast gets the Japanese help like 配信 does.
    assert parse(text) == Intent(K.TEXT, text, "ja")


def test_text_argument_is_the_original_text_unmodified() -> None:
    raw = "\u3000ｽﾄｯﾌﾟ　しないで\u200b\n"
    assert parse(raw) == Intent(K.TEXT, raw, "ja")


@pytest.mark.parametrize("text", ["", " ", "\u3000\u3000", "\n\t", "\u200b", "\ufeff", "\ufe0f"])
def test_empty_or_invisible_only_message_is_help(text: str) -> None:
    assert parse(text) == Intent(K.HELP, None, "ja")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, when is the next seminar?", "en"),
        ("ｈｅｌｌｏ", "en"),  # full-width Latin is Latin
        ("Hello 世界", "ja"),
        ("ありがとう", "ja"),
        ("ｱﾘｶﾞﾄｳ", "ja"),
        ("〆切はいつ?", "ja"),
        ("12345", "ja"),  # no letters: the default
        ("!!!", "ja"),
        ("🎉🎉", "ja"),
        ("thanks 🎉", "en"),
        ("Привет", "ja"),  # no ASCII letters: the default
    ],
)
def test_free_text_language(text: str, language: str) -> None:
    intent = parse(text)
    assert intent.kind is K.TEXT
    assert intent.language == language


def test_very_long_text_is_text_and_fast() -> None:
    text = "解除" + "あ" * 9_998
    assert len(text) == 10_000
    began = time.perf_counter()
    for _ in range(20):
        intent = parse(text)
    elapsed = time.perf_counter() - began
    assert intent == Intent(K.TEXT, text, "ja")
    assert elapsed < 1.0  # 20 parses of 10,000 characters; linear work takes milliseconds


def test_very_long_text_with_spaces_is_text() -> None:
    text = "stop " * 2_000
    assert parse(text).kind is K.TEXT
    assert parse("登録 " + "x" * 10_000).kind is K.SUBSCRIBE  # recorded as an unknown campaign by the use case


def test_intent_is_frozen() -> None:
    intent = parse("解除")
    with pytest.raises(AttributeError):
        intent.kind = K.HELP  # type: ignore[misc]


# --- campaign codes and confirmation codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("seminar_2026-12", True),
        ("A", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("seminar 1", False),
        ("セミナー", False),
        ("seminar.1", False),
        ("seminar\n", False),  # fullmatch: a trailing newline is not accepted as re's '$' would
        ("ｓｅｍｉｎａｒ", False),  # full-width: NFKC happens in parse, not here
    ],
)
def test_campaign_code_validity(code: str, valid: bool) -> None:
    assert is_valid_campaign_code(code) is valid
    assert (CAMPAIGN_CODE_RE.fullmatch(code) is not None) is valid


def test_subscribe_accepts_unknown_or_invalid_campaign_codes() -> None:
    intent = parse("登録 セミナー2026")
    assert intent == Intent(K.SUBSCRIBE, "セミナー2026", "ja")
    assert not is_valid_campaign_code(intent.argument or "")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("123456", "123456"),
        ("012345", "012345"),
        ("１２３４５６", "123456"),
        ("\u3000123456 ", "123456"),
        ("12\u200b3456", "123456"),
        ("12345", None),
        ("1234567", None),
        ("123 456", None),
        ("12345a", None),
        ("٠١٢٣٤٥", None),  # Arabic-Indic digits are not a code
        ("code 123456", None),
        ("", None),
    ],
)
def test_is_confirmation_code(text: str, code: str | None) -> None:
    assert is_confirmation_code(text) == code


@pytest.mark.parametrize("text", ["登録解除", "配信解除", "購読解除", "ｺｳﾄﾞｸ解除"])
def test_everyday_unsubscribe_words_withdraw(text: str) -> None:
    # 登録解除 is how many people say "unsubscribe": it must stop, not be read as 登録 with a campaign 解除.
    expected = K.TEXT if text.startswith("ｺｳ") else K.WITHDRAW
    assert parse(text).kind is expected
